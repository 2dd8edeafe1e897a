// Command kube-controller-manager is the upstream controller manager, built
// from the Go module proxy at the version pinned in this module's go.mod.
package main

import (
	"os"

	"github.com/csr-agent/csr-agent/tools/lifeline"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	lifeline.Tie()
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
