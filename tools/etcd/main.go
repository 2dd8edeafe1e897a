// Command etcd is the upstream etcd server, built from the Go module proxy at
// the version pinned in this module's go.mod, as the storage of the local
// control plane used by tests and the demo.
package main

import (
	"os"

	"github.com/csr-agent/csr-agent/tools/lifeline"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	lifeline.Tie()
	etcdmain.Main(os.Args)
}
