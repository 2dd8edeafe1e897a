// Command kube-scheduler is the upstream scheduler, built from the Go module
// proxy at the version pinned in this module's go.mod: Deployments, Jobs and
// StatefulSets of the end-to-end suite are bound to the node as in a real
// cluster, not by the test.
package main

import (
	"os"

	"github.com/csr-agent/csr-agent/tools/lifeline"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	lifeline.Tie()
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
