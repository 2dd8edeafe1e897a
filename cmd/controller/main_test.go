package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// setEnv gives run exactly these controller variables.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, v := range config.ControllerDocs() {
		t.Setenv(v.Name, "")
		if err := os.Unsetenv(v.Name); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"help"}, &out, io.Discard); code != exitOK {
		t.Fatalf("help exited %d", code)
	}
	for _, v := range config.ControllerDocs() {
		if !strings.Contains(out.String(), "\n  "+v.Name+"  ") {
			t.Errorf("help does not list %s", v.Name)
		}
	}
}

func TestInvalidConfigurationExitsTwoNamingEveryProblem(t *testing.T) {
	setEnv(t, map[string]string{"WORKERS": "0", "SIGNER_NAME": "nope", "METRICS_ADDR": "x"})
	var stderr bytes.Buffer
	if code := run(t.Context(), nil, io.Discard, &stderr); code != exitConfig {
		t.Fatalf("exit %d, want %d", code, exitConfig)
	}
	for _, name := range []string{"WORKERS", "SIGNER_NAME", "METRICS_ADDR"} {
		if !strings.Contains(stderr.String(), "\n  "+name+": ") {
			t.Errorf("stderr does not name %s:\n%s", name, stderr.String())
		}
	}
}

func TestUnknownArgumentExitsTwo(t *testing.T) {
	if code := run(t.Context(), []string{"serve"}, io.Discard, io.Discard); code != exitConfig {
		t.Errorf("exit %d, want %d", code, exitConfig)
	}
}

// TestRunsFromTheEnvironmentUntilCancelled runs the command as a
// Deployment would (environment only), checks its probes and metrics over
// HTTP, has it issue a certificate, and stops it as SIGTERM would.
func TestRunsFromTheEnvironmentUntilCancelled(t *testing.T) {
	env := testenv.Shared(t)
	ns := env.NewNamespace(t)
	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	const signer = "cmd.csr-agent.io/pod"
	setEnv(t, map[string]string{
		"SIGNER_NAME": signer, "CA_SECRET_NAMESPACE": ns, "CREATE_CA": "true", "LEASE_NAMESPACE": ns,
		"POD_NAME": "controller-0", "METRICS_ADDR": metricsAddr, "HEALTH_ADDR": healthAddr,
		"KUBECONFIG": env.KubeconfigFile, "LOG_LEVEL": "debug",
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, nil, io.Discard, &stderr) }()

	waitHTTP(t, "http://"+healthAddr+"/readyz")
	waitHTTP(t, "http://"+healthAddr+"/healthz")
	issueOne(t, env, signer)
	metrics := get(t, "http://"+metricsAddr+"/metrics")
	if !strings.Contains(metrics, `csr_agent_controller_decisions_total{path="csr",reason="AutoApproved",result="approved"} 1`) ||
		!strings.Contains(metrics, "csr_agent_controller_leader 1") {
		t.Errorf("metrics lack the approval or the leader gauge:\n%s", metrics)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after cancel, want 0\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of cancel")
	}
	lease, err := env.Client.CoordinationV1().Leases(ns).Get(t.Context(), "csr-agent-controller", metav1.GetOptions{})
	if err != nil || ptr.Deref(lease.Spec.HolderIdentity, "") != "" {
		t.Errorf("Lease not released on stop: %v %v", err, lease.Spec.HolderIdentity)
	}
	if !strings.Contains(stderr.String(), `"msg":"Leading"`) {
		t.Errorf("no JSON log line for leading:\n%s", stderr.String())
	}
}

// issueOne has a pod request a certificate for its IP and waits until
// it is issued.
func issueOne(t *testing.T, env *testenv.Env, signer string) {
	t.Helper()
	pod := env.NewPod(t, testenv.PodOptions{})
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cmd-requester-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: pod.Namespace, Name: pod.ServiceAccount}},
	}
	if _, err := env.Client.RbacV1().ClusterRoleBindings().Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP(pod.IPs[0])}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrs := must(kubernetes.NewForConfig(pod.Config)).CertificatesV1().CertificateSigningRequests()
	csr, err := csrs.Create(t.Context(), &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cmd-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: signer, Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := csrs.Get(ctx, csr.Name, metav1.GetOptions{})
		return err == nil && len(got.Status.Certificate) > 0, nil
	})
	if err != nil {
		t.Fatalf("certificate not issued: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("%s never answered 200: %v", url, err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
