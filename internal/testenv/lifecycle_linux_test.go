package testenv_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

const crashChildEnv = "TESTENV_CRASH_CHILD"

func TestStopLeavesNoProcessRunning(t *testing.T) {
	env := testenv.New(t)
	pids := testenv.Children(os.Getpid())
	if len(pids) < 3 {
		t.Fatalf("expected etcd, kube-apiserver and kube-controller-manager as children, found pids %v", pids)
	}
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if testenv.Alive(pid) {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
}

// A test binary killed outright (a timeout, ^C twice, the OOM killer) runs no
// clean-up; its control plane must still go away.
func TestControlPlaneStopsWhenTestProcessIsKilled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashingChild$", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	scanner := bufio.NewScanner(out)
	for scanner.Scan() {
		if rest, ok := strings.CutPrefix(scanner.Text(), "PIDS "); ok {
			for _, f := range strings.Fields(rest) {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
			break
		}
	}
	if len(pids) < 3 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not report its control plane (got pids %v)", pids)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, pid := range pids {
			if testenv.Alive(pid) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		var survivors []string
		for _, pid := range pids {
			if stat, readErr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); readErr == nil && testenv.Alive(pid) {
				survivors = append(survivors, strings.TrimSpace(string(stat)))
			}
		}
		t.Fatalf("control plane processes outlived the killed test process (%v); /proc/<pid>/stat of each survivor:\n%s",
			err, strings.Join(survivors, "\n"))
	}
}

// TestCrashingChild is the child of TestControlPlaneStopsWhenTestProcessIsKilled.
func TestCrashingChild(t *testing.T) {
	if os.Getenv(crashChildEnv) != "1" {
		t.Skip("only runs as the child of TestControlPlaneStopsWhenTestProcessIsKilled")
	}
	testenv.New(t)
	var b strings.Builder
	for _, pid := range testenv.Children(os.Getpid()) {
		fmt.Fprintf(&b, " %d", pid)
	}
	fmt.Printf("PIDS%s\n", b.String())
	<-t.Context().Done() // killed before it ends
}
