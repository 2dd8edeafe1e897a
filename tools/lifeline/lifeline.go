// Package lifeline ties the life of a control-plane process to its parent.
//
// The local control plane (etcd, kube-apiserver, kube-controller-manager) is
// started by test binaries and by the demo. When such a parent dies without
// running its clean-up (a test timeout panics, a developer presses ^C twice,
// the OOM killer strikes), its children must not outlive it: stray API servers
// keep ports and temp directories and confuse the next run.
package lifeline

import (
	"os"
	"strconv"
)

// EnvVar opts a process in: launchers that own their children (the test
// helper, the demo) set it to their own process ID. Without it nothing
// changes, so a binary run by hand or by a service manager behaves like the
// upstream one.
const EnvVar = "CSR_AGENT_TIE_TO_PARENT"

// Tie ends this process when the launcher named by EnvVar is no longer its
// parent, including when it is already gone by the time Tie runs. Any other
// value of EnvVar (or none) leaves the process alone.
func Tie() {
	launcher, err := strconv.Atoi(os.Getenv(EnvVar))
	if err != nil || launcher <= 1 {
		return
	}
	tie(launcher)
}
