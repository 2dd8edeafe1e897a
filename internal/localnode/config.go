package localnode

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// The node's configuration files. Every path the daemons write is beneath
// the node's directory, except those containerd and the kubelet fix at
// compile time (fixedPaths).

func writeFiles(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}

func (n *Node) containerdSocket() string {
	return filepath.Join(n.Dir, "containerd", "containerd.sock")
}

// containerdConfig: restrict_oom_score_adj because the VMs this project runs
// on lack CAP_SYS_RESOURCE (runc cannot lower a container's OOM score, and
// every sandbox fails without it); the sandbox image is imported, never
// pulled; runc's state lives in the node's directory.
func (n *Node) containerdConfig() string {
	d := filepath.Join(n.Dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.containerdSocket(), filepath.Join(d, "opt"),
		PauseImage, filepath.Join(d, "runc"), cniBinDir, filepath.Join(n.Dir, "cni"))
}

// cniConfig: a bridge of this node with no default route in the pods and
// no masquerading, so pods reach each other, this machine's bridge address
// (the API server) and the Service range (kube-proxy turns it into the API
// server's address on the bridge) and nothing else.
func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "csr-agent-node",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "isDefaultGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q, "rangeStart": %q, "gateway": %q}]],
      "routes": [{"dst": %q, "gw": %q}],
      "dataDir": %q
    }
  }]
}
`, BridgeName, PodCIDR.String(), offset(PodCIDR.IP, 10), BridgeIP.String(), ServiceCIDR.String(), BridgeIP.String(),
		filepath.Join(n.Dir, "cni-ipam"))
}

// kubeletConfig: cgroup v1 with the cgroupfs driver (kubelet ≥ 1.35 refuses
// v1 unless told; there is no systemd); image garbage collection off (the
// images are imported and cannot be pulled again); the API server reaches
// the kubelet on the bridge only, anonymously (no one else can).
func (n *Node) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
address: %s
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
resolvConf: %s
clusterDomain: cluster.local
failSwapOn: false
protectKernelDefaults: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "imagefs.available": "1%%"}
serializeImagePulls: false
syncFrequency: 10s
nodeStatusUpdateFrequency: 4s
`, cgroupRoot, BridgeIP, n.containerdSocket(), filepath.Join(n.Dir, "pod-logs"), filepath.Join(n.Dir, "resolv.conf"))
}

// resolvConf: no cluster DNS runs, and pods must not ask the host's
// resolvers; a name lookup in a pod fails at once.
const resolvConf = "nameserver 127.0.0.1\noptions ndots:1 attempts:1 timeout:1\n"

// kubeProxyConfig: nftables mode (its rules live in tables of its own,
// removed at tear-down); conntrack limits left as they are.
func (n *Node) kubeProxyConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: nftables
hostnameOverride: %s
clusterCIDR: %s
healthzBindAddress: ""
metricsBindAddress: ""
nodePortAddresses: [%s/32]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, NodeName, PodCIDR, BridgeIP)
}

// offset is ip plus n in its last byte.
func offset(ip net.IP, n byte) string {
	out := append(net.IP(nil), ip.To4()...)
	out[3] += n
	return out.String()
}
