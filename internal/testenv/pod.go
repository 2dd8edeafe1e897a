package testenv

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// NodeName is the Node every simulated pod is bound to. No kubelet runs; the
// Node object exists so that pod-bound tokens carry node facts as they do in
// a real cluster.
const NodeName = "testenv-node"

// PodOptions describes a simulated pod. Zero values get defaults.
type PodOptions struct {
	// Namespace defaults to a new namespace for this pod.
	Namespace string
	// Name defaults to "pod-<n>".
	Name string
	// ServiceAccount defaults to "app"; it is created if missing.
	ServiceAccount string
	Labels         map[string]string
	// IPs become status.podIPs; default: one IPv4 address unique in the env.
	IPs []string
	// Hostname and Subdomain set spec.hostname and spec.subdomain.
	Hostname, Subdomain string
}

// Pod is a Pod object that looks scheduled and running, and the credentials
// its containers would have.
type Pod struct {
	Namespace, Name, UID, ServiceAccount string
	IPs                                  []string
	Object                               *corev1.Pod
	// Token is a service-account token from the TokenRequest API bound to
	// this Pod object: the API server adds the pod's name and UID to the
	// user info of every request made with it.
	Token string
	// Config and KubeconfigFile authenticate with Token.
	Config         *rest.Config
	KubeconfigFile string
}

// Username is the user name the API server sees for requests with Token.
func (p *Pod) Username() string {
	return "system:serviceaccount:" + p.Namespace + ":" + p.ServiceAccount
}

// Env is the environment the downward API and a mounted kubeconfig would give
// a container of this pod, as KEY=value pairs.
func (p *Pod) Env() []string {
	return []string{
		"POD_NAME=" + p.Name,
		"POD_NAMESPACE=" + p.Namespace,
		"POD_UID=" + p.UID,
		"POD_IPS=" + strings.Join(p.IPs, ","),
		"KUBECONFIG=" + p.KubeconfigFile,
	}
}

// NewNamespace creates a namespace with a unique name.
func (e *Env) NewNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	ns, err := e.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// NewPod creates a simulated pod and a token bound to it.
func (e *Env) NewPod(t testing.TB, opts PodOptions) *Pod {
	t.Helper()
	ctx := context.Background()
	n := e.seq.Add(1)
	if opts.Namespace == "" {
		opts.Namespace = e.NewNamespace(t)
	}
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("pod-%d", n)
	}
	if opts.ServiceAccount == "" {
		opts.ServiceAccount = "app"
	}
	if opts.IPs == nil {
		opts.IPs = []string{fmt.Sprintf("10.244.%d.%d", n/250, n%250+2)}
	}
	if err := e.ensureNode(ctx); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: opts.ServiceAccount}}
	if _, err := e.Client.CoreV1().ServiceAccounts(opts.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating service account: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Name, Namespace: opts.Namespace, Labels: maps.Clone(opts.Labels)},
		Spec: corev1.PodSpec{
			ServiceAccountName: opts.ServiceAccount,
			NodeName:           NodeName,
			Hostname:           opts.Hostname,
			Subdomain:          opts.Subdomain,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	pod, err := e.Client.CoreV1().Pods(opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	pod, err = e.markRunning(ctx, pod, opts.IPs)
	if err != nil {
		t.Fatalf("patching pod status: %v", err)
	}
	p := &Pod{
		Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID),
		ServiceAccount: opts.ServiceAccount, IPs: opts.IPs, Object: pod,
	}
	p.Token = e.podToken(t, p)
	p.Config = &rest.Config{Host: e.Config.Host, BearerToken: p.Token, TLSClientConfig: rest.TLSClientConfig{CAData: e.ServerCAPEM}}
	p.KubeconfigFile, err = writeKubeconfig(filepath.Join(e.Dir, fmt.Sprintf("pod-%d.kubeconfig", n)), p.Config)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// markRunning does what the kubelet would: report the pod running and ready
// with its IPs.
func (e *Env) markRunning(ctx context.Context, pod *corev1.Pod, ips []string) (*corev1.Pod, error) {
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP = "172.18.0.2"
	pod.Status.StartTime = &now
	pod.Status.PodIPs = nil
	for _, ip := range ips {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		pod.Status.PodIP = ips[0]
	}
	for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "app", Image: pod.Spec.Containers[0].Image, Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
	}}
	return e.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

func (e *Env) podToken(t testing.TB, p *Pod) string {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(time.Hour / time.Second)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.Object.UID},
	}}
	resp, err := e.Client.CoreV1().ServiceAccounts(p.Namespace).CreateToken(context.Background(), p.ServiceAccount, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting pod-bound token: %v", err)
	}
	return resp.Status.Token
}

func (e *Env) ensureNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName}}
	_, err := e.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node: %w", err)
	}
	return nil
}
