package notify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain doubles as a process to signal: see startSignalTarget.
func TestMain(m *testing.M) {
	if os.Getenv("NOTIFY_TEST_TARGET") == "1" {
		signalTarget()
		return
	}
	os.Exit(m.Run())
}

// fakeProc builds a /proc with the given processes: pid → "ppid comm argv0".
func fakeProc(t *testing.T, procs map[int]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, desc := range procs {
		var ppid int
		var comm, argv0 string
		if _, err := fmt.Sscan(desc, &ppid, &comm, &argv0); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, fmt.Sprint(pid))
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "stat"), fmt.Appendf(nil, "%d (%s) S %d 1 1 0 -1", pid, comm, ppid), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(argv0+"\x00--flag\x00"), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(root, "self"), 0o755))
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type kills struct{ pids []int }

func (k *kills) kill(pid int, sig syscall.Signal) error {
	if sig != syscall.SIGHUP {
		return fmt.Errorf("unexpected signal %v", sig)
	}
	k.pids = append(k.pids, pid)
	return nil
}

func TestSignalsTheMasterProcessNotItsWorkers(t *testing.T) {
	root := fakeProc(t, map[int]string{
		1:  "0 pause /pause",
		10: "1 nginx /usr/sbin/nginx",
		11: "10 nginx /usr/sbin/nginx",
		12: "10 nginx /usr/sbin/nginx",
		20: "1 sh /bin/sh",
	})
	var k kills
	n, err := New(Options{Process: "nginx", Signal: syscall.SIGHUP, ProcRoot: root, Kill: k.kill})
	must(t, err)
	out := n.Notify(t.Context())
	if len(out) != 1 || out[0].Hook != HookSignal || out[0].Err != nil {
		t.Fatalf("outcomes %+v", out)
	}
	if !slices.Equal(k.pids, []int{10}) {
		t.Errorf("signalled %v, want only the master 10", k.pids)
	}
}

func TestMatchesTheProgramNameWhenCommDiffers(t *testing.T) {
	// A JVM's comm is "java"; its program may be a launcher script's name.
	root := fakeProc(t, map[int]string{7: "1 java /opt/app/bin/shop", 8: "1 java /usr/bin/java"})
	var k kills
	n, err := New(Options{Process: "shop", Signal: syscall.SIGHUP, ProcRoot: root, Kill: k.kill})
	must(t, err)
	if out := n.Notify(t.Context()); out[0].Err != nil || !slices.Equal(k.pids, []int{7}) {
		t.Errorf("signalled %v (%v), want 7", k.pids, out[0].Err)
	}
}

func TestParentPIDSurvivesParenthesesInComm(t *testing.T) {
	ppid, ok := parentPID([]byte("42 (we (ird) app) S 17 42 42 0 -1"))
	if !ok || ppid != 17 {
		t.Errorf("parentPID = %d, %v; want 17", ppid, ok)
	}
	if _, ok := parentPID([]byte("garbage")); ok {
		t.Error("parentPID accepted a line without a comm")
	}
}

func TestMissingProcessIsReportedWithAHint(t *testing.T) {
	root := fakeProc(t, map[int]string{1: "0 pause /pause", 2: "1 envoy /usr/local/bin/envoy"})
	var k kills
	n, err := New(Options{Process: "nginx", Signal: syscall.SIGHUP, ProcRoot: root, Kill: k.kill})
	must(t, err)
	out := n.Notify(t.Context())
	if !errors.Is(out[0].Err, ErrNoProcess) || !strings.Contains(out[0].Err.Error(), "shareProcessNamespace") {
		t.Errorf("got %v, want ErrNoProcess with a hint", out[0].Err)
	}
}

func TestNeverSignalsItself(t *testing.T) {
	root := fakeProc(t, map[int]string{os.Getpid(): "1 agent /agent"})
	var k kills
	n, err := New(Options{Process: "agent", Signal: syscall.SIGHUP, ProcRoot: root, Kill: k.kill})
	must(t, err)
	if out := n.Notify(t.Context()); !errors.Is(out[0].Err, ErrNoProcess) || len(k.pids) != 0 {
		t.Errorf("signalled %v (%v)", k.pids, out[0].Err)
	}
}

func TestPermissionDeniedNamesTheFix(t *testing.T) {
	root := fakeProc(t, map[int]string{5: "1 nginx /usr/sbin/nginx", 6: "1 nginx /usr/sbin/nginx"})
	kill := func(pid int, _ syscall.Signal) error {
		if pid == 5 {
			return syscall.EPERM
		}
		return syscall.ESRCH // exited since the scan: not an error
	}
	n, err := New(Options{Process: "nginx", Signal: syscall.SIGHUP, ProcRoot: root, Kill: kill})
	must(t, err)
	out := n.Notify(t.Context())
	if !errors.Is(out[0].Err, syscall.EPERM) || !strings.Contains(out[0].Err.Error(), "CAP_KILL") {
		t.Errorf("got %v", out[0].Err)
	}
}

func TestSignalReachesARealProcess(t *testing.T) {
	target := startSignalTarget(t)
	n, err := New(Options{Process: target.name, Signal: syscall.SIGHUP})
	must(t, err)
	for range 2 {
		if out := n.Notify(t.Context()); out[0].Err != nil {
			t.Fatal(out[0].Err)
		}
		target.expect(t, "hangup")
	}
}

