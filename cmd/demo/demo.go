package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/localcluster"
	"github.com/csr-agent/csr-agent/manifests"
)

// options configure a run of the demo.
type options struct {
	// ControlPlaneDir holds etcd, kube-apiserver and kube-controller-manager.
	ControlPlaneDir string
	// Agent and Controller are the programs to run.
	Agent, Controller string
	// Keep keeps everything running after the renewal until ctx is done.
	Keep bool
	Out  io.Writer
}

// What the demo creates. The names are the ones the manifests use, so the
// controller runs with exactly the RBAC of manifests/controller.
const (
	namespace           = "demo"
	appName             = "web" // pod, service account, Service and label
	signerName          = "csr-agent.io/pod"
	controllerNamespace = "csr-agent-system"
	controllerAccount   = "csr-agent-controller"
	serviceDNSName      = appName + "." + namespace + ".svc.cluster.local"
)

// certDuration is the shortest lifetime the agent may ask for: the CSR API's
// minimum spec.expirationSeconds is 600. With RENEW_BEFORE set to
// certDuration-renewAfter, the agent renews renewAfter after each issuance,
// so a renewal happens while you watch, without any demo-only setting in
// the controller.
const (
	certDuration = 10 * time.Minute
	renewAfter   = 15 * time.Second
)

// tokenTTL is the lifetime of the service-account tokens the demo hands to
// the programs (no kubelet refreshes them): long enough for -keep.
const tokenTTL = 24 * time.Hour

func run(ctx context.Context, opts options) (err error) {
	u := &ui{w: opts.Out}
	var td teardown
	defer func() { err = errors.Join(err, td.run(u)) }()

	work, err := os.MkdirTemp("", "csr-agent-demo-")
	if err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	td.add("work directory "+work+" removed", func() error { return os.RemoveAll(work) })

	u.step("Starting the local control plane: etcd, kube-apiserver, kube-controller-manager (from %s)", opts.ControlPlaneDir)
	started := time.Now()
	cluster, err := localcluster.Start(ctx, localcluster.Options{BinDir: opts.ControlPlaneDir})
	if err != nil {
		return err
	}
	td.add("control plane stopped", cluster.Stop)
	u.info("API server %s, up in %s", cluster.Config.Host, time.Since(started).Round(100*time.Millisecond))

	u.step("Installing the controller's RBAC, the agent's ClusterRoles and the admission policies, as shipped in manifests/")
	applied, err := manifests.Apply(ctx, cluster.Config, fieldManager,
		"controller/namespace.yaml", "controller/serviceaccount.yaml", "controller/rbac.yaml", "controller/flowschema.yaml", "agent-rbac/clusterroles.yaml",
		"admission/pod-requests.yaml", "admission/extra-names.yaml")
	if err != nil {
		return err
	}
	u.info("%s", wrap(strings.Join(applied, ", "), 100, "    "))

	tl := newTimeline(u)
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watching := make(chan struct{})
	go func() { tl.run(watchCtx, cluster.Client, signerName); close(watching) }()
	td.add("CSR watch stopped", func() error { stopWatch(); <-watching; return nil })

	controller, err := startController(ctx, u, cluster, opts.Controller, work)
	if err != nil {
		return err
	}
	td.add("controller stopped by SIGTERM, exit status 0", controller.stop)
	if err := waitForCA(ctx, u, cluster, controller); err != nil {
		return err
	}

	pod, err := createWorkload(ctx, u, cluster)
	if err != nil {
		return err
	}
	certDir := filepath.Join(work, "pods", pod.Name, "certs") // the pod's emptyDir
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", certDir, err)
	}
	web, err := startApp(certDir, pod.Name)
	if err != nil {
		return err
	}
	td.add("app stopped", func() error { web.close(); return nil })

	agent, err := startAgent(u, pod, opts.Agent, certDir, web.hookURL(), work)
	if err != nil {
		return err
	}
	td.add("agent stopped by SIGTERM, exit status 0", agent.stop)

	first, err := waitFirstCertificate(ctx, u, web, certDir, agent, controller)
	if err != nil {
		return err
	}
	renewed, err := waitRenewal(ctx, u, web, certDir, first, agent, controller)
	if err != nil {
		return err
	}
	seen, cancelSeen := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSeen()
	if err := tl.waitSettled(seen, 2); err != nil {
		return err
	}
	summarize(u, tl.snapshot(), first, renewed, certDir)
	if opts.Keep {
		return keepRunning(ctx, u, cluster, web, certDir, agent, controller)
	}
	return nil
}

