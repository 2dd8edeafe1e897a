package localnode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// The node changes the host: a bridge, nftables tables (kube-proxy's, and
// the iptables-nft tables the kubelet writes), cgroups, mounts, network
// namespaces, a few sysctls the kubelet sets, directories containerd and the
// kubelet create at fixed places. hostState records, before each change,
// what was there, in a file of the node's directory, so that tear-down
// undoes exactly that, and a run that crashed is undone by the next Start.

const (
	cgroupFS   = "/sys/fs/cgroup"
	cgroupRoot = "csr-agent-node"
	stateFile  = "state.json"
)

// tunedSysctls are those the kubelet sets at start (protectKernelDefaults
// false makes it change them rather than refuse to start), kube-proxy's, and
// IP forwarding, which nothing here needs and which must stay as it was so
// that pod traffic cannot be routed off the machine.
var tunedSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
}

// fixedPaths are created by containerd (shim sockets, network namespaces)
// and the kubelet (device plugins, log links) wherever their state lives.
var fixedPaths = []string{"/run/containerd", "/run/netns", "/var/lib/kubelet", "/var/log/containers", "/var/lib/cni", "/etc/cni"}

type hostState struct {
	Dir       string            `json:"dir"`
	Bridge    string            `json:"bridge"`
	PIDs      map[string]int    `json:"pids"`
	Sysctls   map[string]string `json:"sysctls"`
	NFTables  []string          `json:"nftTables"`
	Created   []string          `json:"created"`
	ShimMatch string            `json:"shimMatch"`
}

func (s *hostState) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding node state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, stateFile), data, 0o600); err != nil {
		return fmt.Errorf("writing node state: %w", err)
	}
	return nil
}

func loadState(dir string) (*hostState, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	s := &hostState{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("decoding node state %s: %w", dir, err)
	}
	return s, nil
}

// record notes what the host has before the node changes it.
func (s *hostState) record() error {
	s.Sysctls = map[string]string{}
	for _, k := range tunedSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(v))
		}
	}
	tables, err := nftTables()
	if err != nil {
		return err
	}
	s.NFTables = tables
	for _, p := range fixedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			s.Created = append(s.Created, p)
		}
	}
	s.PIDs = map[string]int{}
	return s.save()
}

func nftTables() ([]string, error) {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: %w", err)
	}
	var tables []string
	for line := range strings.Lines(string(out)) {
		if t, ok := strings.CutPrefix(strings.TrimSpace(line), "table "); ok {
			tables = append(tables, t)
		}
	}
	return tables, nil
}

// restore undoes everything recorded, as far as it can, and reports what
// it could not.
func (s *hostState) restore() error {
	var errs []error
	for name, pid := range s.PIDs {
		killIfOurs(pid, name)
	}
	errs = append(errs, s.killCgroupProcs())
	killShims(s.ShimMatch)
	errs = append(errs, s.unmountAll())
	if s.Bridge != "" {
		if _, err := os.Stat("/sys/class/net/" + s.Bridge); err == nil {
			errs = append(errs, run("ip", "link", "del", s.Bridge))
		}
	}
	if tables, err := nftTables(); err != nil {
		errs = append(errs, err)
	} else {
		for _, t := range tables {
			if !slices.Contains(s.NFTables, t) {
				errs = append(errs, run("nft", append([]string{"delete", "table"}, strings.Fields(t)...)...))
			}
		}
	}
	errs = append(errs, removeCgroups())
	for k, v := range s.Sysctls {
		p := filepath.Join("/proc/sys", k)
		if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) != v {
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring sysctl %s: %w", k, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err // leave the files: mounts may remain beneath them
	}
	for _, p := range s.Created {
		errs = append(errs, os.RemoveAll(p))
	}
	errs = append(errs, os.RemoveAll(s.Dir))
	return errors.Join(errs...)
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// killIfOurs kills pid only if it still runs the program recorded for it,
// so that a recycled PID is left alone.
func killIfOurs(pid int, name string) {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err == nil && filepath.Base(exe) == name {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// killShims kills containerd's shims of this node: their command line names
// this node's containerd socket.
func killShims(match string) {
	if match == "" {
		return
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), "containerd-shim") && strings.Contains(string(cmdline), match) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// hierarchies lists the cgroup v1 hierarchies (and the v2 one, if any).
func hierarchies() []string {
	entries, _ := os.ReadDir(cgroupFS)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(cgroupFS, e.Name()))
		}
	}
	if len(out) == 0 {
		out = []string{cgroupFS}
	}
	return out
}

// makeCgroups creates the node's cgroup in every hierarchy: the kubelet's
// cgroupRoot must exist, and everything the node runs lives beneath it.
func makeCgroups() error {
	for _, h := range hierarchies() {
		dir := filepath.Join(h, cgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		// A v1 cpuset cgroup starts empty and takes no task until given
		// its parent's CPUs and memory nodes.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("setting %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}

// killCgroupProcs kills every process in the node's cgroups (the pods'
// containers) and waits until they are gone.
func (s *hostState) killCgroupProcs() error {
	var left []int
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		left = cgroupProcs()
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("processes %v in cgroup %s survived SIGKILL: %w", left, cgroupRoot, err)
	}
	return nil
}

func cgroupProcs() []int {
	var pids []int
	for _, h := range hierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, cgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for f := range strings.FieldsSeq(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroups removes the node's cgroups, deepest first.
func removeCgroups() error {
	var errs []error
	for _, h := range hierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, cgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for _, d := range slices.Backward(dirs) {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// unmountAll detaches every mount beneath the node's directory and the
// fixed paths the node created, deepest first.
func (s *hostState) unmountAll() error {
	roots := append([]string{s.Dir}, s.Created...)
	var errs []error
	for range 3 { // a detached mount can uncover another at the same place
		points, err := mountPoints(roots)
		if err != nil {
			return err
		}
		if len(points) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, p := range points {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

func mountPoints(roots []string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		for _, r := range roots {
			if p == r || strings.HasPrefix(p, r+"/") {
				points = append(points, p)
				break
			}
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	return points, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
