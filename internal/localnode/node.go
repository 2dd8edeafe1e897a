// Package localnode runs a real Kubernetes node on this machine, joined to
// a local control plane (package localcluster): containerd and runc from
// Debian packages, and the kubelet, kube-proxy and kube-scheduler v1.37.2
// built by `make node` into bin/. Pods run for real: init containers and
// native sidecars, probes, emptyDirs, projected service-account tokens the
// kubelet mounts and rotates, the downward API, SIGTERM at deletion.
//
//	n, err := localnode.Start(ctx, localnode.Options{Images: archives})
//	if err != nil { ... }        // errors.Is(err, ErrPrerequisites): not root, not Linux, ...
//	defer n.Stop()
//	// n.Cluster is the control plane; pods reach its API server through
//	// the `kubernetes` Service (in-cluster config).
//
// It needs root and Linux (CheckPrerequisites says what is missing). No
// image is ever pulled: Options.Images are OCI archives imported into
// containerd (package ociimage builds them), among them PauseImage.
//
// Networking stays on this machine: pods live on the bridge BridgeName
// (PodCIDR), with no default route and no masquerading; Service IPs
// (ServiceCIDR) have a route to the bridge address, where kube-proxy turns
// the `kubernetes` Service into the API server, which listens on the
// bridge address. IP forwarding is left off (as found), so nothing a pod
// sends can leave the machine.
//
// Only one node runs per machine (fixed bridge, ports and cgroup). Stop
// stops what Start started (recorded PIDs) and removes every mount, network
// namespace, nftables table, cgroup and directory it created, and restores
// the sysctls the kubelet changed; a run that died before its Stop is
// cleaned up by the next Start.
package localnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// The node's names and addresses.
const (
	NodeName   = "csr-agent-node"
	BridgeName = "csragent0"
	// PauseImage is every pod's sandbox; it must be among Options.Images.
	PauseImage = "localhost/csr-agent-e2e/pause:1"
)

var (
	// PodCIDR holds the pods; its first address is the bridge's.
	PodCIDR = mustCIDR("10.213.0.0/24")
	// ServiceCIDR holds the Services' cluster IPs.
	ServiceCIDR = mustCIDR("10.213.1.0/24")
	// BridgeIP is this machine on the bridge: the API server and the
	// kubelet listen here.
	BridgeIP = net.IPv4(10, 213, 0, 1).To4()
)

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// nodeBinaries are built by `make node`.
var nodeBinaries = []string{"kubelet", "kube-proxy", "kube-scheduler"}

// Options configure Start.
type Options struct {
	// BinDir holds the control plane's and the node's binaries; default:
	// localcluster.BinDir().
	BinDir string
	// Images are OCI archives to import into containerd before the
	// kubelet starts; PauseImage must be one of them.
	Images []string
}

// Node is a running node and its control plane.
type Node struct {
	Cluster *localcluster.Cluster
	// Dir holds the node's state, configuration and logs.
	Dir string

	state *hostState
	procs []*process
}

// Dir is where the node keeps its state; fixed, so that a crashed run is
// found and undone.
func stateDir() string { return filepath.Join(os.TempDir(), "csr-agent-node") }

// Start checks the prerequisites, undoes a crashed run's leftovers, and
// starts the control plane, containerd, kube-proxy, kube-scheduler and the
// kubelet; it returns once the node is Ready. On error everything started
// is stopped again.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	bin := opts.BinDir
	if bin == "" {
		if bin, err = localcluster.BinDir(); err != nil {
			return nil, err
		}
	}
	if err := CheckPrerequisites(bin); err != nil {
		return nil, err
	}
	dir := stateDir()
	if old, err := loadState(dir); err == nil {
		if err := old.restore(); err != nil {
			return nil, fmt.Errorf("cleaning up the node of an earlier run in %s: %w", dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating node dir: %w", err)
	}
	n := &Node{Dir: dir, state: &hostState{Dir: dir, Bridge: BridgeName}}
	n.state.ShimMatch = n.containerdSocket()
	if err := n.state.record(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Stop())
		}
	}()
	if err := makeBridge(); err != nil {
		return nil, err
	}
	n.Cluster, err = localcluster.Start(ctx, localcluster.Options{
		BinDir:  bin,
		Serving: &localcluster.Serving{Address: BridgeIP, ServiceCIDR: ServiceCIDR},
		// The kubelet is system:node:<name>; the Node authorizer and
		// NodeRestriction, which every local control plane runs, limit it to
		// its own pods, as in production.
		APIServerFlags: map[string]string{"kubelet-preferred-address-types": "InternalIP"},
		// Added to the control plane's own list: what turns workloads into
		// pods, and what lifts the not-ready taint the kubelet registers
		// the node with once it reports Ready.
		ControllerManagerArgs: []string{"--controllers=deployment-controller,replicaset-controller,statefulset-controller,job-controller,node-lifecycle-controller"},
	})
	if err != nil {
		return nil, err
	}
	if err := makeCgroups(); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx, opts.Images); err != nil {
		return nil, err
	}
	if err := n.startKubernetes(bin); err != nil {
		return nil, err
	}
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func makeBridge() error {
	if err := run("ip", "link", "add", BridgeName, "type", "bridge"); err != nil {
		return fmt.Errorf("creating the node's bridge: %w", err)
	}
	ones, _ := PodCIDR.Mask.Size()
	if err := run("ip", "addr", "add", fmt.Sprintf("%s/%d", BridgeIP, ones), "dev", BridgeName); err != nil {
		return err
	}
	return run("ip", "link", "set", BridgeName, "up")
}

