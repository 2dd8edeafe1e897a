package manifests_test

import (
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestEveryKustomizationBuilds(t *testing.T) {
	dirs := kustomizations(t)
	for _, want := range []string{
		".", "controller", "agent-rbac", "agent-rbac/example-binding",
		"examples", "examples/native-sidecar", "examples/two-containers", "examples/statefulset",
		"examples/client-certificate", "examples/job", "examples/pod-certificate",
	} {
		if !slices.Contains(dirs, want) {
			t.Errorf("no kustomization in manifests/%s", want)
		}
	}
	for _, dir := range dirs {
		if _, objs := build(t, dir); len(objs) == 0 {
			t.Errorf("manifests/%s builds to nothing", dir)
		}
	}
}

// Every kustomization is applied to a real API server: the schema accepts
// every field, and the namespaces' restricted Pod Security level finds
// nothing to warn about in any pod template (kubectl fails on warnings).
func TestEveryKustomizationIsAcceptedByTheAPIServer(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	for _, dir := range kustomizations(t) {
		if dir == "examples" || strings.HasPrefix(dir, "examples/") {
			t.Run(dir, func(t *testing.T) { apply(t, env, dir) })
		}
	}
	t.Run("controller with components/own-ca", func(t *testing.T) {
		out, _ := build(t, ownCAOverlay(t))
		kubectl(t, env.KubeconfigFile, out, "apply", "--server-side", "--dry-run=server", "--field-manager=manifests-test", "-f", "-")
	})
}

// manifests/examples lists the files of every example (see its
// kustomization.yaml); it must hold exactly what the examples hold.
func TestExamplesKustomizationHoldsEveryExample(t *testing.T) {
	ids := func(objs []*unstructured.Unstructured) map[string]bool {
		out := map[string]bool{}
		for _, o := range objs {
			out[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = true
		}
		return out
	}
	want := map[string]bool{}
	for _, dir := range kustomizations(t) {
		if strings.HasPrefix(dir, "examples/") {
			_, objs := build(t, dir)
			maps.Copy(want, ids(objs))
		}
	}
	_, objs := build(t, "examples")
	got := ids(objs)
	for id := range want {
		if !got[id] {
			t.Errorf("manifests/examples lacks %s", id)
		}
	}
	for id := range got {
		if !want[id] {
			t.Errorf("manifests/examples has %s, which no example has", id)
		}
	}
}

// ownCAOverlay writes the overlay the own-ca component documents and
// returns its directory.
func ownCAOverlay(t *testing.T) string {
	t.Helper()
	return overlay(t, "controller", "components/own-ca")
}

// overlay writes a kustomization of the directory base of manifests/ with
// the given components (directories of manifests/) and returns its
// directory. kustomize takes only relative paths to bases.
func overlay(t *testing.T, base string, components ...string) string {
	t.Helper()
	return kustomization(t, []string{base}, components)
}

// resources returns a kustomization directory applying the kustomizations
// of manifests/ named by dirs together.
func resources(t *testing.T, dirs ...string) string {
	t.Helper()
	return kustomization(t, dirs, nil)
}

// kustomization writes a kustomization of the resources and components
// (paths under manifests/) into a new directory and returns it.
func kustomization(t *testing.T, resources, components []string) string {
	t.Helper()
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, filepath.Join(repoRoot(t), "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	under := func(dirs []string) string {
		paths := make([]string, len(dirs))
		for i, d := range dirs {
			paths[i] = path.Join(rel, d)
		}
		return "[" + strings.Join(paths, ", ") + "]"
	}
	k := "resources: " + under(resources) + "\n"
	if len(components) > 0 {
		k += "components: " + under(components) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOwnCAComponentTakesAwayCreatingSecrets(t *testing.T) {
	_, objs := build(t, ownCAOverlay(t))
	for _, o := range objs {
		if strings.Contains(o.GetName(), "create-ca") {
			t.Errorf("%s %s is still there", o.GetKind(), o.GetName())
		}
		if o.GetKind() == "Role" && ruleGrants(t, o, "secrets", "create") {
			t.Errorf("Role %s still grants creating Secrets", o.GetName())
		}
	}
	ctr := container(t, podTemplate(t, find(t, objs, "Deployment", "csr-agent-controller")), "controller")
	if got := envValue(ctr, "CREATE_CA"); got != "false" {
		t.Errorf("CREATE_CA = %q, want false", got)
	}
	find(t, objs, "Role", "csr-agent-controller") // reading its CA stays
}

func TestEveryManifestRunsTheSameImageTag(t *testing.T) {
	tags := map[string][]string{}
	for _, dir := range kustomizations(t) {
		_, objs := build(t, dir)
		for _, o := range objs {
			tmpl := podTemplate(t, o)
			if tmpl == nil {
				continue
			}
			for _, c := range allContainers(tmpl) {
				if repo, tag, ok := strings.Cut(c.Image, ":"); ok && repo == image {
					tags[tag] = append(tags[tag], dir+"/"+o.GetName()+"/"+c.Name)
				} else if repo == image {
					t.Errorf("%s/%s/%s runs %s without a tag: set it with kustomize images", dir, o.GetName(), c.Name, c.Image)
				}
			}
		}
	}
	if len(tags) != 1 {
		t.Errorf("manifests run different tags of %s: %v", image, tags)
	}
}

// The image holds /agent and /controller (see the Dockerfile); the
// manifests must start one of them with a mode it has.
func TestEveryContainerOfTheImageStartsAProgramItHas(t *testing.T) {
	valid := map[string][]string{"/agent": {"init", "sidecar", "probe"}, "/controller": {"run"}}
	for _, dir := range kustomizations(t) {
		_, objs := build(t, dir)
		for _, o := range objs {
			tmpl := podTemplate(t, o)
			if tmpl == nil {
				continue
			}
			for _, c := range allContainers(tmpl) {
				if !strings.HasPrefix(c.Image, image+":") {
					continue
				}
				if len(c.Command) != 2 || !slices.Contains(valid[c.Command[0]], c.Command[1]) || len(c.Args) > 0 {
					t.Errorf("%s/%s/%s: command %q args %q, want /agent init|sidecar or /controller run", dir, o.GetName(), c.Name, c.Command, c.Args)
				}
			}
		}
	}
}

func allContainers(tmpl *corev1.PodTemplateSpec) []corev1.Container {
	return append(slices.Clone(tmpl.Spec.InitContainers), tmpl.Spec.Containers...)
}

func container(t *testing.T, tmpl *corev1.PodTemplateSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range allContainers(tmpl) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// envValue is the literal value of a variable of c, "" if unset or not a
// literal.
func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// ruleGrants reports whether a Role or ClusterRole grants verb on resource
// (any name).
func ruleGrants(t *testing.T, role *unstructured.Unstructured, resource, verb string) bool {
	t.Helper()
	rules, _, err := unstructured.NestedSlice(role.Object, "rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		m := r.(map[string]any)
		res, _, _ := unstructured.NestedStringSlice(m, "resources")
		verbs, _, _ := unstructured.NestedStringSlice(m, "verbs")
		names, _, _ := unstructured.NestedStringSlice(m, "resourceNames")
		if slices.Contains(res, resource) && slices.Contains(verbs, verb) && len(names) == 0 {
			return true
		}
	}
	return false
}
