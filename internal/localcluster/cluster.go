// Package localcluster runs a real local Kubernetes control plane: etcd,
// kube-apiserver and kube-controller-manager at the version pinned in
// tools/kube, built by `make controlplane` into bin/. No kubelet runs; pods
// are simulated (NewPod) as Pod objects that look scheduled and running,
// with a service-account token bound to each, which is all the CSR API and
// the project's controller look at.
//
// It serves the tests (through package testenv, which adds testing.TB
// plumbing) and `make demo` (cmd/demo), so it must not import "testing".
//
//	c, err := localcluster.Start(ctx, localcluster.Options{})
//	if err != nil { ... }
//	defer c.Stop()
//	pod, err := c.NewPod(ctx, localcluster.PodOptions{Labels: map[string]string{"app": "web"}})
//
// Every process is stopped by Stop, and each is also tied to the life of the
// process that started it (tools/lifeline), so a crash or a kill leaves
// nothing running. Ports are chosen free per control plane, so several run
// side by side.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// tieEnvVar, set to this process's ID, makes the control-plane binaries end
// when this process is no longer their parent (see tools/lifeline).
const tieEnvVar = "CSR_AGENT_TIE_TO_PARENT"

// ErrBinariesMissing means `make controlplane` has not been run.
var ErrBinariesMissing = errors.New("control plane binaries missing")

// Options configure Start.
type Options struct {
	// BinDir holds etcd, kube-apiserver and kube-controller-manager;
	// default: BinDir().
	BinDir string
	// APIServerFlags are extra kube-apiserver flags, name (without "--")
	// to value, e.g. an audit log for the benchmarks.
	APIServerFlags map[string]string
	// ControllerManagerArgs are extra kube-controller-manager arguments,
	// e.g. "--kube-api-qps=500"; RestartControllerManager replaces them.
	ControllerManagerArgs []string
	// Serving, when set, makes the kube-apiserver reachable from the pods
	// of a real node (see Serving); default: loopback only.
	Serving *Serving
}

// Cluster is a running control plane.
type Cluster struct {
	// Config authenticates as a cluster administrator (system:masters).
	Config *rest.Config
	// Client is an administrator clientset.
	Client kubernetes.Interface
	// KubeconfigFile holds Config for kubectl and for processes.
	KubeconfigFile string
	// ClusterCAPEM is the cluster CA: it signs kube-controller-manager's
	// kubernetes.io/* signers and the kube-apiserver trusts it for clients.
	ClusterCAPEM []byte
	// ServerCAPEM verifies the kube-apiserver's serving certificate.
	ServerCAPEM []byte
	// Dir is a scratch directory removed when the control plane stops.
	Dir string

	bin  string
	env  *envtest.Environment
	kcm  *controllerManager
	ca   *clusterCA
	seq  atomic.Uint32
	stop sync.Once
}

// Start starts etcd, kube-apiserver and kube-controller-manager and returns
// once kube-controller-manager has synced. On error everything started is
// stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	bin := opts.BinDir
	if bin == "" {
		if bin, err = BinDir(); err != nil {
			return nil, err
		}
	} else if err := checkBinaries(bin); err != nil {
		return nil, err
	}
	if err := os.Setenv(tieEnvVar, strconv.Itoa(os.Getpid())); err != nil {
		return nil, fmt.Errorf("setting %s: %w", tieEnvVar, err)
	}
	dir, err := os.MkdirTemp("", "csr-agent-cluster-")
	if err != nil {
		return nil, fmt.Errorf("creating scratch dir: %w", err)
	}
	c := &Cluster{Dir: dir, bin: bin}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()
	if c.ca, err = newClusterCA(); err != nil {
		return nil, err
	}
	c.ClusterCAPEM = c.ca.certPEM

	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	api := c.env.ControlPlane.GetAPIServer()
	api.Authn = &caAuthn{ca: c.ca}
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
	// As a real cluster authorizes and admits its kubelets: the Node
	// authorizer and NodeRestriction are what limit a node to creating
	// PodCertificateRequests for its own pods (see NodeConfig).
	api.Configure().Set("authorization-mode", "Node,RBAC")
	api.Configure().Set("enable-admission-plugins", "NodeRestriction")
	if s := opts.Serving; s != nil {
		// envtest picks a loopback address unless given a port too.
		if api.SecureServing.Port, err = freePort(s.Address); err != nil {
			return nil, err
		}
		api.SecureServing.Address = s.Address.String()
		if api.SecureServing.CA, err = writeServingCerts(api.CertDir, *s); err != nil {
			return nil, err
		}
		api.Configure().Set("advertise-address", s.Address.String())
		api.Configure().Set("service-cluster-ip-range", s.ServiceCIDR.String())
	}
	for name, value := range opts.APIServerFlags {
		api.Configure().Set(name, value)
	}

	if c.Config, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	c.ServerCAPEM = c.Config.CAData
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, fmt.Errorf("building admin client: %w", err)
	}
	if c.KubeconfigFile, err = writeKubeconfig(filepath.Join(dir, "admin.kubeconfig"), c.Config); err != nil {
		return nil, err
	}
	if c.kcm, err = startControllerManager(c, bin, opts.ControllerManagerArgs); err != nil {
		return nil, err
	}
	if err := c.waitControllerManager(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// waitControllerManager waits until kube-controller-manager has synced and
// published the root CA, which every namespace's pods rely on.
func (c *Cluster) waitControllerManager(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if !c.kcm.running() {
			return false, errors.New("kube-controller-manager exited")
		}
		_, err := c.Client.CoreV1().ConfigMaps(metav1.NamespaceDefault).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("waiting for kube-controller-manager: %w\n%s", err, c.kcm.logTail())
	}
	return nil
}

// RestartControllerManager stops kube-controller-manager and starts it
// again with args added to its usual flags (nothing else changes), and
// returns once it has synced.
func (c *Cluster) RestartControllerManager(ctx context.Context, args ...string) error {
	if err := c.kcm.stop(); err != nil {
		return err
	}
	kcm, err := startControllerManager(c, c.bin, args)
	if err != nil {
		return err
	}
	c.kcm = kcm
	return c.waitControllerManager(ctx)
}

// Stop stops every process of the control plane and removes its files.
// It is safe to call more than once.
func (c *Cluster) Stop() error {
	var errs []error
	c.stop.Do(func() {
		if c.kcm != nil {
			errs = append(errs, c.kcm.stop())
		}
		if c.env != nil && c.Config != nil {
			errs = append(errs, c.env.Stop())
		}
		errs = append(errs, os.RemoveAll(c.Dir))
	})
	return errors.Join(errs...)
}

// UserKubeconfig writes a kubeconfig for the given user and groups (a client
// certificate from the cluster CA) to path, for a process to run as them.
func (c *Cluster) UserKubeconfig(path, name string, groups ...string) error {
	cfg, err := c.User(name, groups...)
	if err != nil {
		return err
	}
	_, err = writeKubeconfig(path, cfg)
	return err
}

// User returns a client configuration authenticating as the given user and
// groups with a client certificate from the cluster CA.
func (c *Cluster) User(name string, groups ...string) (*rest.Config, error) {
	u, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, c.Config)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u.Config(), nil
}

// StopAPIServer stops the kube-apiserver (etcd and kube-controller-manager
// keep running), as an outage or an upgrade would.
func (c *Cluster) StopAPIServer() error {
	if err := c.env.ControlPlane.GetAPIServer().Stop(); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts a stopped kube-apiserver again on the same address,
// with the same certificates and data.
func (c *Cluster) StartAPIServer() error {
	if err := c.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver: %w", err)
	}
	return nil
}
