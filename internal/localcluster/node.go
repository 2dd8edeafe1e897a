package localcluster

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// NodeConfig returns a client configuration that authenticates as the
// kubelet of the node name (NodeName unless pods were bound elsewhere with
// PodOptions.Node): a client certificate from the cluster CA (the API
// server's client CA) for user system:node:<name> in group system:nodes, the identity a kubelet's
// TLS bootstrap ends with. The API server treats it as a node: the Node
// authorizer and the NodeRestriction admission plugin limit it to its own
// pods, as they limit a real kubelet. It also returns the Node object.
func (c *Cluster) NodeConfig(ctx context.Context, name string) (*rest.Config, *corev1.Node, error) {
	if err := c.ensureNode(ctx, name); err != nil {
		return nil, nil, err
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("reading node %s: %w", name, err)
	}
	cfg, err := c.User("system:node:"+name, "system:nodes")
	if err != nil {
		return nil, nil, err
	}
	return cfg, node, nil
}
