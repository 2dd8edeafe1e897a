package testenv

import (
	"context"
	"testing"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// PodOptions describes a simulated pod. Zero values get defaults.
type PodOptions = localcluster.PodOptions

// Pod is a Pod object that looks scheduled and running, and the credentials
// its containers would have.
type Pod = localcluster.Pod

// NewNamespace creates a namespace with a unique name.
func (e *Env) NewNamespace(t testing.TB) string {
	t.Helper()
	ns, err := e.cluster.NewNamespace(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// NewPod creates a simulated pod and a token bound to it.
func (e *Env) NewPod(t testing.TB, opts PodOptions) *Pod {
	t.Helper()
	p, err := e.cluster.NewPod(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the
// service account (created if missing) with a token that is not bound to a
// pod, and returns its path.
func (e *Env) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	path, err := e.cluster.ServiceAccountKubeconfig(context.Background(), namespace, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return path
}
