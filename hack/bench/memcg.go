package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// memcg is a cgroup v1 memory cgroup holding one benchmarked program, so
// that its working set reads as the kubelet (cAdvisor) reports a
// container's: memory.usage_in_bytes minus total_inactive_file. It is
// created under the bench's own memory cgroup, so the program stays within
// whatever limits the bench runs under.
//
// The program joins the cgroup before it executes (a shell writes its own
// pid into cgroup.procs, then execs the program): charges stay with the
// cgroup that first faulted a page, and this kernel refuses to move them
// (memory.move_charge_at_immigrate is gone). For the same reason the
// program's file is dropped from the page cache first, so its text is
// charged to it as a container's would be on a node that just pulled the
// image, not to the go build that wrote it.
type memcg struct {
	dir string
}

// newMemcg creates the cgroup name under the bench's memory cgroup.
func newMemcg(name string) (*memcg, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	var own string
	for line := range strings.Lines(string(data)) {
		// hierarchy-ID:controller-list:path
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && strings.Contains(","+f[1]+",", ",memory,") {
			own = f[2]
		}
	}
	if own == "" {
		return nil, errors.New("no cgroup v1 memory controller (is this cgroup v2?)")
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", own, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating memory cgroup: %w", err)
	}
	return &memcg{dir: dir}, nil
}

// command returns the command line that runs program with args inside the
// cgroup, its pid and signals the program's own once it has exec'd.
func (m *memcg) command(program string, args []string) (string, []string, error) {
	if err := dropPageCache(program); err != nil {
		return "", nil, err
	}
	script := `echo $$ > "` + filepath.Join(m.dir, "cgroup.procs") + `" && exec "$0" "$@"`
	return "/bin/sh", append([]string{"-c", script, program}, args...), nil
}

func dropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// A program just built is still dirty in the page cache, which
	// FADV_DONTNEED leaves alone: write it back first.
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// workingSet is usage minus inactive file pages, as the kubelet computes
// container_memory_working_set_bytes on cgroup v1.
func (m *memcg) workingSet() (int64, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, err
	}
	usage, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(filepath.Join(m.dir, "memory.stat"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "total_inactive_file "); ok {
			inactive, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, err
			}
			return max(usage-inactive, 0), nil
		}
	}
	return usage, s.Err()
}

// remove deletes the cgroup once its program has exited (the kernel
// refuses while a task is in it, and for a moment after it exits).
func (m *memcg) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		last = os.Remove(m.dir)
		return last == nil || errors.Is(last, os.ErrNotExist), nil
	})
	if err != nil {
		return fmt.Errorf("removing memory cgroup %s: %w", m.dir, last)
	}
	return nil
}

// breakdown is the cgroup's charge by kind, from memory.stat, for the
// report: anonymous memory, and file pages the kernel counts as in use
// (active) or as reclaimable first (inactive, outside the working set).
func (m *memcg) breakdown() (string, error) {
	data, err := os.ReadFile(filepath.Join(m.dir, "memory.stat"))
	if err != nil {
		return "", err
	}
	v := map[string]int64{}
	for line := range strings.Lines(string(data)) {
		if k, n, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			v[k], _ = strconv.ParseInt(n, 10, 64)
		}
	}
	return fmt.Sprintf("%s anonymous, %s active file, %s inactive file", mib(v["total_rss"]), mib(v["total_active_file"]), mib(v["total_inactive_file"])), nil
}
