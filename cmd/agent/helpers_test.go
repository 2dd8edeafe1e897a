package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestMain(m *testing.M) {
	if os.Getenv(signalTargetEnv) == "1" {
		signalTarget() // this process is an app for the agent to signal
		return
	}
	testenv.Main(m)
}

var agentBinary = struct {
	once sync.Once
	path string
	err  error
}{}

// buildAgent builds the agent binary once per test run, with the race
// detector when the tests run with it.
func buildAgent(t *testing.T) string {
	t.Helper()
	agentBinary.once.Do(func() {
		// Under the control plane's bin directory, where `make test`'s
		// stray check looks for programs left running; removed by
		// testenv.Main.
		dir, err := testenv.BuildDir("agent-")
		if err != nil {
			agentBinary.err = err
			return
		}
		agentBinary.path = filepath.Join(dir, "agent")
		args := []string{"build", "-o", agentBinary.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			agentBinary.err = &buildError{err: err, out: out}
		}
	})
	if agentBinary.err != nil {
		t.Fatalf("building agent: %v", agentBinary.err)
	}
	return agentBinary.path
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

// agentRun is one run of the agent binary as a container of pod would run.
type agentRun struct {
	cmd    *exec.Cmd
	stderr logBuffer
	done   chan struct{}
}

// logBuffer collects a process's output and lets a test wait for a line.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// next returns the output so far and a channel closed at the next write.
func (b *logBuffer) next() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.buf.String(), b.changed
}

// waitForLog waits until the agent has logged text.
func waitForLog(t *testing.T, r *agentRun, text string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		out, changed := r.stderr.next()
		if strings.Contains(out, text) {
			return
		}
		select {
		case <-changed:
		case <-r.done:
			if out := r.stderr.String(); !strings.Contains(out, text) {
				t.Fatalf("agent exited without logging %q:\n%s", text, out)
			}
			return
		case <-deadline:
			t.Fatalf("agent did not log %q within a minute:\n%s", text, out)
		}
	}
}

// startAgent runs `agent init` with the pod's downward-API environment.
func startAgent(t *testing.T, pod *testenv.Pod, certDir string, extra ...string) *agentRun {
	t.Helper()
	return startMode(t, "init", pod, certDir, extra...)
}

// startMode runs the agent in mode with the pod's downward-API environment
// and extra KEY=value pairs; an extra "-KEY" unsets KEY.
func startMode(t *testing.T, mode string, pod *testenv.Pod, certDir string, extra ...string) *agentRun {
	t.Helper()
	r := &agentRun{done: make(chan struct{})}
	r.cmd = exec.Command(buildAgent(t), mode)
	r.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CERT_DIR=" + certDir, "LOG_FORMAT=text"}, pod.Env()...)
	for _, e := range extra {
		if name, unset := strings.CutPrefix(e, "-"); unset {
			r.cmd.Env = slices.DeleteFunc(r.cmd.Env, func(v string) bool { return strings.HasPrefix(v, name+"=") })
			continue
		}
		r.cmd.Env = append(r.cmd.Env, e)
	}
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("agent stderr:\n%s", r.stderr.String())
		}
	})
	return r
}

// wait returns the exit code, failing the test if the agent runs too long.
func (r *agentRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode()
	case <-time.After(2 * time.Minute):
		t.Fatalf("agent still running after 2m; stderr:\n%s", r.stderr.String())
		return -1
	}
}

// runAgent runs `agent init` to completion.
func runAgent(t *testing.T, pod *testenv.Pod, certDir string, extra ...string) (int, string) {
	t.Helper()
	r := startAgent(t, pod, certDir, extra...)
	code := r.wait(t)
	return code, r.stderr.String()
}

// grantAgentRBAC binds the agent's ClusterRole as shipped in
// manifests/agent-rbac to the pod's service account, with the admission
// policies of manifests/admission in force: the tests prove that what ships
// is enough.
func grantAgentRBAC(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
	t.Helper()
	env.GrantAgent(t, pod, testenv.AgentAccess{})
}

func csrName(pod *testenv.Pod) string { return issue.CSRName(pod.Namespace, pod.Name, pod.UID) }

// waitCSR watches until the pod's CSR exists and returns it.
func waitCSR(t *testing.T, env *testenv.Env, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lw := cache.NewFilteredListWatchFromClient(env.Client.CertificatesV1().RESTClient(), "certificatesigningrequests", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	ev, err := watchtools.UntilWithSync(ctx, lw, &certificatesv1.CertificateSigningRequest{}, nil, func(ev watch.Event) (bool, error) {
		return ev.Type != watch.Deleted, nil
	})
	if err != nil {
		t.Fatalf("waiting for csr %s: %v", name, err)
	}
	return ev.Object.(*certificatesv1.CertificateSigningRequest)
}

// podCSRs lists the CSRs labelled with the pod's UID.
func podCSRs(t *testing.T, env *testenv.Env, pod *testenv.Pod) []certificatesv1.CertificateSigningRequest {
	t.Helper()
	list, err := env.Client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{LabelSelector: issue.LabelPodUID + "=" + pod.UID})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
