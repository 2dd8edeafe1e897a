package manifests_test

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Images cannot be built on the machines this project is developed on (no
// container daemon), so the Dockerfile is checked for what matters with
// BuildKit's own parser, and its build command is run with the Go
// toolchain.

// stage is one FROM of a Dockerfile and the instructions under it.
type stage struct {
	from  *parser.Node
	steps []*parser.Node
}

func (s stage) base() string { return s.from.Next.Value }

func (s stage) name() string {
	if n := s.from.Next.Next; n != nil && strings.EqualFold(n.Value, "as") && n.Next != nil {
		return n.Next.Value
	}
	return ""
}

func (s stage) instructions(cmd string) []*parser.Node {
	var out []*parser.Node
	for _, n := range s.steps {
		if strings.EqualFold(n.Value, cmd) { // the parser keeps the case as written
			out = append(out, n)
		}
	}
	return out
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile does not parse: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile parser warning: %s", w.Short)
	}
	var stages []stage
	for _, n := range res.AST.Children {
		switch {
		case strings.EqualFold(n.Value, "from"):
			stages = append(stages, stage{from: n})
		case len(stages) > 0:
			stages[len(stages)-1].steps = append(stages[len(stages)-1].steps, n)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(stages))
	}
	return stages
}

// args is an instruction's arguments as written (exec form or shell form).
func args(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

func TestDockerfileFinalStageIsDistrolessStaticNonRootWithoutShell(t *testing.T) {
	stages := parseDockerfile(t)
	final := stages[len(stages)-1]
	if ok, _ := regexp.MatchString(`^gcr\.io/distroless/static(-debian\d+)?:nonroot(@sha256:[0-9a-f]{64})?$`, final.base()); !ok {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static-debian<n>:nonroot", final.base())
	}
	users := final.instructions("user")
	if len(users) == 0 {
		t.Error("final stage sets no USER; the image must not depend on its base for running as non-root")
	}
	for _, u := range users {
		if user := strings.SplitN(u.Next.Value, ":", 2)[0]; user == "0" || user == "root" || user == "" {
			t.Errorf("final stage runs as %q, want a non-root user", u.Next.Value)
		}
	}
	// Distroless has no shell: a RUN would fail there, and shell-form
	// ENTRYPOINT or CMD would need /bin/sh.
	for _, n := range final.instructions("run") {
		t.Errorf("final stage has %s: the final image has no shell", n.Original)
	}
	for _, cmd := range []string{"entrypoint", "cmd"} {
		for _, n := range final.instructions(cmd) {
			if n.Attributes["json"] != true {
				t.Errorf("%s is in shell form, which needs /bin/sh: %s", strings.ToUpper(cmd), n.Original)
			}
		}
	}
}

// The manifests start /agent and /controller: both must be in the image.
func TestDockerfileShipsBothProgramsFromTheBuildStage(t *testing.T) {
	stages := parseDockerfile(t)
	final := stages[len(stages)-1]
	builders := map[string]bool{}
	for _, s := range stages[:len(stages)-1] {
		builders[s.name()] = true
	}
	copied := map[string]bool{}
	for _, n := range final.instructions("copy") {
		from := ""
		for _, f := range n.Flags {
			if v, ok := strings.CutPrefix(f, "--from="); ok {
				from = v
			}
		}
		if !builders[from] {
			t.Errorf("final stage copies from %q, not from a build stage: %s", from, n.Original)
		}
		a := args(n)
		copied[a[len(a)-1]] = true
	}
	for _, program := range []string{"/agent", "/controller"} {
		if !copied[program] {
			t.Errorf("final stage does not copy %s", program)
		}
	}
	if ep := final.instructions("entrypoint"); len(ep) != 1 || !slices.Equal(args(ep[0]), []string{"/agent"}) {
		t.Errorf("ENTRYPOINT should be [\"/agent\"] (the controller is picked with command:), got %v", ep)
	}
}

// goBuild returns the RUN of the build stages that runs `go build`, and the
// command as written.
func goBuild(t *testing.T, stages []stage) (*parser.Node, string) {
	t.Helper()
	for _, s := range stages[:len(stages)-1] {
		for _, n := range s.instructions("run") {
			if cmd := strings.Join(args(n), " "); strings.Contains(cmd, "go build") {
				return n, cmd
			}
		}
	}
	t.Fatal("no build stage runs `go build`")
	return nil, ""
}

func TestDockerfileBuildsStaticStrippedBinariesWithCacheMounts(t *testing.T) {
	stages := parseDockerfile(t)
	run, cmd := goBuild(t, stages)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "./cmd/agent", "./cmd/controller"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("go build command lacks %q: %s", want, cmd)
		}
	}
	for _, target := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
		if !slices.ContainsFunc(run.Flags, func(f string) bool {
			return strings.HasPrefix(f, "--mount=") && strings.Contains(f, "type=cache") && strings.Contains(f, "target="+target)
		}) {
			t.Errorf("go build has no cache mount for %s (flags %v)", target, run.Flags)
		}
	}
	if !strings.HasPrefix(stages[0].base(), "golang:") {
		t.Errorf("first stage FROM %s, want a golang builder", stages[0].base())
	}
}

// The Makefile's build and the image's build must not drift apart.
func TestDockerfileAndMakefileBuildWithTheSameFlags(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w"} {
		if !bytes.Contains(makefile, []byte(want)) {
			t.Errorf("Makefile build lacks %q", want)
		}
	}
}

// The flags checked above, run for the host: the result must be what the
// distroless static image needs, statically linked and stripped.
func TestBuildFlagsProduceStaticStrippedBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both programs")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", dir+"/", "./cmd/agent", "./cmd/controller")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, name := range []string{"agent", "controller"} {
		f, err := elf.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: distroless static has no libc", name)
			}
		}
		if s := f.Section(".symtab"); s != nil {
			t.Errorf("%s has a symbol table: not stripped", name)
		}
		_ = f.Close()
	}
}

// repoRoot is the module root: the test runs in manifests/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
