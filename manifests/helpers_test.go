package manifests_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/manifests"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// image is the repository every manifest runs, tagged by kustomize.
const image = "ghcr.io/csr-agent/csr-agent"

// kustomizations lists the directories of manifests.FS holding a
// kustomization.yaml that can be built on its own (not a Component), in a
// stable order.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := fs.WalkDir(manifests.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		data, err := fs.ReadFile(manifests.FS, p)
		if err != nil {
			return err
		}
		var k struct{ Kind string }
		if err := yaml.Unmarshal(data, &k); err != nil {
			return err
		}
		if k.Kind != "Component" {
			dirs = append(dirs, path.Dir(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(dirs)
	return dirs
}

// kustomized is the output of `kubectl kustomize`, as YAML and decoded.
type kustomized struct {
	yaml []byte
	objs []*unstructured.Unstructured
}

var built sync.Map // directory → kustomized

// build runs `kubectl kustomize` on a directory of manifests/ (relative) or
// any other directory (absolute) and decodes the result.
func build(t *testing.T, dir string) (yamlOut []byte, objs []*unstructured.Unstructured) {
	t.Helper()
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot(t), "manifests", dir)
	}
	if cached, ok := built.Load(dir); ok {
		k := cached.(kustomized)
		return k.yaml, k.objs
	}
	out := kubectl(t, "", nil, "kustomize", dir)
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("decoding kustomize output of %s: %v", dir, err)
	}
	built.Store(dir, kustomized{yaml: out, objs: objs})
	return out, objs
}

// kubectl runs kubectl with the given kubeconfig ("" for none) and stdin,
// and fails the test on an error or on any warning (the API server's Pod
// Security warnings among them).
func kubectl(t *testing.T, kubeconfig string, stdin []byte, args ...string) []byte {
	t.Helper()
	bin := kubectlPath(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if kubeconfig == "" {
		kubeconfig = os.DevNull // never the developer's cluster
	}
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Errorf("kubectl %s warned:\n%s", strings.Join(args, " "), s)
	}
	return stdout.Bytes()
}

// apply applies a directory's kustomization with server-side apply, as
// `kubectl apply --server-side -k` does, and fails on any warning.
// Conflicts are forced, as an operator re-applying the manifests would:
// the test environment applied the admission policies before, under its
// own field manager.
func apply(t *testing.T, env *testenv.Env, dir string) {
	t.Helper()
	out, _ := build(t, dir)
	kubectl(t, env.KubeconfigFile, out, "apply", "--server-side", "--force-conflicts", "--field-manager=manifests-test", "-f", "-")
}

// kubectlPath finds kubectl: next to the control plane (bin/), else in
// PATH.
func kubectlPath(t *testing.T) string {
	t.Helper()
	if dir, err := testenv.BinDir(); err == nil {
		if p := filepath.Join(dir, "kubectl"); isExecutable(p) {
			return p
		}
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl builds and applies the kustomizations: put it in PATH or bin/ (https://kubernetes.io/docs/tasks/tools/)")
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

var installed struct {
	sync.Mutex
	done bool
}

// install applies what a cluster runs once (manifests/: the controller and
// the agent's ClusterRoles) and the example binding for my-app/my-app,
// once per test binary.
func install(t *testing.T, env *testenv.Env) {
	t.Helper()
	installed.Lock()
	defer installed.Unlock()
	if installed.done {
		return
	}
	apply(t, env, ".")
	// The example binding is for an application's existing namespace.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "my-app"}}
	if _, err := env.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	apply(t, env, "agent-rbac/example-binding")
	installed.done = true
}

// find returns the object of the kind and name among objs.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

// convert turns an unstructured object into a typed one.
func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// podTemplate returns the pod template of a workload, or nil.
func podTemplate(t *testing.T, u *unstructured.Unstructured) *corev1.PodTemplateSpec {
	t.Helper()
	tmpl, found, err := unstructured.NestedMap(u.Object, "spec", "template")
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return nil
	}
	return convert[corev1.PodTemplateSpec](t, &unstructured.Unstructured{Object: tmpl})
}