func startController(ctx context.Context, u *ui, cluster *localcluster.Cluster, program, work string) (*process, error) {
	u.step("Starting the controller as service account %s/%s", controllerNamespace, controllerAccount)
	kubeconfig, err := cluster.ServiceAccountKubeconfig(ctx, controllerNamespace, controllerAccount, tokenTTL)
	if err != nil {
		return nil, err
	}
	env := []string{
		"KUBECONFIG=" + kubeconfig,
		"SIGNER_NAME=" + signerName,
		"CREATE_CA=true", // a self-signed demo CA in Secret csr-agent-system/csr-agent-ca
		"LEADER_ELECT=true",
		"POD_NAME=csr-agent-controller-demo",
		"METRICS_ADDR=", "HEALTH_ADDR=", // nothing to clash with other local ports
		"LOG_FORMAT=text",
	}
	u.info("%s", strings.Join(env[1:], " "))
	p, err := startProcess("controller", program, []string{"run"}, env, filepath.Join(work, "controller.log"))
	if err != nil {
		return nil, err
	}
	u.info("log: %s", p.logPath)
	return p, nil
}

func waitForCA(ctx context.Context, u *ui, cluster *localcluster.Cluster, controller *process) error {
	started := time.Now()
	ctx, cancel := untilExit(ctx, time.Minute, controller)
	defer cancel()
	name := config.DefaultTrustBundleName(signerName)
	ctb, err := waitTrustBundle(ctx, cluster.Client, name)
	if err != nil {
		return cause(ctx, err)
	}
	anchors, err := parseCerts([]byte(ctb.Spec.TrustBundle))
	if err != nil {
		return fmt.Errorf("reading ClusterTrustBundle %s: %w", name, err)
	}
	if len(anchors) == 0 {
		return fmt.Errorf("ClusterTrustBundle %s holds no CA", name)
	}
	u.info("it created its CA %q and published it as ClusterTrustBundle %s, after %s",
		anchors[0].Subject.CommonName, name, time.Since(started).Round(100*time.Millisecond))
	return nil
}

func createWorkload(ctx context.Context, u *ui, cluster *localcluster.Cluster) (*localcluster.Pod, error) {
	u.step("Creating namespace %s, service account %s, Service %s and pod %s", namespace, appName, appName, appName)
	client := cluster.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: appName, Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": appName},
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)}},
		},
	}
	svc, err := client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Service: %w", err)
	}
	pod, err := cluster.NewPod(ctx, localcluster.PodOptions{
		Namespace: namespace, Name: appName, ServiceAccount: appName, Labels: map[string]string{"app": appName}, TokenTTL: tokenTTL,
	})
	if err != nil {
		return nil, err
	}
	if err := bindAgent(ctx, client, namespace, appName); err != nil {
		return nil, err
	}
	u.info("Service %s/%s: cluster IP %s, selects app=%s", namespace, appName, svc.Spec.ClusterIP, appName)
	u.info("Pod %s/%s: UID %s, IP %s, service account %s (simulated: no kubelet runs; the Pod object is marked running)",
		namespace, pod.Name, pod.UID, strings.Join(pod.IPs, ","), pod.ServiceAccount)
	u.info("ClusterRoles csr-agent, csr-agent-namespace and csr-agent-events bound to %s/%s, as manifests/agent-rbac/example-binding does", namespace, appName)
	return pod, nil
}

func startAgent(u *ui, pod *localcluster.Pod, program, certDir, hookURL, work string) (*process, error) {
	u.step("Starting `agent sidecar` as pod %s/%s would run it", pod.Namespace, pod.Name)
	env := append(pod.Env(),
		"CERT_DIR="+certDir,
		"SERVICE_NAMES=auto",
		"CERT_DURATION="+certDuration.String(),
		"RENEW_BEFORE="+(certDuration-renewAfter).String(),
		"NOTIFY_URL="+hookURL,
		"ISSUE_TIMEOUT=1m",
		"HTTP_ADDR=", // nothing to clash with other local ports
		"LOG_FORMAT=text",
	)
	for _, kv := range env {
		u.info("%s", kv)
	}
	u.info("(the downward API gives POD_*; KUBECONFIG holds a token bound to the Pod, as the kubelet mounts one)")
	u.info("a %s certificate renewed %s before expiry: the first renewal comes %s after issuance", certDuration, certDuration-renewAfter, renewAfter)
	u.startClock()
	p, err := startProcess("agent", program, []string{"sidecar"}, env, filepath.Join(work, "agent.log"))
	if err != nil {
		return nil, err
	}
	u.info("log: %s", p.logPath)
	return p, nil
}

