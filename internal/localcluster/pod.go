package localcluster

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// NodeName is the Node simulated pods are bound to unless PodOptions.Node
// names another. No kubelet runs; the Node object exists so that pod-bound
// tokens carry node facts as they do in a real cluster.
const NodeName = "testenv-node"

// DefaultTokenTTL is the lifetime of the tokens NewPod and
// ServiceAccountKubeconfig request when none is given: the kubelet's
// default for projected service-account tokens.
const DefaultTokenTTL = time.Hour

// PodOptions describes a simulated pod. Zero values get defaults.
type PodOptions struct {
	// Namespace defaults to a new namespace for this pod.
	Namespace string
	// Name defaults to "pod-<n>".
	Name string
	// ServiceAccount defaults to "app"; it is created if missing.
	ServiceAccount string
	Labels         map[string]string
	// IPs become status.podIPs; default: one IPv4 address unique in the
	// cluster.
	IPs []string
	// Hostname and Subdomain set spec.hostname and spec.subdomain.
	Hostname, Subdomain string
	// TokenTTL is the lifetime of Token; default DefaultTokenTTL. No kubelet
	// refreshes it.
	TokenTTL time.Duration
	// Volumes become spec.volumes, e.g. a projected podCertificate volume,
	// which NodeRestriction requires before the node may request a pod
	// certificate for the pod.
	Volumes []corev1.Volume
	// Finalizers become metadata.finalizers: such a pod stays, terminating,
	// after it is deleted until they are removed.
	Finalizers []string
	// Node is the Node the pod is bound to, created if missing; default
	// NodeName.
	Node string
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
func (c *Cluster) NewNamespace(ctx context.Context) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating namespace: %w", err)
	}
	return ns.Name, nil
}

// NewPod creates a simulated pod, its service account if missing, and a
// token bound to the pod.
func (c *Cluster) NewPod(ctx context.Context, opts PodOptions) (*Pod, error) {
	n := c.seq.Add(1)
	if opts.Namespace == "" {
		ns, err := c.NewNamespace(ctx)
		if err != nil {
			return nil, err
		}
		opts.Namespace = ns
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
	if opts.TokenTTL == 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Node == "" {
		opts.Node = NodeName
	}
	if err := c.ensureNode(ctx, opts.Node); err != nil {
		return nil, err
	}
	if err := c.ensureServiceAccount(ctx, opts.Namespace, opts.ServiceAccount); err != nil {
		return nil, err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: opts.Name, Namespace: opts.Namespace, Labels: maps.Clone(opts.Labels), Finalizers: opts.Finalizers},
		Spec: corev1.PodSpec{
			Volumes:            opts.Volumes,
			ServiceAccountName: opts.ServiceAccount,
			NodeName:           opts.Node,
			Hostname:           opts.Hostname,
			Subdomain:          opts.Subdomain,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	pod, err := c.Client.CoreV1().Pods(opts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod: %w", err)
	}
	pod, err = c.markRunning(ctx, pod, opts.IPs)
	if err != nil {
		return nil, fmt.Errorf("patching pod status: %w", err)
	}
	p := &Pod{
		Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID),
		ServiceAccount: opts.ServiceAccount, IPs: opts.IPs, Object: pod,
	}
	bound := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: pod.UID}
	if p.Token, err = c.token(ctx, p.Namespace, p.ServiceAccount, bound, opts.TokenTTL); err != nil {
		return nil, fmt.Errorf("requesting pod-bound token: %w", err)
	}
	p.Config = c.tokenConfig(p.Token)
	p.KubeconfigFile, err = writeKubeconfig(filepath.Join(c.Dir, fmt.Sprintf("pod-%d.kubeconfig", n)), p.Config)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the
// service account (created if missing) with a token that is not bound to a
// pod, as a workload outside the cluster would get, and returns its path.
// ttl defaults to DefaultTokenTTL.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string, ttl time.Duration) (string, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if err := c.ensureServiceAccount(ctx, namespace, name); err != nil {
		return "", err
	}
	token, err := c.token(ctx, namespace, name, nil, ttl)
	if err != nil {
		return "", fmt.Errorf("requesting token for %s/%s: %w", namespace, name, err)
	}
	path := filepath.Join(c.Dir, fmt.Sprintf("sa-%s-%s-%d.kubeconfig", namespace, name, c.seq.Add(1)))
	return writeKubeconfig(path, c.tokenConfig(token))
}

func (c *Cluster) tokenConfig(token string) *rest.Config {
	return &rest.Config{Host: c.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: c.ServerCAPEM}}
}

// markRunning does what the kubelet would: report the pod running and ready
// with its IPs.
func (c *Cluster) markRunning(ctx context.Context, pod *corev1.Pod, ips []string) (*corev1.Pod, error) {
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
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "app", Image: pod.Spec.Containers[0].Image, Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
	}}
	return c.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

// token asks the TokenRequest API for a token of the service account,
// bound to the object if one is given.
func (c *Cluster) token(ctx context.Context, namespace, sa string, bound *authenticationv1.BoundObjectReference, ttl time.Duration) (string, error) {
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(int64(ttl / time.Second)),
		BoundObjectRef:    bound,
	}}
	resp, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return resp.Status.Token, nil
}

func (c *Cluster) ensureServiceAccount(ctx context.Context, namespace, name string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := c.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account: %w", err)
	}
	return nil
}

func (c *Cluster) ensureNode(ctx context.Context, name string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node: %w", err)
	}
	return nil
}
