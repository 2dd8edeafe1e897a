package localnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// ErrPrerequisites means this machine cannot run the node; the message
// lists everything missing at once.
var ErrPrerequisites = errors.New("cannot run a local node")

// debianPackages install every program the node runs that is not built by
// `make node`.
const debianPackages = "containerd runc containernetworking-plugins iptables nftables iproute2"

// hostPrograms are found in PATH; cniPlugins in cniBinDir.
var (
	hostPrograms = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "nft"}
	cniPlugins   = []string{"bridge", "host-local", "loopback"}
)

const cniBinDir = "/usr/lib/cni"

// CheckPrerequisites reports, in one error wrapping ErrPrerequisites,
// everything that keeps this machine from running the node: not Linux, not
// root, no cgroup hierarchy, missing packages or binaries of bin.
func CheckPrerequisites(bin string) error {
	return checkPrerequisites(machine{goos: runtime.GOOS, euid: os.Geteuid(), lookPath: exec.LookPath, stat: os.Stat}, bin)
}

// machine is what the check looks at, a seam for its tests.
type machine struct {
	goos     string
	euid     int
	lookPath func(string) (string, error)
	stat     func(string) (os.FileInfo, error)
}

func checkPrerequisites(m machine, bin string) error {
	var missing []string
	if m.goos != "linux" {
		return fmt.Errorf("%w: it needs Linux (this is %s)", ErrPrerequisites, m.goos)
	}
	if m.euid != 0 {
		missing = append(missing, "root (containerd, the kubelet and the bridge network need it; run as root)")
	}
	if _, err := m.stat(filepath.Join(cgroupFS, "memory")); err != nil {
		if _, err2 := m.stat(filepath.Join(cgroupFS, "cgroup.controllers")); err2 != nil {
			missing = append(missing, "cgroups (nothing mounted at /sys/fs/cgroup)")
		}
	}
	var pkgs []string
	for _, p := range hostPrograms {
		if _, err := m.lookPath(p); err != nil {
			pkgs = append(pkgs, p)
		}
	}
	for _, p := range cniPlugins {
		if _, err := m.stat(filepath.Join(cniBinDir, p)); err != nil {
			pkgs = append(pkgs, filepath.Join(cniBinDir, p))
		}
	}
	if len(pkgs) > 0 {
		missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", strings.Join(pkgs, ", "), debianPackages))
	}
	var bins []string
	for _, b := range nodeBinaries {
		if _, err := m.stat(filepath.Join(bin, b)); err != nil {
			bins = append(bins, b)
		}
	}
	if len(bins) > 0 {
		missing = append(missing, fmt.Sprintf("%s in %s (make node)", strings.Join(bins, ", "), bin))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrPrerequisites, strings.Join(missing, "; "))
	}
	return nil
}