func TestPostsToTheURL(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodPost:
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
		case r.URL.Path == "/broken":
			http.Error(w, "reload failed: bad config", http.StatusInternalServerError)
		default:
			posts.Add(1)
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	n, err := New(Options{URL: srv.URL + "/-/reload"})
	must(t, err)
	if out := n.Notify(t.Context()); out[0].Hook != HookURL || out[0].Err != nil || posts.Load() != 1 {
		t.Errorf("outcome %+v, %d posts", out, posts.Load())
	}
	n, err = New(Options{URL: srv.URL + "/broken"})
	must(t, err)
	if out := n.Notify(t.Context()); out[0].Err == nil || !strings.Contains(out[0].Err.Error(), "500") ||
		!strings.Contains(out[0].Err.Error(), "bad config") {
		t.Errorf("got %v, want the status and the app's message", out[0].Err)
	}
}

func TestHookTimeoutIsReported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	n, err := New(Options{URL: srv.URL, Command: []string{"sleep", "10"}, Timeout: 100 * time.Millisecond})
	must(t, err)
	start := time.Now()
	out := n.Notify(t.Context())
	if len(out) != 2 || out[0].Err == nil || out[1].Err == nil {
		t.Fatalf("outcomes %+v, want two timeouts", out)
	}
	if !strings.Contains(out[1].Err.Error(), "deadline exceeded") {
		t.Errorf("command error %v does not say it timed out", out[1].Err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("hooks took %v despite a 100ms timeout", took)
	}
}

func TestRunsTheCommandWithTheAddedEnvironment(t *testing.T) {
	n, err := New(Options{Command: []string{"sh", "-c", `test "$CERT_DIR" = /certs`}, Env: []string{"CERT_DIR=/certs"}})
	must(t, err)
	if out := n.Notify(t.Context()); out[0].Hook != HookCommand || out[0].Err != nil {
		t.Errorf("outcome %+v", out)
	}
	n, err = New(Options{Command: []string{"sh", "-c", "echo reload refused >&2; exit 3"}})
	must(t, err)
	if out := n.Notify(t.Context()); out[0].Err == nil || !strings.Contains(out[0].Err.Error(), "exit status 3") ||
		!strings.Contains(out[0].Err.Error(), "reload refused") {
		t.Errorf("got %v, want the exit status and the output", out[0].Err)
	}
}

func TestAFailingHookDoesNotStopTheOthers(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { posts.Add(1) }))
	defer srv.Close()
	n, err := New(Options{
		Process: "nothing-like-this", Signal: syscall.SIGHUP, ProcRoot: fakeProc(t, nil),
		URL: srv.URL, Command: []string{"true"},
	})
	must(t, err)
	out := n.Notify(t.Context())
	var hooks []string
	for _, o := range out {
		hooks = append(hooks, o.Hook)
	}
	if !slices.Equal(hooks, []string{HookSignal, HookURL, HookCommand}) || out[0].Err == nil || out[1].Err != nil || out[2].Err != nil {
		t.Errorf("outcomes %+v", out)
	}
	if posts.Load() != 1 {
		t.Errorf("%d posts, want 1", posts.Load())
	}
}

func TestNothingConfiguredIsDisabled(t *testing.T) {
	n, err := New(Options{})
	must(t, err)
	if n.Enabled() || len(n.Notify(context.Background())) != 0 {
		t.Error("a notifier without hooks did something")
	}
	if _, err := New(Options{Process: "nginx"}); err == nil {
		t.Error("a process without a signal was accepted")
	}
}

// signalTarget is the helper process: it reports each SIGHUP on stdout.
func signalTarget() {
	hups := make(chan os.Signal, 8)
	signal.Notify(hups, syscall.SIGHUP)
	fmt.Println("ready")
	go func() { _, _ = bufio.NewReader(os.Stdin).ReadString('\n'); os.Exit(0) }()
	for range hups {
		fmt.Println("hangup")
	}
}

type target struct {
	name  string
	lines *bufio.Scanner
}

// startSignalTarget runs the test binary as a process with a name unique to
// this test (a symlink's name becomes the process's comm), so that the real
// /proc scan cannot find, and signal, anybody else's process.
func startSignalTarget(t *testing.T) *target {
	t.Helper()
	self, err := os.Executable()
	must(t, err)
	name := fmt.Sprintf("hup-%d", os.Getpid())
	link := filepath.Join(t.TempDir(), name)
	must(t, os.Symlink(self, link))
	cmd := exec.Command(link)
	cmd.Env = append(os.Environ(), "NOTIFY_TEST_TARGET=1")
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	tg := &target{name: name, lines: bufio.NewScanner(stdout)}
	tg.expect(t, "ready")
	return tg
}

func (tg *target) expect(t *testing.T, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if tg.lines.Scan() {
			got <- tg.lines.Text()
		}
		close(got)
	}()
	select {
	case line := <-got:
		if line != want {
			t.Fatalf("target said %q, want %q", line, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("target did not say %q", want)
	}
}
