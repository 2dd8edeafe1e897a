// Package lifeline ties the life of a control-plane process to its parent.
//
// The local control plane (etcd, kube-apiserver, kube-controller-manager) is
// started by test binaries and by the demo. When such a parent dies without
// running its clean-up (a test timeout panics, a developer presses ^C twice,
// the OOM killer strikes), its children must not outlive it: stray API servers
// keep ports and temp directories and confuse the next run. The kernel's
// parent-death signal does this without any cooperation from the parent.
package lifeline

import "os"

// EnvVar opts a process in: launchers that own their children (the test
// helper, the demo) set it to "1". Without it nothing changes, so a binary
// run by hand or by a service manager behaves like the upstream one.
const EnvVar = "CSR_AGENT_TIE_TO_PARENT"

// Tie asks the kernel to send SIGTERM to this process when its parent exits,
// if EnvVar is "1". On systems without a parent-death signal it does nothing.
func Tie() {
	if os.Getenv(EnvVar) == "1" {
		tie()
	}
}
