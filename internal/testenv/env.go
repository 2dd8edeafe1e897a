// Package testenv runs a real local Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-controller-manager at the version pinned in
// tools/kube, built by `make controlplane` into bin/. It is package
// localcluster with the plumbing of package testing: failures end the test,
// and everything started is stopped when the test ends.
//
// The CSR API's behaviour (signature check at create, immutable spec, the
// /approval and /status subresources, spec.extra from pod-bound tokens, RBAC
// on signers) is what the project depends on, so it is tested against the
// real thing rather than a fake clientset.
//
// A test package shares one control plane:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := testenv.Shared(t)
//		pod := env.NewPod(t, testenv.PodOptions{Labels: map[string]string{"app": "web"}})
//		// pod.Config authenticates as that pod's service account, with a
//		// token bound to the Pod object.
//	}
//
// Tests that stop or restart parts of the control plane use New for one of
// their own. Every process is stopped when the test (or TestMain) ends, and
// each process is also tied to the life of the test binary, so a crashed or
// timed-out test leaves nothing running. Ports are chosen free per control
// plane, so several test packages run in parallel.
package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// ErrBinariesMissing means `make controlplane` has not been run.
var ErrBinariesMissing = localcluster.ErrBinariesMissing

// NodeName is the Node every simulated pod is bound to. No kubelet runs; the
// Node object exists so that pod-bound tokens carry node facts as they do in
// a real cluster.
const NodeName = localcluster.NodeName

// BinDir is where `make controlplane` puts etcd, kube-apiserver and
// kube-controller-manager: $CSR_AGENT_BIN_DIR, or bin/ at the module root.
func BinDir() (string, error) { return localcluster.BinDir() }

// Env is a running control plane.
type Env struct {
	// Config authenticates as a cluster administrator (system:masters).
	Config *rest.Config
	// Client is an administrator clientset.
	Client kubernetes.Interface
	// KubeconfigFile holds Config for kubectl and for processes under test.
	KubeconfigFile string
	// ClusterCAPEM is the cluster CA: it signs kube-controller-manager's
	// kubernetes.io/* signers and the kube-apiserver trusts it for clients.
	ClusterCAPEM []byte
	// ServerCAPEM verifies the kube-apiserver's serving certificate.
	ServerCAPEM []byte
	// Dir is a scratch directory removed when the control plane stops.
	Dir string

	cluster *localcluster.Cluster

	// agentOnce installs the agent's shipped RBAC and admission policies.
	agentOnce sync.Once
	agentErr  error
}

var shared struct {
	mu      sync.Mutex
	enabled bool
	env     *Env
	err     error
}

// Main runs the package's tests and then stops the shared control plane, if
// a test started one. Call it from TestMain.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if shared.env != nil {
		if err := shared.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}
	shared.mu.Unlock()
	removeBuilds()
	os.Exit(code)
}

// Shared returns the package's control plane, starting it on first use.
// Tests must not stop or restart it; use New for that.
func Shared(t testing.TB) *Env {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.enabled {
		t.Fatal("testenv.Shared needs `func TestMain(m *testing.M) { testenv.Main(m) }` in the test package")
	}
	if shared.env == nil && shared.err == nil {
		shared.env, shared.err = start()
	}
	if shared.err != nil {
		t.Fatalf("starting control plane: %v", shared.err)
	}
	return shared.env
}

// New starts a control plane for this test alone, stopped when it ends.
func New(t testing.TB) *Env {
	t.Helper()
	env, err := start()
	if err != nil {
		t.Fatalf("starting control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping control plane: %v", err)
		}
	})
	return env
}

func start() (*Env, error) {
	// Not the test's context: the shared control plane outlives the test
	// that happens to start it.
	c, err := localcluster.Start(context.Background(), localcluster.Options{})
	if err != nil {
		return nil, err
	}
	return &Env{
		Config:         c.Config,
		Client:         c.Client,
		KubeconfigFile: c.KubeconfigFile,
		ClusterCAPEM:   c.ClusterCAPEM,
		ServerCAPEM:    c.ServerCAPEM,
		Dir:            c.Dir,
		cluster:        c,
	}, nil
}

// Stop stops every process of the control plane and removes its files.
// It is safe to call more than once.
func (e *Env) Stop() error { return e.cluster.Stop() }

// User returns a client configuration authenticating as the given user and
// groups with a client certificate from the cluster CA.
func (e *Env) User(t testing.TB, name string, groups ...string) *rest.Config {
	t.Helper()
	cfg, err := e.cluster.User(name, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// StopAPIServer stops the kube-apiserver (etcd and kube-controller-manager
// keep running), as an outage or an upgrade would. Only for New's envs.
func (e *Env) StopAPIServer(t testing.TB) {
	t.Helper()
	if err := e.cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
}

// StartAPIServer starts a stopped kube-apiserver again on the same address,
// with the same certificates and data.
func (e *Env) StartAPIServer(t testing.TB) {
	t.Helper()
	if err := e.cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
}
