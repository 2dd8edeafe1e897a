package lifeline

import (
	"os"
	"syscall"
	"time"
)

// checkEvery bounds how long an orphan lives if the kernel's parent-death
// signal is not delivered (some sandboxed kernels do not implement it).
const checkEvery = time.Second

func tie(launcher int) {
	// The parent-death signal is SIGKILL, not SIGTERM: the parent that would
	// have asked for a graceful stop is gone, and a graceful stop can wait a
	// long time on peers that are dying at the same moment (kube-apiserver's
	// shutdown hooks write to etcd).
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	// If the launcher died before the call, this process was re-parented
	// already and the kernel will never send the signal.
	if os.Getppid() != launcher {
		os.Exit(1)
	}
	go func() {
		for range time.Tick(checkEvery) {
			if os.Getppid() != launcher {
				os.Exit(1)
			}
		}
	}()
}
