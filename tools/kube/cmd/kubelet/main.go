// Command kubelet is the upstream node agent, built from the Go module proxy
// at the version pinned in this module's go.mod, so that the end-to-end suite
// runs real pods on a real node joined to the local control plane.
package main

import (
	"context"
	"os"

	"github.com/csr-agent/csr-agent/tools/lifeline"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	lifeline.Tie()
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