func (n *Node) start(name, path string, args ...string) (*process, error) {
	p, err := startProcess(name, filepath.Join(n.Dir, name+".log"), path, args...)
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, p)
	n.state.PIDs[filepath.Base(path)] = p.pid()
	return p, n.state.save()
}

func (n *Node) startContainerd(ctx context.Context, images []string) error {
	if err := writeFiles(n.Dir, map[string]string{
		"containerd/config.toml":    n.containerdConfig(),
		"cni/10-csr-agent.conflist": n.cniConfig(),
	}); err != nil {
		return err
	}
	path, err := exec.LookPath("containerd")
	if err != nil {
		return fmt.Errorf("%w: containerd", ErrPrerequisites)
	}
	p, err := n.start("containerd", path, "--config", filepath.Join(n.Dir, "containerd", "config.toml"))
	if err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if !p.running() {
			return false, errors.New("containerd exited")
		}
		return exec.CommandContext(ctx, "ctr", "--address", n.containerdSocket(), "version").Run() == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for containerd: %w\n%s", err, p.logTail())
	}
	for _, img := range images {
		if err := run("ctr", "--address", n.containerdSocket(), "-n", "k8s.io", "images", "import", "--no-unpack=false", img); err != nil {
			return fmt.Errorf("importing image: %w", err)
		}
	}
	return nil
}

func (n *Node) startKubernetes(bin string) error {
	kc := func(name, user string, groups ...string) (string, error) {
		p := filepath.Join(n.Dir, name+".kubeconfig")
		return p, n.Cluster.UserKubeconfig(p, user, groups...)
	}
	kubelet, err := kc("kubelet", "system:node:"+NodeName, "system:nodes")
	if err != nil {
		return err
	}
	proxy, err := kc("kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	sched, err := kc("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return err
	}
	if err := writeFiles(n.Dir, map[string]string{
		"kubelet/config.yaml":    n.kubeletConfig(),
		"kube-proxy/config.yaml": n.kubeProxyConfig(proxy),
		"resolv.conf":            resolvConf,
	}); err != nil {
		return err
	}
	if _, err := n.start("kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--leader-elect=false", "--secure-port=0"); err != nil {
		return err
	}
	if _, err := n.start("kube-proxy", filepath.Join(bin, "kube-proxy"),
		"--config="+filepath.Join(n.Dir, "kube-proxy", "config.yaml")); err != nil {
		return err
	}
	_, err = n.start("kubelet", filepath.Join(bin, "kubelet"),
		"--config="+filepath.Join(n.Dir, "kubelet", "config.yaml"),
		"--kubeconfig="+kubelet,
		"--root-dir="+filepath.Join(n.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.Dir, "kubelet", "pki"),
		"--hostname-override="+NodeName,
		"--node-ip="+BridgeIP.String(),
	)
	return err
}

// waitReady waits for the Node to report Ready.
func (n *Node) waitReady(ctx context.Context) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, p := range n.procs {
			if !p.running() {
				return false, fmt.Errorf("%s exited\n%s", p.name, p.logTail())
			}
		}
		node, err := n.Cluster.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		if len(node.Spec.Taints) > 0 {
			return false, nil // the scheduler would place no pod
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for node %s to be Ready: %w\n%s", NodeName, err, n.procs[len(n.procs)-1].logTail())
	}
	return nil
}

// Logs returns the end of each daemon's log, for failure messages.
func (n *Node) Logs() string {
	var s string
	for _, p := range n.procs {
		s += p.logTail() + "\n"
	}
	return s
}

// Stop stops the node's daemons (the kubelet first, so it restarts
// nothing), kills what runs in its cgroups, undoes its changes to the host
// and stops the control plane.
func (n *Node) Stop() error {
	var errs []error
	for i := len(n.procs) - 1; i >= 0; i-- {
		errs = append(errs, n.procs[i].stop(10*time.Second))
	}
	n.procs = nil
	if n.Cluster != nil {
		errs = append(errs, n.Cluster.Stop())
	}
	if n.state != nil {
		errs = append(errs, n.state.restore())
	}
	return errors.Join(errs...)
}

// KillContainer kills a container of the node (its ID as in a pod's
// status, containerd://<id>) with SIGKILL, as a crash or the OOM killer
// would; the kubelet sees it exit and restarts it by the pod's policy.
func (n *Node) KillContainer(id string) error {
	id = strings.TrimPrefix(id, "containerd://")
	return run("ctr", "--address", n.containerdSocket(), "-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id)
}