func waitFirstCertificate(ctx context.Context, u *ui, web *app, certDir string, ps ...*process) (*handshake, error) {
	wctx, cancel := untilExit(ctx, 2*time.Minute, ps...)
	defer cancel()
	err := wait.PollUntilContextCancel(wctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := web.load()
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the first certificate in %s: %w", certDir, cause(wctx, err))
	}
	u.event("files published in %s; the app serves tls.pem", certDir)
	return fetch(ctx, u, web, certDir)
}

func waitRenewal(ctx context.Context, u *ui, web *app, certDir string, first *handshake, ps ...*process) (*handshake, error) {
	u.step("Waiting for the renewal, due %s after issuance", renewAfter)
	wctx, cancel := untilExit(ctx, renewAfter+2*time.Minute, ps...)
	defer cancel()
	for {
		select {
		case leaf := <-web.reloads:
			if leaf.SerialNumber.Cmp(first.leaf.SerialNumber) == 0 {
				continue // files restored, not renewed
			}
			u.event("the agent told the app (POST %s); the app reloaded tls.pem: serial %s", web.hookURL(), serial(leaf))
			return fetch(ctx, u, web, certDir)
		case <-wctx.Done():
			return nil, fmt.Errorf("waiting for the renewal: %w", cause(wctx, wctx.Err()))
		}
	}
}

// fetch makes the HTTPS request a client of the Service would make.
func fetch(ctx context.Context, u *ui, web *app, certDir string) (*handshake, error) {
	h, err := get(ctx, web.addr(), filepath.Join(certDir, "ca.crt"), serviceDNSName)
	if err != nil {
		return nil, fmt.Errorf("HTTPS request to %s trusting only ca.crt: %w", serviceDNSName, err)
	}
	u.event("GET https://%s/ trusting only ca.crt: verified, serial %s, %q", serviceDNSName, serial(h.leaf), h.body)
	return h, nil
}

func keepRunning(ctx context.Context, u *ui, cluster *localcluster.Cluster, web *app, certDir string, ps ...*process) error {
	u.step("Still running: the agent renews every %s. Explore from another terminal:", renewAfter)
	_, port, _ := strings.Cut(web.addr(), ":")
	u.info("export KUBECONFIG=%s", cluster.KubeconfigFile)
	u.info("kubectl get csr,clustertrustbundles -w")
	u.info("kubectl -n %s get pod,svc,events", namespace)
	u.info("kubectl -n %s get secret csr-agent-ca -o jsonpath='{.data.tls\\.crt}' | base64 -d | openssl x509 -noout -subject -dates", controllerNamespace)
	u.info("ls -l %s", certDir)
	u.info("curl --cacert %s/ca.crt --resolve %s:%s:127.0.0.1 https://%s:%s/", certDir, serviceDNSName, port, serviceDNSName, port)
	u.info("Press Ctrl-C to stop and clean up.")
	wctx, cancel := untilExit(ctx, 0, ps...)
	defer cancel()
	for {
		select {
		case leaf := <-web.reloads:
			u.event("app reloaded tls.pem: serial %s, valid until %s", serial(leaf), leaf.NotAfter.Format(time.TimeOnly))
		case <-wctx.Done():
			if err := context.Cause(wctx); !errors.Is(err, ctx.Err()) {
				return err // a program exited
			}
			return nil
		}
	}
}

// untilExit returns a context that ends with timeout (if above zero), with
// ctx, or as soon as one of the programs exits, with the reason as cause.
func untilExit(ctx context.Context, timeout time.Duration, ps ...*process) (context.Context, context.CancelFunc) {
	cctx, cancelCause := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	for _, p := range ps {
		go func() {
			select {
			case <-p.done:
				cancelCause(p.exitedEarly())
			case <-stop:
			}
		}()
	}
	tctx, cancelTimeout := cctx, context.CancelFunc(func() {})
	if timeout > 0 {
		tctx, cancelTimeout = context.WithTimeout(cctx, timeout)
	}
	return tctx, func() { close(stop); cancelTimeout(); cancelCause(nil) }
}

// cause prefers why ctx ended (a program exited) to the error it caused.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) && !errors.Is(c, context.DeadlineExceeded) {
		return c
	}
	return err
}

func serial(c *x509.Certificate) string {
	s := c.SerialNumber.Text(16)
	if len(s) > 12 {
		s = s[:12] + "…"
	}
	return s
}
