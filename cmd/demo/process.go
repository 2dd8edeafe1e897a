package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// stopTimeout bounds how long a program may take to exit after SIGTERM; both
// finish in well under a second, and a pod's grace period is 30s.
const stopTimeout = 20 * time.Second

// process is the agent or the controller, run as a child of the demo with
// its output in a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // how it exited; read after done is closed
}

// startProcess runs path with args and exactly env (nothing of the demo's
// own environment leaks in, such as a KUBECONFIG of the developer's).
func startProcess(name, path string, args, env []string, logPath string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exitedEarly is the error of a program that ended before it was stopped.
func (p *process) exitedEarly() error {
	if p.err == nil {
		return fmt.Errorf("%s exited with status 0 before it was stopped\n%s", p.name, p.logTail())
	}
	return fmt.Errorf("%s exited: %w\n%s", p.name, p.err, p.logTail())
}

// stop sends SIGTERM and waits for the exit; the programs treat SIGTERM as
// a normal shutdown and exit 0, anything else is an error.
func (p *process) stop() error {
	select {
	case <-p.done:
		return p.exitedEarly()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for %s and was killed\n%s", p.name, stopTimeout, p.logTail())
	}
	if p.err != nil {
		return fmt.Errorf("%s exited after SIGTERM: %w\n%s", p.name, p.err, p.logTail())
	}
	return nil
}

// logTail is the end of the log, for error messages.
func (p *process) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const max = 3000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return "--- end of " + p.logPath + " ---\n" + string(bytes.TrimSpace(data))
}
