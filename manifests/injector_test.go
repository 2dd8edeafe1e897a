package manifests_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/injector"
	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/manifests"
)

// Admission runs in the API server, so the pod that comes back from a
// create is the injection's result. Every namespace here enforces Pod
// Security restricted: each injected pod below is also one it admits.
func TestInjectorAddsTheAgentToEveryShapeOfOptedInPod(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	optedInNS := newNamespace(t, env, true)
	withInit := func(p *corev1.Pod) *corev1.Pod {
		sidecar := appContainer("log-shipper")
		sidecar.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		p.Spec.InitContainers = []corev1.Container{appContainer("migrate"), sidecar}
		p.Spec.InitContainers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		return p
	}
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"one container, no init containers, no volumes, no mounts", optedIn(restrictedPod(ns, "plain"))},
		{"init containers of its own, one a native sidecar", optedIn(withInit(restrictedPod(ns, "with-init")))},
		{"several containers with volumes and mounts", func() *corev1.Pod {
			p := optedIn(restrictedPod(ns, "several"))
			p.Spec.Containers = append(p.Spec.Containers, appContainer("metrics"), appContainer("proxy"))
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}}
			p.Spec.Containers[2].VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/cache", ReadOnly: true}}
			p.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			return p
		}()},
		{"a StatefulSet pod with hostname and subdomain", func() *corev1.Pod {
			p := optedIn(restrictedPod(ns, "store-0"))
			p.Spec.Hostname, p.Spec.Subdomain = "store-0", "store"
			return p
		}()},
		{"every annotation", func() *corev1.Pod {
			p := optedIn(restrictedPod(ns, "annotated"))
			p.Annotations = map[string]string{}
			for _, a := range injector.Annotations {
				p.Annotations[a.Name] = a.Valid[len(a.Valid)-1]
			}
			p.Spec.ShareProcessNamespace = ptr.To(true) // for notify-process
			return p
		}()},
		{"opted in by its namespace", restrictedPod(optedInNS, "by-namespace")},
		{"generated name, as a ReplicaSet's pods", func() *corev1.Pod {
			p := optedIn(restrictedPod(ns, ""))
			p.GenerateName = "web-"
			return p
		}()},
		{"no service-account token for the app", func() *corev1.Pod {
			p := optedIn(restrictedPod(ns, "no-token"))
			p.Spec.AutomountServiceAccountToken = ptr.To(false)
			return p
		}()},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := create(t.Context(), env, c.pod.DeepCopy())
			if err != nil {
				t.Fatalf("creating the pod: %v", err)
			}
			checkInjected(t, env, c.pod, got)
			checkAgentAcceptsItsEnv(t, got.Spec.InitContainers[0])
			if c.pod.Spec.AutomountServiceAccountToken != nil && !*c.pod.Spec.AutomountServiceAccountToken {
				for _, v := range got.Spec.Volumes {
					if strings.HasPrefix(v.Name, "kube-api-access-") {
						t.Errorf("the app gets a token volume %s it did not ask for", v.Name)
					}
				}
			}
		})
	}
}

