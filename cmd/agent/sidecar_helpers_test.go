package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/internal/writer"
)

// signalTargetEnv makes the test binary play the application: see startApp.
const signalTargetEnv = "AGENT_TEST_SIGNAL_TARGET"

// signalTarget prints "ready", then "hangup" for every SIGHUP, and exits when
// its stdin closes.
func signalTarget() {
	hups := make(chan os.Signal, 16)
	signal.Notify(hups, syscall.SIGHUP)
	fmt.Println("ready")
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	for range hups {
		fmt.Println("hangup")
	}
}

// app is a process the agent can signal by name, standing in for nginx.
type app struct {
	name string
	hups atomic.Int32
}

// startApp runs the test binary under a name unique to this test run (the
// name of the symlink it is started through becomes its comm), so that the
// agent's /proc scan finds it and nobody else's process.
func startApp(t *testing.T) *app {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &app{name: fmt.Sprintf("app-%d", os.Getpid())}
	link := filepath.Join(t.TempDir(), a.name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link)
	cmd.Env = append(os.Environ(), signalTargetEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			switch lines.Text() {
			case "ready":
				close(ready)
			case "hangup":
				a.hups.Add(1)
			}
		}
	}()
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatal("the stand-in application did not start")
	}
	return a
}

// waitForLogCount waits until the agent has logged text n times.
func waitForLogCount(t *testing.T, r *agentRun, text string, n int, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		out, changed := r.stderr.next()
		if strings.Count(out, text) >= n {
			return
		}
		select {
		case <-changed:
		case <-r.done:
			t.Fatalf("agent exited after logging %q %d times, want %d:\n%s", text, strings.Count(r.stderr.String(), text), n, r.stderr.String())
		case <-deadline:
			t.Fatalf("agent logged %q %d times within %s, want %d:\n%s", text, strings.Count(out, text), within, n, out)
		}
	}
}

var addressRE = regexp.MustCompile(`msg="Serving /healthz, /readyz and /metrics".* address=(\S+)`)

// httpURL returns the base URL of the agent's HTTP endpoint (HTTP_ADDR
// with port 0), from its log.
func httpURL(t *testing.T, r *agentRun) string {
	t.Helper()
	waitForLog(t, r, "Serving /healthz")
	m := addressRE.FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("no address in the log:\n%s", r.stderr.String())
	}
	return "http://" + m[1]
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// terminate sends SIGTERM, as the kubelet does, and returns the exit code
// and how long the agent took to exit.
func (r *agentRun) terminate(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
		return r.cmd.ProcessState.ExitCode(), time.Since(start)
	case <-time.After(30 * time.Second):
		t.Fatalf("agent still running 30s after SIGTERM:\n%s", r.stderr.String())
		return -1, 0
	}
}

// grantEventsRBAC binds the shipped csr-agent-events ClusterRole to the
// pod's service account in its namespace.
func grantEventsRBAC(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
	t.Helper()
	env.BindClusterRoleInNamespace(t, pod, testenv.AgentEventsRole)
}

// waitForEvents waits until the pod has Events with every reason.
func waitForEvents(t *testing.T, env *testenv.Env, pod *testenv.Pod, reasons ...string) {
	t.Helper()
	var seen map[string]bool
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
		if err != nil {
			return false, err
		}
		seen = map[string]bool{}
		for _, ev := range list.Items {
			if ev.InvolvedObject.UID == "" || string(ev.InvolvedObject.UID) == pod.UID {
				seen[ev.Reason] = true
			}
		}
		for _, r := range reasons {
			if !seen[r] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("events of the pod: %v, want %v (%v)", seen, reasons, err)
	}
}

// pairReader reads the directory the way applications do, as fast as it
// can, while the agent renews and repairs: tls.pem in one read, and tls.crt
// with tls.key through one resolution of ..data.
type pairReader struct {
	dir   string
	stop  chan struct{}
	done  chan struct{}
	reads atomic.Int64

	mu       sync.Mutex
	failures []string          // a torn or mismatched pair
	keys     map[string]string // serial → public key
}

func startPairReader(t *testing.T, dir string) *pairReader {
	t.Helper()
	r := &pairReader{dir: dir, stop: make(chan struct{}), done: make(chan struct{}), keys: map[string]string{}}
	go r.run()
	t.Cleanup(r.halt)
	return r
}

func (r *pairReader) run() {
	defer close(r.done)
	// A read every 200µs, not a busy loop: the agent and the control plane
	// share this machine's cores.
	tick := time.NewTicker(200 * time.Microsecond)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		r.check("tls.pem", func() ([]byte, []byte, error) {
			b, err := os.ReadFile(filepath.Join(r.dir, "tls.pem"))
			return b, b, err
		})
		r.check("..data", func() ([]byte, []byte, error) {
			gen, err := os.Readlink(filepath.Join(r.dir, "..data"))
			if err != nil {
				return nil, nil, err
			}
			crt, err := os.ReadFile(filepath.Join(r.dir, gen, "tls.crt"))
			if err != nil {
				return nil, nil, err
			}
			key, err := os.ReadFile(filepath.Join(r.dir, gen, "tls.key"))
			return crt, key, err
		})
	}
}

func (r *pairReader) check(how string, read func() ([]byte, []byte, error)) {
	crt, key, err := read()
	if errors.Is(err, fs.ErrNotExist) {
		return // nothing yet, or the old generation removed under the read: retry
	}
	r.reads.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failures = append(r.failures, how+": "+err.Error())
		return
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		r.failures = append(r.failures, how+": "+err.Error())
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		r.failures = append(r.failures, how+": "+err.Error())
		return
	}
	r.keys[leaf.SerialNumber.String()] = string(leaf.RawSubjectPublicKeyInfo)
}

func (r *pairReader) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// result returns the failures seen, and the distinct certificates and keys.
func (r *pairReader) result() (failures []string, certs, keys int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	distinct := map[string]bool{}
	for _, k := range r.keys {
		distinct[k] = true
	}
	return append([]string(nil), r.failures...), len(r.keys), len(distinct)
}

// loadPublished reads the directory as the writer validates it.
func loadPublished(t *testing.T, dir string, keystorePassword []byte) (*writer.Published, error) {
	t.Helper()
	w, err := writer.New(writer.Options{Dir: dir, KeystorePassword: keystorePassword})
	if err != nil {
		t.Fatal(err)
	}
	return w.Load()
}
