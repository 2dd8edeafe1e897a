//go:build e2e

package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/injector"
	"github.com/csr-agent/csr-agent/manifests"
)

// TestInjectedPodGetsItsCertificateAndServesTLS: the injection component
// applied as shipped (its image pointed at the local one), a plain pod that
// only opts in with the label, in a Pod-Security-restricted namespace. The
// API server adds the agent; the kubelet starts it first; the app starts
// once the pair exists and serves TLS that a client pod verifies for the
// Service name.
func TestInjectedPodGetsItsCertificateAndServesTLS(t *testing.T) {
	requireController(t)
	ctx := t.Context()
	if _, err := manifests.Apply(ctx, node.Cluster.Config, "e2e", injector.Files...); err != nil {
		t.Fatal(err)
	}
	params := `{"data":{"image":"` + productImage + `"}}`
	if _, err := client.CoreV1().ConfigMaps(injector.ParamsNamespace).Patch(ctx, injector.ParamsName, "application/merge-patch+json", []byte(params), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	const ns, app = "csr-agent-injected", "inj"
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, namespace, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	bindAgentRoles(t, ns, app)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{{Port: 8443, TargetPort: intstr.FromInt32(8443)}}},
	}
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	psc, sc := restricted()
	// The app's user for the whole pod, so the injected agent (which fixes
	// no UID) writes a key the app can read.
	psc.RunAsUser, psc.RunAsGroup, psc.FSGroup = ptr.To[int64](101), ptr.To[int64](101), ptr.To[int64](101)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns, Labels: map[string]string{"app": app, injector.OptInLabel: injector.OptInValue}},
		Spec: corev1.PodSpec{
			ServiceAccountName:           app,
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext:              psc,
			Containers:                   []corev1.Container{{Name: "app", Image: appImage, SecurityContext: sc}},
		},
	}
	// The policies take effect a moment after they are applied.
	eventually(t, time.Minute, "the API server to inject the agent", func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		return len(p.Spec.InitContainers) == 1 && p.Spec.InitContainers[0].Name == injector.ContainerName, nil
	})
	created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := created.Spec.InitContainers[0].Image; got != productImage {
		t.Errorf("injected agent image %q, want the parameters' %q", got, productImage)
	}
	var running corev1.Pod
	eventually(t, 3*time.Minute, "the injected pod to be ready", func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		running = *p
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if app := container(running, "app"); app.RestartCount != 0 {
		t.Errorf("app restarted %d times: it started before its certificate existed", app.RestartCount)
	}
	out, ok := clientPod(t, ns, "verify-"+app, time.Minute, "-addr="+running.Status.PodIP+":8443", "-server-name="+app+"."+ns+".svc", "-count=2")
	if !ok || !strings.Contains(out, "hello from "+app+" over TLS") {
		t.Fatalf("client pod could not verify %s.%s.svc at %s:\n%s\nagent log:\n%s", app, ns, running.Status.PodIP, out, logs(t, ns, app, injector.ContainerName))
	}
}

// bindAgentRoles binds the agent's shipped ClusterRoles to service account
// sa of ns, as manifests/agent-rbac/example-binding does.
func bindAgentRoles(t *testing.T, ns, sa string) {
	t.Helper()
	ctx := t.Context()
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}}
	rbac := client.RbacV1()
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "csr-agent-" + ns + "-" + sa},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "csr-agent"}, Subjects: subject}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, role := range []string{"csr-agent-namespace", "csr-agent-events"} {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role + "-" + sa, Namespace: ns},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}, Subjects: subject}
		if _, err := rbac.RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}
