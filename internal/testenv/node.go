package testenv

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// NodeConfig authenticates as the kubelet of NodeName (a system:node
// client certificate from the cluster CA) and returns the Node object; see
// localcluster.Cluster.NodeConfig.
func (e *Env) NodeConfig(t testing.TB) (*rest.Config, *corev1.Node) {
	t.Helper()
	cfg, node, err := e.cluster.NodeConfig(context.Background(), localcluster.NodeName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, node
}
