package manifests_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/diff"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// kubeVersion is the cluster the chart is rendered for: the control plane
// the tests run.
const kubeVersion = "v1.37.2"

// helmLabels are the labels Helm's conventions add to every object of a
// chart, and the only difference a rendered object may have from the
// kustomize build.
var helmLabels = []string{
	"app.kubernetes.io/instance",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/version",
	"helm.sh/chart",
}

func chartDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "charts", "csr-agent")
}

// renderChart renders the chart as `helm template csr-agent charts/csr-agent`
// does (values over its defaults, checked against its schema; objects in
// Helm's install order), and decodes the result. It returns the error of
// the render (a value the schema refuses, a required value) rather than
// failing.
func renderChart(t *testing.T, values map[string]any) ([]byte, []*unstructured.Unstructured, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	// The release record's namespace; the objects go to namespace.name.
	opts := common.ReleaseOptions{Name: "csr-agent", Namespace: "default", Revision: 1, IsInstall: true}
	vals, err := util.ToRenderValuesWithSchemaValidation(chrt, values, opts, caps, false)
	if err != nil {
		return nil, nil, err
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		return nil, nil, err
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		t.Fatalf("sorting the rendered chart: %v", err)
	}
	if len(hooks) > 0 {
		t.Fatalf("the chart has hooks, which `kubectl apply -k` has no equivalent of: %v", hooks)
	}
	var out bytes.Buffer
	for _, m := range manifests {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.Name, m.Content)
	}
	objs, err := decodeAll(out.Bytes())
	if err != nil {
		t.Fatalf("decoding the rendered chart: %v", err)
	}
	return out.Bytes(), objs, nil
}

// mustRenderChart is renderChart for values the chart must accept.
func mustRenderChart(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	_, objs, err := renderChart(t, values)
	if err != nil {
		t.Fatalf("rendering the chart with %v: %v", values, err)
	}
	return objs
}

// decodeAll decodes a stream of YAML documents, skipping empty ones.
func decodeAll(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

func objectID(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

// withoutHelmLabels returns a copy of o without Helm's standard labels,
// after checking that o has each of them.
func withoutHelmLabels(t *testing.T, o *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out := o.DeepCopy()
	labels := out.GetLabels()
	for _, l := range helmLabels {
		if _, ok := labels[l]; !ok {
			t.Errorf("%s lacks Helm's label %s", objectID(o), l)
		}
		delete(labels, l)
	}
	out.SetLabels(labels)
	return out
}

// checkSameObjects fails for every object of want that got lacks or holds
// differently, and every object of got that want lacks, once Helm's
// standard labels are set aside.
func checkSameObjects(t *testing.T, got, want []*unstructured.Unstructured) {
	t.Helper()
	index := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		m := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			if _, dup := m[objectID(o)]; dup {
				t.Errorf("%s twice", objectID(o))
			}
			m[objectID(o)] = o
		}
		return m
	}
	g, w := index(normalized(t, got)), index(normalized(t, want))
	for _, id := range sortedKeys(w) {
		o, ok := g[id]
		if !ok {
			t.Errorf("the chart lacks %s", id)
			continue
		}
		if stripped := withoutHelmLabels(t, o); !equality.Semantic.DeepEqual(stripped.Object, w[id].Object) {
			t.Errorf("%s differs from the kustomize build (-kustomize +chart):\n%s", id, diff.Diff(w[id].Object, stripped.Object))
		}
	}
	for _, id := range sortedKeys(g) {
		if _, ok := w[id]; !ok {
			t.Errorf("the chart renders %s, which the kustomize build lacks", id)
		}
	}
}

// clusterScoped are the kinds of cluster-scoped objects either side
// renders. kustomize's namespace transformer does not know that a
// FlowSchema is cluster-scoped and gives it a namespace, which the API
// server ignores.
var clusterScoped = []string{
	"Namespace", "ClusterRole", "ClusterRoleBinding", "FlowSchema",
	"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
	"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
}

// normalized returns copies of objs with what carries no meaning set
// aside: the namespace of a cluster-scoped object, and the order of a
// container's variables, which matters only to a variable that refers to
// another ($(NAME)), and none does. (A kustomize patch puts the variables
// it changes first.)
func normalized(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		o = o.DeepCopy()
		if slices.Contains(clusterScoped, o.GetKind()) {
			o.SetNamespace("")
		}
		for _, field := range []string{"initContainers", "containers"} {
			containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range containers {
				env, _ := c.(map[string]any)["env"].([]any)
				for _, e := range env {
					if v, _ := e.(map[string]any)["value"].(string); strings.Contains(v, "$(") {
						t.Fatalf("%s: variable %v refers to another: its order matters", objectID(o), e)
					}
				}
				slices.SortStableFunc(env, func(a, b any) int {
					return strings.Compare(a.(map[string]any)["name"].(string), b.(map[string]any)["name"].(string))
				})
			}
			if len(containers) > 0 {
				if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", field); err != nil {
					t.Fatal(err)
				}
			}
		}
		out[i] = o
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// imagesOf returns the image of every container of the pod templates among
// objs, keyed "object/container".
func imagesOf(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		if tmpl := podTemplate(t, o); tmpl != nil {
			for _, c := range allContainers(tmpl) {
				out[o.GetName()+"/"+c.Name] = c.Image
			}
		}
	}
	return out
}

// renderError is the message of a render error, on one line, for matching.
func renderError(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
