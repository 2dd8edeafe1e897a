package notify

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoProcess: no process of the configured name was found.
var ErrNoProcess = errors.New("no process to signal")

type process struct {
	pid, ppid int
	names     []string // comm, and the base name of argv[0]
}

// signalProcesses sends the signal to every process called Process whose
// parent is not also called Process: a server's master process and not its
// workers, which for nginx would ignore SIGHUP anyway and for others may
// exit on it. The agent never signals itself.
func (n *Notifier) signalProcesses() error {
	procs, err := listProcesses(n.opts.ProcRoot)
	if err != nil {
		return err
	}
	named := func(p process) bool {
		for _, name := range p.names {
			if name == n.opts.Process {
				return true
			}
		}
		return false
	}
	self := os.Getpid()
	var errs []error
	sent := 0
	for _, p := range procs {
		if p.pid == self || !named(p) {
			continue
		}
		if parent, ok := procs[p.ppid]; ok && named(parent) {
			continue
		}
		switch err := n.opts.Kill(p.pid, n.opts.Signal); {
		case err == nil:
			sent++
		case errors.Is(err, syscall.ESRCH):
			// It exited since the scan: nothing left to tell.
		case errors.Is(err, syscall.EPERM):
			errs = append(errs, fmt.Errorf("signalling %s (pid %d): %w (run the agent as the app's user, or grant CAP_KILL)", n.opts.Process, p.pid, err))
		default:
			errs = append(errs, fmt.Errorf("signalling %s (pid %d): %w", n.opts.Process, p.pid, err))
		}
	}
	if sent == 0 && len(errs) == 0 {
		return fmt.Errorf("%w: none is called %q (does the pod set shareProcessNamespace: true?)", ErrNoProcess, n.opts.Process)
	}
	return errors.Join(errs...)
}

// listProcesses reads the processes under root (/proc), by pid. Processes
// that exit during the scan, or whose files cannot be read, are skipped.
func listProcesses(root string) (map[int]process, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	procs := make(map[int]process)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(root, e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		ppid, ok := parentPID(stat)
		if !ok {
			continue
		}
		p := process{pid: pid, ppid: ppid}
		if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
			p.names = append(p.names, strings.TrimSuffix(string(comm), "\n"))
		}
		if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmdline) > 0 {
			argv0, _, _ := bytes.Cut(cmdline, []byte{0})
			p.names = append(p.names, filepath.Base(string(argv0)))
		}
		procs[pid] = p
	}
	return procs, nil
}

// parentPID reads the ppid from /proc/<pid>/stat: "pid (comm) state ppid
// ...". comm may itself hold spaces and parentheses, so the fields are
// counted from the last ')'.
func parentPID(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}
