package localnode

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestPrerequisitesAreReportedTogetherInOneError(t *testing.T) {
	m := machine{
		goos: "linux",
		euid: 1000,
		lookPath: func(p string) (string, error) {
			if p == "containerd" || p == "nft" {
				return "", errors.New("not found")
			}
			return "/usr/bin/" + p, nil
		},
		stat: func(p string) (os.FileInfo, error) {
			if strings.HasPrefix(p, "/bin-dir/") || strings.HasPrefix(p, cgroupFS) {
				return nil, os.ErrNotExist
			}
			return nil, nil
		},
	}
	err := checkPrerequisites(m, "/bin-dir")
	if !errors.Is(err, ErrPrerequisites) {
		t.Fatalf("err = %v, want ErrPrerequisites", err)
	}
	for _, want := range []string{"root", "cgroups", "containerd", "nft", "apt-get install " + debianPackages, "kubelet, kube-proxy, kube-scheduler in /bin-dir (make node)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}

func TestPrerequisitesNeedLinux(t *testing.T) {
	err := checkPrerequisites(machine{goos: "darwin"}, "/bin-dir")
	if !errors.Is(err, ErrPrerequisites) || !strings.Contains(err.Error(), "Linux") {
		t.Errorf("err = %v", err)
	}
}

// Pods must reach only this machine's bridge and the Service range: no
// default route, no masquerading (which would let their traffic leave the
// machine as the host's).
func TestPodNetworkHasNoWayOffTheMachine(t *testing.T) {
	var conf struct {
		Plugins []struct {
			Type             string `json:"type"`
			IsGateway        bool   `json:"isGateway"`
			IsDefaultGateway bool   `json:"isDefaultGateway"`
			IPMasq           bool   `json:"ipMasq"`
			IPAM             struct {
				Routes []struct {
					Dst string `json:"dst"`
				} `json:"routes"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	n := &Node{Dir: t.TempDir()}
	if err := json.Unmarshal([]byte(n.cniConfig()), &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 1 {
		t.Fatalf("%d plugins", len(conf.Plugins))
	}
	p := conf.Plugins[0]
	if p.Type != "bridge" || p.IsGateway || p.IsDefaultGateway || p.IPMasq {
		t.Errorf("bridge plugin %+v: gateway or masquerading on", p)
	}
	for _, r := range p.IPAM.Routes {
		if r.Dst != ServiceCIDR.String() {
			t.Errorf("pods get a route to %s; only %s is wanted", r.Dst, ServiceCIDR)
		}
	}
	if !PodCIDR.Contains(BridgeIP) || ServiceCIDR.Contains(BridgeIP) {
		t.Errorf("bridge %s outside the pod range %s", BridgeIP, PodCIDR)
	}
}

func TestTearDownRestoresIPForwarding(t *testing.T) {
	found := false
	for _, s := range tunedSysctls {
		found = found || s == "net/ipv4/ip_forward"
	}
	if !found {
		t.Error("net.ipv4.ip_forward is not recorded and restored")
	}
}

func TestMountPointsAreUnescaped(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("got %q", got)
	}
}
