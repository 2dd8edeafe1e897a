// Package testenv runs a real local Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-controller-manager at the version pinned in
// tools/kube, built by `make controlplane` into bin/.
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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// tieEnvVar makes the control-plane binaries ask the kernel to stop them
// when their parent exits (see tools/lifeline).
const tieEnvVar = "CSR_AGENT_TIE_TO_PARENT"

// ErrBinariesMissing means `make controlplane` has not been run.
var ErrBinariesMissing = errors.New("control plane binaries missing")

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

	env  *envtest.Environment
	kcm  *controllerManager
	ca   *clusterCA
	seq  atomic.Uint32
	stop sync.Once
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

func start() (_ *Env, err error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	if err := os.Setenv(tieEnvVar, "1"); err != nil {
		return nil, fmt.Errorf("setting %s: %w", tieEnvVar, err)
	}
	dir, err := os.MkdirTemp("", "csr-agent-testenv-")
	if err != nil {
		return nil, fmt.Errorf("creating scratch dir: %w", err)
	}
	e := &Env{Dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.Stop())
		}
	}()
	if e.ca, err = newClusterCA(); err != nil {
		return nil, err
	}
	e.ClusterCAPEM = e.ca.certPEM

	e.env = &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	api := e.env.ControlPlane.GetAPIServer()
	api.Authn = &caAuthn{ca: e.ca}
	// A directory of our own survives an API server restart (envtest would
	// delete a temporary one), so certificates stay valid across it.
	api.CertDir = filepath.Join(dir, "apiserver")
	if err := os.MkdirAll(api.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating cert dir: %w", err)
	}
	// envtest turns the ServiceAccount admission plugin off because it runs
	// no controller manager; we do, and real clusters run it.
	api.Configure().Set("disable-admission-plugins", "")
	// With open watches the HTTP server would otherwise wait out its 60s
	// shutdown timeout; this is the mode HA control planes run in: drain
	// ordinary requests, then give clients 2s to go.
	api.Configure().Set("shutdown-send-retry-after", "true")

	if e.Config, err = e.env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	e.ServerCAPEM = e.Config.CAData
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		return nil, fmt.Errorf("building admin client: %w", err)
	}
	if e.KubeconfigFile, err = writeKubeconfig(filepath.Join(dir, "admin.kubeconfig"), e.Config); err != nil {
		return nil, err
	}
	if e.kcm, err = startControllerManager(e, bin); err != nil {
		return nil, err
	}
	if err := e.waitControllerManager(); err != nil {
		return nil, err
	}
	return e, nil
}

// waitControllerManager waits until kube-controller-manager has synced and
// published the root CA, which every namespace's pods rely on.
func (e *Env) waitControllerManager() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if !e.kcm.running() {
			return false, errors.New("kube-controller-manager exited")
		}
		_, err := e.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-controller-manager: %w\n%s", err, e.kcm.logTail())
	}
	return nil
}

// Stop stops every process of the control plane and removes its files.
// It is safe to call more than once.
func (e *Env) Stop() error {
	var errs []error
	e.stop.Do(func() {
		if e.kcm != nil {
			errs = append(errs, e.kcm.stop())
		}
		if e.env != nil && e.Config != nil {
			errs = append(errs, e.env.Stop())
		}
		errs = append(errs, os.RemoveAll(e.Dir))
	})
	return errors.Join(errs...)
}

// User returns a client configuration authenticating as the given user and
// groups with a client certificate from the cluster CA.
func (e *Env) User(t testing.TB, name string, groups ...string) *rest.Config {
	t.Helper()
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, e.Config)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	return u.Config()
}

// StopAPIServer stops the kube-apiserver (etcd and kube-controller-manager
// keep running), as an outage or an upgrade would. Only for New's envs.
func (e *Env) StopAPIServer(t testing.TB) {
	t.Helper()
	if err := e.env.ControlPlane.GetAPIServer().Stop(); err != nil {
		t.Fatalf("stopping kube-apiserver: %v", err)
	}
}

// StartAPIServer starts a stopped kube-apiserver again on the same address,
// with the same certificates and data.
func (e *Env) StartAPIServer(t testing.TB) {
	t.Helper()
	if err := e.env.ControlPlane.GetAPIServer().Start(); err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
}