func TestInjectorLeavesAloneWhatDidNotOptIn(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	optedInNS := newNamespace(t, env, true)
	handWritten := optedIn(restrictedPod(ns, "hand-written"))
	handWritten.Spec.InitContainers = []corev1.Container{appContainer(injector.ContainerName)}
	handWritten.Spec.InitContainers[0].Image = "example.com/my-own-agent:1"
	optedOut := restrictedPod(optedInNS, "opted-out")
	optedOut.Labels[injector.OptInLabel] = "false"
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"no label, namespace not opted in", restrictedPod(ns, "plain")},
		{"label false in an opted-in namespace", optedOut},
		{"label other than true", func() *corev1.Pod {
			p := restrictedPod(ns, "yes")
			p.Labels[injector.OptInLabel] = "yes"
			return p
		}()},
		{"already has a csr-agent container", handWritten},
		{"opted in, a static pod's mirror", func() *corev1.Pod {
			p := optedIn(restrictedPod(optedInNS, "mirror"))
			p.Annotations = map[string]string{"kubernetes.io/config.mirror": "0123456789abcdef"}
			p.Spec.NodeName = "node-a"
			p.Spec.ServiceAccountName = "" // the kubelet's mirror pods have none
			return p
		}()},
		{"opted in, in kube-system", optedIn(restrictedPod(metav1.NamespaceSystem, "kube-system-pod"))},
		{"opted in, in the controller's namespace", optedIn(restrictedPod(injector.ParamsNamespace, "controller-ns-pod"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.pod.Namespace == metav1.NamespaceSystem || c.pod.Namespace == injector.ParamsNamespace {
				c.pod.Spec.ServiceAccountName = "default"
			}
			got, err := dryRun(t.Context(), env, c.pod.DeepCopy())
			if err != nil {
				t.Fatalf("creating the pod: %v", err)
			}
			if got, want := shape(got.Spec), shape(c.pod.Spec); !slices.Equal(got, want) {
				t.Errorf("the pod was changed:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// Rejection is the rule for a value the agent would refuse: a crash-looping
// sidecar, or a default the pod did not ask for, would be found later and
// less clearly. Each annotation's examples are held against the validating
// policy (through the API server) and against the agent's own
// configuration parser: the two must agree on every one.
func TestInjectorRefusesAnnotationsTheAgentWouldRefuse(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	base, err := dryRun(t.Context(), env, optedIn(restrictedPod(ns, "base")))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range injector.Annotations {
		for _, c := range append(examples(a.Valid, true), examples(a.Invalid, false)...) {
			t.Run(a.Name+"="+c.value, func(t *testing.T) {
				pod := optedIn(restrictedPod(ns, "annotated"))
				pod.Annotations = map[string]string{a.Name: c.value}
				pod.Spec.ShareProcessNamespace = ptr.To(true)
				_, err := dryRun(t.Context(), env, pod)
				switch {
				case c.valid && err != nil:
					t.Errorf("refused: %v", err)
				case !c.valid && err == nil:
					t.Error("admitted")
				case !c.valid && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), a.Name)):
					t.Errorf("refused with %v; want Invalid naming %s", err, a.Name)
				}
				if a.Secret {
					return // the agent sees the Secret's content, not this reference
				}
				if !slices.ContainsFunc(config.Docs(), func(v config.Var) bool { return v.Name == a.Var }) {
					t.Skipf("%s is not an agent variable in this tree yet", a.Var)
				}
				agent := base.Spec.InitContainers[0]
				agent.Env = append(slices.Clone(agent.Env), corev1.EnvVar{Name: a.Var, Value: c.value})
				if err := agentAccepts(t, agent); (err == nil) != c.valid {
					t.Errorf("the agent's own parser disagrees with the policy: valid=%v, parser says %v", c.valid, err)
				}
			})
		}
	}
}

type example struct {
	value string
	valid bool
}

func examples(values []string, valid bool) []example {
	out := make([]example, len(values))
	for i, v := range values {
		out[i] = example{v, valid}
	}
	return out
}

func TestInjectorRefusesUnknownAnnotationsAndImpossibleSettings(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	privileged := newNamespaceWith(t, env, nil)
	for _, c := range []struct {
		name, want string
		pod        func(*corev1.Pod)
	}{
		{"a typo of an annotation", "csr-agent.io/service-name", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"csr-agent.io/service-name": "web"}
		}},
		// Pod Security restricted would refuse it first.
		{"a pod-wide root user, which the agent refuses", "runAsUser", func(p *corev1.Pod) {
			p.Namespace = privileged
			p.Spec.SecurityContext.RunAsNonRoot = nil
			p.Spec.SecurityContext.RunAsUser = ptr.To(int64(0))
		}},
		{"notify-process without a shared process namespace", "shareProcessNamespace", func(p *corev1.Pod) {
			p.Annotations = map[string]string{"csr-agent.io/notify-process": "nginx"}
		}},
		{"an app container mounting the agent's token", injector.TokenVolume, func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts,
				corev1.VolumeMount{Name: injector.TokenVolume, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod := optedIn(restrictedPod(ns, "refused"))
			c.pod(pod)
			_, err := dryRun(t.Context(), env, pod)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v; want Invalid naming %s", err, c.want)
			}
		})
	}
}

// Failing closed: without its parameters, an opted-in pod is refused rather
// than started without its agent, while a pod that did not opt in is not
// even looked at. Not parallel: it takes the parameters away for a moment.
func TestInjectorWithoutParametersRefusesOnlyOptedInPods(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	restoreInjectorAtCleanup(t, env, ns)
	cms := env.Client.CoreV1().ConfigMaps(injector.ParamsNamespace)
	if err := cms.Delete(t.Context(), injector.ParamsName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "opted-in pods to be refused", func(ctx context.Context) bool {
		_, err := dryRun(ctx, env, optedIn(restrictedPod(ns, "opted-in")))
		return err != nil
	})
	if _, err := dryRun(t.Context(), env, restrictedPod(ns, "not-opted-in")); err != nil {
		t.Errorf("a pod that did not opt in is refused: %v", err)
	}
}

// The parameters' image is the one the rest of the install runs: kustomize's
// images transformer does not reach a ConfigMap's data, so a release must
// change both.
func TestInjectorRunsTheControllersImage(t *testing.T) {
	_, objs := build(t, ".")
	ctr := container(t, podTemplate(t, find(t, objs, "Deployment", "csr-agent-controller")), "controller")
	if got := params(t)["image"]; got != ctr.Image {
		t.Errorf("the injector runs %s, the controller %s", got, ctr.Image)
	}
}

