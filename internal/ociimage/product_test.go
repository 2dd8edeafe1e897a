package ociimage_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/csr-agent/csr-agent/internal/ociimage"
)

// finalStage is what the Dockerfile's last stage says about the image.
type finalStage struct {
	user            string
	entrypoint, cmd []string
	copied          []string // destinations of COPY
}

func parseFinalStage(t *testing.T) finalStage {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var s finalStage
	for _, n := range res.AST.Children {
		args := func() []string {
			var out []string
			for a := n.Next; a != nil; a = a.Next {
				out = append(out, a.Value)
			}
			return out
		}
		switch strings.ToLower(n.Value) {
		case "from":
			s = finalStage{}
		case "user":
			s.user = n.Next.Value
		case "entrypoint":
			s.entrypoint = args()
		case "cmd":
			s.cmd = args()
		case "copy":
			a := args()
			s.copied = append(s.copied, a[len(a)-1])
		}
	}
	return s
}

func TestProductImageMatchesTheDockerfilesFinalStage(t *testing.T) {
	want := parseFinalStage(t)
	a := read(t, ociimage.Product("localhost/csr-agent:test", []byte("agent"), []byte("controller")))
	c := a.config.Config
	if c.User != want.user {
		t.Errorf("user %q, Dockerfile %q", c.User, want.user)
	}
	if !slices.Equal(c.Entrypoint, want.entrypoint) || !slices.Equal(c.Cmd, want.cmd) {
		t.Errorf("entrypoint %q cmd %q, Dockerfile %q %q", c.Entrypoint, c.Cmd, want.entrypoint, want.cmd)
	}
	if len(want.copied) == 0 {
		t.Fatal("the Dockerfile's final stage copies nothing")
	}
	for _, p := range want.copied {
		if h := a.files[p]; h == nil || h.Mode&0o111 == 0 {
			t.Errorf("%s (copied by the Dockerfile) missing or not executable: %+v", p, h)
		}
	}
	for p := range a.files {
		if strings.HasPrefix(p, "/bin") || strings.HasPrefix(p, "/usr") || strings.HasSuffix(p, "/sh") {
			t.Errorf("%s in the image: the final stage has no shell", p)
		}
	}
	if !strings.Contains(string(a.data["/etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Error("/etc/passwd does not name the user 65532 nonroot, as distroless does")
	}
}
