package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a program the bench runs (agent, reference, controller), with
// its output in a log file.
type process struct {
	name, logPath string
	cmd           *exec.Cmd
	started       time.Time
	done          chan struct{}
	err           error // read after done
}

// startProcess runs path with exactly env. Linux only, as the bench is: the
// child gets SIGTERM if the bench dies without stopping it.
func startProcess(name, path string, args, env []string, logPath string) (*process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *process) exited() error {
	return fmt.Errorf("%s exited (%w)\n%s", p.name, p.err, p.logTail())
}

// wait waits for the exit, at most d, and returns an error unless it was
// status 0.
func (p *process) wait(d time.Duration) error {
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s\n%s", p.name, d, p.logTail())
	}
	if p.err != nil {
		return p.exited()
	}
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop() error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return p.wait(20 * time.Second)
}

func (p *process) logTail() string {
	data, _ := os.ReadFile(p.logPath)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return "--- " + p.logPath + " ---\n" + string(bytes.TrimSpace(data))
}

// memory is what /proc/<pid>/status says of a process's resident set.
type memory struct {
	RSS, Anon, File int64 // bytes: VmRSS, RssAnon, RssFile
}

func (p *process) memory() (memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	fields := map[string]*int64{"VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	s := bufio.NewScanner(f)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 3 && fields[f[0]] != nil && f[2] == "kB" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return memory{}, err
			}
			*fields[f[0]] = n * 1024
		}
	}
	if m.RSS == 0 {
		return memory{}, fmt.Errorf("no VmRSS for %s", p.name)
	}
	return m, s.Err()
}