// checkAgentAcceptsItsEnv holds the injected agent's environment, with the
// downward API resolved as the kubelet would, against the agent's own
// configuration parser.
func checkAgentAcceptsItsEnv(t *testing.T, agent corev1.Container) {
	t.Helper()
	if err := agentAccepts(t, agent); err != nil {
		t.Errorf("the agent would refuse its configuration:\n%v", err)
	}
}

func agentAccepts(t *testing.T, agent corev1.Container) error {
	t.Helper()
	isolateEnv(t, config.Docs())
	for _, e := range agent.Env {
		if !slices.ContainsFunc(config.Docs(), func(v config.Var) bool { return v.Name == e.Name }) {
			if e.Name == "SHORT_SERVICE_NAMES" {
				continue // being added to the agent; checked once it is there
			}
			t.Errorf("%s is not an agent variable", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Setenv(e.Name, "a-keystore-password")
			continue
		}
		t.Setenv(e.Name, resolve(t, e))
	}
	_, err := config.FromEnv()
	return err
}

// shape lists a pod's containers with their images and mounts, and its
// volumes, leaving out what the ServiceAccount admission plugin adds.
func shape(s corev1.PodSpec) []string {
	s = withoutAutomount(s)
	var out []string
	for _, c := range append(s.InitContainers, s.Containers...) {
		out = append(out, "container "+c.Name+" "+c.Image)
		for _, m := range c.VolumeMounts {
			out = append(out, "  mount "+m.Name+" "+m.MountPath)
		}
	}
	for _, v := range s.Volumes {
		out = append(out, "volume "+v.Name)
	}
	return out
}

// CREATE only: most of a pod's spec is immutable, so an injection on UPDATE
// would make the update fail, and a pod whose finalizers cannot be removed
// is never deleted. A pod labelled after its creation stays as it is, and
// its updates go through.
func TestInjectorNeverTouchesAnUpdate(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	pod := restrictedPod(ns, "labelled-later")
	pod.Finalizers = []string{"example.com/hold"}
	pod, err := create(t.Context(), env, pod)
	if err != nil {
		t.Fatal(err)
	}
	pods := env.Client.CoreV1().Pods(ns)
	optedIn(pod)
	pod.Annotations = map[string]string{"csr-agent.io/key-type": "not-a-key-type"}
	if pod, err = pods.Update(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("labelling the pod: %v", err)
	}
	if hasAgent(pod) {
		t.Error("an update injected the agent")
	}
	pod.Finalizers = nil
	if _, err := pods.Update(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Errorf("removing the finalizer: %v", err)
	}
	if err := pods.Delete(t.Context(), pod.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
	}
}

// The validating policy is the second lock: with the mutating policy gone
// (here: its bindings deleted), an opted-in pod is refused, naming what is
// missing, rather than started without its agent. Not parallel: it takes
// the bindings away for a moment.
func TestInjectorWithoutTheMutatingPolicyRefusesOptedInPods(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	ns := newNamespace(t, env, false)
	restoreInjectorAtCleanup(t, env, ns)
	bindings := env.Client.AdmissionregistrationV1().MutatingAdmissionPolicyBindings()
	for _, name := range []string{"csr-agent-injector-pod", "csr-agent-injector-namespace"} {
		if err := bindings.Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var refusal error
	waitFor(t, "opted-in pods to be refused", func(ctx context.Context) bool {
		_, refusal = dryRun(ctx, env, optedIn(restrictedPod(ns, "opted-in")))
		return refusal != nil
	})
	if !apierrors.IsInvalid(refusal) || !strings.Contains(refusal.Error(), "has no csr-agent container") {
		t.Errorf("refused with %v; want Invalid naming the missing csr-agent container", refusal)
	}
	if _, err := dryRun(t.Context(), env, restrictedPod(ns, "not-opted-in")); err != nil {
		t.Errorf("a pod that did not opt in is refused: %v", err)
	}
}

// What an end-to-end test on a real node does: apply the component's files
// with manifests.Apply (over the kubectl install here: same objects, same
// field manager, no conflict).
func TestInjectorFilesApplyWithManifestsApply(t *testing.T) {
	env := testenv.Shared(t)
	installInjector(t, env)
	applied, err := manifests.Apply(t.Context(), env.Config, "manifests-test", injector.Files...)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 7 {
		t.Errorf("applied %q, want the ConfigMap, both policies and their four bindings", applied)
	}
}

// restoreInjectorAtCleanup applies the component's files again when the
// test ends, as installInjector left them, and waits until the API server
// injects again into pods of ns.
func restoreInjectorAtCleanup(t *testing.T, env *testenv.Env, ns string) {
	t.Helper()
	t.Cleanup(func() {
		if _, err := manifests.Apply(context.Background(), env.Config, "manifests-test", injector.Files...); err != nil {
			t.Errorf("restoring the injector: %v", err)
			return
		}
		waitFor(t, "the injector to inject again", func(ctx context.Context) bool {
			p, err := dryRun(ctx, env, optedIn(restrictedPod(ns, "back")))
			return err == nil && hasAgent(p)
		})
	})
}
