package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/csr-agent/csr-agent/internal/localcluster"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// The demo runs in the test process, so the test sees every process it
// starts as a child.

func TestMain(m *testing.M) {
	code := m.Run()
	if programs.dir != "" {
		_ = os.RemoveAll(programs.dir)
	}
	os.Exit(code)
}

func TestDemoIssuesRenewsServesOverTLSAndStopsEverything(t *testing.T) {
	opts := demoOptions(t)
	out := &output{}
	opts.Out = out
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, opts); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`CSR csr-agent-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12} created by system:serviceaccount:demo:web \(pod-bound token of pod "web"\)`),
		regexp.MustCompile(`approved: AutoApproved`),
		regexp.MustCompile(`GET https://web\.demo\.svc\.cluster\.local/ trusting only ca\.crt: verified`),
		regexp.MustCompile(`the agent told the app \(POST http://127\.0\.0\.1:\d+/-/reload\)`),
		regexp.MustCompile(`subject\s+CN=web\.demo\.svc\.cluster\.local`),
		// Not web.demo nor web: SHORT_SERVICE_NAMES is off.
		regexp.MustCompile(`SANs\s+DNS:web\.demo\.svc\.cluster\.local, DNS:web\.demo\.svc(?:,|\s|$)`),
		regexp.MustCompile(`issuer\s+CN=csr-agent\.io/pod CA`),
		regexp.MustCompile(`-rw------- tls\.key -> \.\.data/tls\.key`),
		regexp.MustCompile(`-rw-r--r-- ca\.crt -> \.\.data/ca\.crt`),
		regexp.MustCompile(`renewal seen\s+serial \S+ replaced by \S+, .* new key: true`),
		regexp.MustCompile(`agent stopped by SIGTERM, exit status 0`),
		regexp.MustCompile(`controller stopped by SIGTERM, exit status 0`),
		regexp.MustCompile(`control plane stopped`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %s", want)
		}
	}
	if n := strings.Count(text, "approved: AutoApproved"); n < 2 {
		t.Errorf("saw %d approvals, want the first request and a renewal", n)
	}
	assertNothingLeft(t, text)
}

func TestDemoKeepRunsUntilInterruptedAndCanBeExplored(t *testing.T) {
	opts := demoOptions(t)
	opts.Keep = true
	out := &output{wait: "Press Ctrl-C", found: make(chan struct{})}
	opts.Out = out
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, opts) }()
	select {
	case <-out.found:
	case err := <-done:
		t.Fatalf("demo ended before it was interrupted: %v\n%s", err, out)
	case <-time.After(5 * time.Minute):
		t.Fatalf("demo did not get to running\n%s", out)
	}

	// What the demo tells a person to do works.
	m := regexp.MustCompile(`export KUBECONFIG=(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no KUBECONFIG printed\n%s", out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", m[1])
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("demo").Get(t.Context(), "web", metav1.GetOptions{}); err != nil {
		t.Errorf("reading pod demo/web with the printed KUBECONFIG: %v", err)
	}
	if _, err := client.CertificatesV1().ClusterTrustBundles().Get(t.Context(), "csr-agent.io:pod:ca", metav1.GetOptions{}); err != nil {
		t.Errorf("reading the trust bundle with the printed KUBECONFIG: %v", err)
	}

	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo failed on Ctrl-C: %v\n%s", err, out)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("demo did not stop after Ctrl-C\n%s", out)
	}
	assertNothingLeft(t, out.String())
}

// demoOptions runs the control plane of bin/ and programs built from this
// tree with the flags of `make build`.
func demoOptions(t *testing.T) options {
	t.Helper()
	bin, err := localcluster.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	programs := buildPrograms(t)
	return options{
		ControlPlaneDir: bin,
		Agent:           filepath.Join(programs, "agent"),
		Controller:      filepath.Join(programs, "controller"),
	}
}

var programs struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

func buildPrograms(t *testing.T) string {
	t.Helper()
	programs.once.Do(func() {
		// Under the control plane's bin directory, where `make test`'s
		// stray check looks for programs left running.
		if programs.dir, programs.err = testenv.BuildDir("demo-"); programs.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", programs.dir+"/", "../agent", "../controller")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		programs.out, programs.err = cmd.CombinedOutput()
	})
	if programs.err != nil {
		t.Fatalf("building agent and controller: %v\n%s", programs.err, programs.out)
	}
	return programs.dir
}

// assertNothingLeft checks that no process the demo started still runs and
// that its directories are gone.
func assertNothingLeft(t *testing.T, text string) {
	t.Helper()
	if pids := testenv.Children(os.Getpid()); len(pids) > 0 {
		t.Errorf("processes left running: %v", pids)
	}
	for _, m := range regexp.MustCompile(`(/\S*csr-agent-(?:demo|cluster)-\d+)`).FindAllStringSubmatch(text, -1) {
		if _, err := os.Stat(m[1]); err == nil {
			t.Errorf("%s was not removed", m[1])
		}
	}
}

// output collects the demo's output and tells when a text appears in it.
type output struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wait  string
	found chan struct{}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, _ := o.buf.Write(p)
	if o.found != nil && o.wait != "" && bytes.Contains(o.buf.Bytes(), []byte(o.wait)) {
		close(o.found)
		o.wait = ""
	}
	return n, nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
