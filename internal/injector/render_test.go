package injector

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/csr-agent/csr-agent/internal/docgen"
)

var update = flag.Bool("update", false, "rewrite the generated blocks of the README and of manifests/injector")

// generated lists every file holding blocks rendered from Annotations, and
// the blocks in the order of their markers.
func generated() []struct {
	path       string
	begin, end string
	blocks     []string
} {
	return []struct {
		path       string
		begin, end string
		blocks     []string
	}{
		{"README.md", "<!-- injector-annotations:begin -->", "<!-- injector-annotations:end -->", []string{MarkdownTable()}},
		{"manifests/injector/mutating.yaml", BeginMarker, EndMarker, []string{MutatingVariables("  ")}},
		{"manifests/injector/validating.yaml", BeginMarker, EndMarker, []string{ValidatingVariables("  "), Validations("  ")}},
	}
}

// TestPoliciesAndREADMEFollowTheAnnotations keeps the annotation table of
// the README and the annotation-dependent parts of both policies rendered
// from Annotations: the policy cannot map an annotation the README does not
// document, nor check it against another form.
func TestPoliciesAndREADMEFollowTheAnnotations(t *testing.T) {
	for _, g := range generated() {
		docgen.Check(t, filepath.Join("..", "..", g.path), g.begin, g.end, g.blocks, *update, "go test ./internal/injector -update")
	}
}

func TestAnnotationsAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range Annotations {
		if !strings.HasPrefix(a.Name, AnnotationPrefix) || a.Var == "" || a.Form == "" || a.Desc == "" || a.Check == "" {
			t.Errorf("%+v lacks a name under %s, a variable, a form, a description or a check", a, AnnotationPrefix)
		}
		if len(a.Valid) == 0 || len(a.Invalid) == 0 {
			t.Errorf("%s has no valid or no invalid example: the policy's check would be untested", a.Name)
		}
		if seen[a.Name] || seen[a.Var] {
			t.Errorf("%s or %s is listed twice", a.Name, a.Var)
		}
		seen[a.Name], seen[a.Var] = true, true
		// Rendered into CEL single-quoted strings and YAML block scalars.
		if strings.ContainsAny(a.Name+a.Var, `'"\`) {
			t.Errorf("%s %s holds a quote or a backslash", a.Name, a.Var)
		}
		if want := AnnotationPrefix + strings.ToLower(strings.ReplaceAll(a.Var, "_", "-")); a.Name != want && !a.Secret {
			t.Errorf("%s sets %s: name it %s", a.Name, a.Var, want)
		}
	}
}

func TestFilesAreTheComponentsResources(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "manifests", "injector", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for i, r := range k.Resources {
		k.Resources[i] = "injector/" + r
	}
	if !slices.Equal(k.Resources, Files) {
		t.Errorf("Files = %q, the kustomization lists %q", Files, k.Resources)
	}
}
