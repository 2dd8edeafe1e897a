// Command kube-apiserver is the upstream Kubernetes API server, built from the
// Go module proxy so that integration tests and the demo run against the real
// thing at the version pinned in this module's go.mod.
package main

import (
	"os"

	"github.com/csr-agent/csr-agent/tools/lifeline"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	lifeline.Tie()
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
