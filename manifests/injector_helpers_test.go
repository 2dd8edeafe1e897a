package manifests_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/csr-agent/csr-agent/internal/injector"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// injectorOverlay writes the overlay the injector component documents (the
// default install plus the component) and returns its directory.
func injectorOverlay(t *testing.T) string {
	t.Helper()
	return overlay(t, ".", "injector")
}

var injectorInstalled struct {
	sync.Mutex
	done bool
}

// installInjector applies the overlay with `kubectl apply --server-side`,
// once per test binary, and returns once the API server injects (policies
// take effect when its informers have seen them).
func installInjector(t *testing.T, env *testenv.Env) {
	t.Helper()
	install(t, env)
	injectorInstalled.Lock()
	defer injectorInstalled.Unlock()
	if injectorInstalled.done {
		return
	}
	apply(t, env, injectorOverlay(t))
	ns := newNamespace(t, env, true)
	waitFor(t, "the API server to inject and validate", func(ctx context.Context) bool {
		injected, err := dryRun(ctx, env, optedIn(restrictedPod(ns, "probe")))
		if err != nil {
			return false
		}
		// The validating policy is in effect once it refuses an unknown
		// annotation.
		bad := optedIn(restrictedPod(ns, "probe"))
		bad.Annotations = map[string]string{"csr-agent.io/no-such-setting": "x"}
		_, err = dryRun(ctx, env, bad)
		return hasAgent(injected) && err != nil
	})
	injectorInstalled.done = true
}

// params is the data of the parameters ConfigMap that ships.
func params(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "injector", "params.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// waitFor polls cond until it holds, failing the test after 30 seconds. It
// works in a cleanup too, where the test's context is already done.
func waitFor(t *testing.T, what string, cond func(context.Context) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) { return cond(ctx), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// newNamespace creates a namespace that enforces Pod Security restricted,
// opted in to injection if optIn, with the service account "app".
func newNamespace(t *testing.T, env *testenv.Env, optIn bool) string {
	t.Helper()
	labels := map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}
	if optIn {
		labels[injector.OptInLabel] = injector.OptInValue
	}
	return newNamespaceWith(t, env, labels)
}

// newNamespaceWith creates a namespace with labels and the service account
// "app".
func newNamespaceWith(t *testing.T, env *testenv.Env, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "injector-", Labels: labels}}
	ns, err := env.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}
	if _, err := env.Client.CoreV1().ServiceAccounts(ns.Name).Create(t.Context(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// restrictedPod is a pod of one container that Pod Security restricted
// admits, not opted in.
func restrictedPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{appContainer("app")},
		},
	}
}

func appContainer(name string) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: "registry.k8s.io/pause:3.10",
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// optedIn labels pod to opt in and returns it.
func optedIn(pod *corev1.Pod) *corev1.Pod {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[injector.OptInLabel] = injector.OptInValue
	return pod
}

func create(ctx context.Context, env *testenv.Env, pod *corev1.Pod) (*corev1.Pod, error) {
	return env.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
}

// dryRun creates pod with dryRun=All: admission runs in full and the pod
// that would be stored comes back, and nothing is stored.
func dryRun(ctx context.Context, env *testenv.Env, pod *corev1.Pod) (*corev1.Pod, error) {
	return env.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// hasAgent reports whether any trace of the injection is in pod.
func hasAgent(pod *corev1.Pod) bool {
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Name == injector.ContainerName {
			return true
		}
		for _, m := range c.VolumeMounts {
			if m.Name == injector.CertVolume || m.MountPath == injector.CertDir {
				return true
			}
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == injector.CertVolume || v.Name == injector.TokenVolume {
			return true
		}
	}
	return false
}

// checkInjected compares the pod the API server stored for in with
// injector.Expected(in), both through the API server's defaulting (a
// dry-run create of the expected pod, which already has the agent and so
// is left alone by the policy).
func checkInjected(t *testing.T, env *testenv.Env, in, got *corev1.Pod) {
	t.Helper()
	want := injector.Expected(in, params(t))
	if want.Name != "" {
		want.Name += "-want"
	}
	want, err := dryRun(t.Context(), env, want)
	if err != nil {
		t.Fatalf("the expected pod is not admitted: %v", err)
	}
	if g, w := withoutAutomount(got.Spec), withoutAutomount(want.Spec); !equality.Semantic.DeepEqual(g, w) {
		t.Errorf("injected pod differs from the expected one (-got +want):\n%s", diff.Diff(g, w))
	}
	agent := got.Spec.InitContainers[0]
	for _, m := range agent.VolumeMounts {
		if strings.HasPrefix(m.Name, "kube-api-access-") {
			t.Errorf("the agent mounts the app's token volume %s; it has its own", m.Name)
		}
	}
}

// withoutAutomount takes out the volume and mounts the ServiceAccount
// admission plugin adds: their names are random, and it runs before the
// policy, so the injected agent never has them while the expected pod's
// does.
func withoutAutomount(s corev1.PodSpec) corev1.PodSpec {
	s = *s.DeepCopy()
	auto := func(name string) bool { return strings.HasPrefix(name, "kube-api-access-") }
	var vols []corev1.Volume
	for _, v := range s.Volumes {
		if !auto(v.Name) {
			vols = append(vols, v)
		}
	}
	s.Volumes = vols
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			var ms []corev1.VolumeMount
			for _, m := range cs[i].VolumeMounts {
				if !auto(m.Name) {
					ms = append(ms, m)
				}
			}
			cs[i].VolumeMounts = ms
		}
	}
	return s
}
