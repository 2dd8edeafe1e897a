// Command kube-proxy is the upstream Service proxy, built from the Go module
// proxy at the version pinned in this module's go.mod: it makes the
// `kubernetes` Service's cluster IP reach the local API server from pods on
// the end-to-end suite's node, so in-cluster config works as in production.
package main

import (
	"os"

	"github.com/csr-agent/csr-agent/tools/lifeline"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	lifeline.Tie()
	os.Exit(cli.Run(app.NewProxyCommand()))
}
