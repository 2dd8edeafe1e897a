package writer

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashDirEnv makes TestCrashHelperPublishLoop the child process of
// TestKilledPublishLeavesReadablePair instead of skipping.
const crashDirEnv = "CSR_AGENT_WRITER_CRASH_DIR"

// TestKilledPublishLeavesReadablePair runs a real process that publishes in
// a loop, SIGKILLs it at a random moment, and checks what a restarted agent
// finds: a valid pair right away (the old or the new one), and after Recover
// the steady layout.
func TestKilledPublishLeavesReadablePair(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the helper")
	}
	iterations := 20
	if testing.Short() {
		iterations = 5
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	// The real disk, not tmpfs: this is about what survives a kill.
	w, err := New(Options{Dir: t.TempDir()})
	must(t, err)
	ca := newPKI(t)
	mustPublish(t, w, ca.issue(t, newKey(t, "p256"), "pkcs8"))

	var untidy int
	for i := range iterations {
		runAndKill(t, w.opts.Dir, time.Duration(rng.Int64N(int64(40*time.Millisecond))))

		if _, err := w.Load(); err != nil {
			t.Fatalf("iteration %d: Load after kill: %v; tree: %v", i, err, snapshot(t, w.opts.Dir))
		}
		if gens, _ := generations(w.opts.Dir); len(gens) != 1 {
			untidy++
		}
		if err := w.Recover(); err != nil {
			t.Fatalf("iteration %d: Recover: %v", i, err)
		}
		assertTidy(t, w, defaultNames...)
		if _, err := w.Load(); err != nil {
			t.Fatalf("iteration %d: Load after Recover: %v", i, err)
		}
	}
	// How many kills landed mid-publish is chance; logged to show the test
	// exercises something.
	t.Logf("%d of %d kills left a stray generation for Recover", untidy, iterations)
}

// runAndKill starts the helper publishing into dir, lets it run for delay
// after its first publish, and SIGKILLs it.
func runAndKill(t *testing.T, dir string, delay time.Duration) {
	t.Helper()
	// The helper's own timeout ends it should this process die first.
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperPublishLoop$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out := &readyWriter{ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	select {
	case <-out.ready:
	case err := <-exited:
		t.Fatalf("helper ended (%v) before publishing: %s", err, out)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		err := <-exited
		t.Fatalf("helper did not start publishing within 30s (%v): %s", err, out)
	}

	// Not synchronisation: the random delay is the crash point.
	time.Sleep(delay)
	must(t, cmd.Process.Kill()) // SIGKILL: no deferred cleanup runs
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper exited with %v before the kill: %s", err, out)
	}
}

// readyWriter collects the helper's output and closes ready once the helper
// says it is publishing.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (r *readyWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	if bytes.Contains(r.buf.Bytes(), []byte(readyLine)) {
		r.once.Do(func() { close(r.ready) })
	}
	return len(p), nil
}

func (r *readyWriter) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

const readyLine = "helper: publishing\n"

// TestCrashHelperPublishLoop is the child process: it publishes two pairs
// alternately until killed.
func TestCrashHelperPublishLoop(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKilledPublishLeavesReadablePair")
	}
	w, err := New(Options{Dir: dir})
	must(t, err)
	ca := newPKI(t)
	materials := []Material{ca.issue(t, newKey(t, "p256"), "pkcs8"), ca.issue(t, newKey(t, "ed25519"), "pkcs8")}
	for i := 0; ; i++ {
		mustPublish(t, w, materials[i%2])
		if i == 0 {
			_, _ = os.Stdout.WriteString(readyLine)
		}
	}
}
