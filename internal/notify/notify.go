// Package notify tells the application that its certificate files were
// replaced: a signal to a process of the pod, an HTTP request to a local URL,
// a command. Each hook is bounded by a timeout, and a failing hook neither
// stops the others nor the agent: the files are already in place, and an app
// that missed the news still reads them at its next reload or restart.
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Hook names, as reported in Outcome and in metrics.
const (
	HookSignal  = "signal"
	HookURL     = "url"
	HookCommand = "command"
)

// Options configure a Notifier. Every hook is optional.
type Options struct {
	// Process and Signal: send Signal to the processes called Process
	// (see signalProcesses). Seeing other containers' processes needs the
	// pod's shareProcessNamespace.
	Process string
	Signal  syscall.Signal
	// URL is POSTed to, with an empty body.
	URL string
	// Command is run, program first.
	Command []string
	// Env is added to the agent's environment for Command.
	Env []string

	// Timeout bounds each hook; default 10s.
	Timeout time.Duration
	// ProcRoot is where processes are listed; default /proc.
	ProcRoot string
	// Kill sends a signal; default syscall.Kill.
	Kill func(pid int, sig syscall.Signal) error
	// HTTPClient; default a client that ignores HTTP_PROXY (the URL is
	// local to the pod) and keeps no idle connection between publishes.
	HTTPClient *http.Client
}

// Notifier runs the configured hooks.
type Notifier struct{ opts Options }

// Outcome is what one hook did.
type Outcome struct {
	Hook string
	Err  error // nil: success
}

// New checks and defaults opts.
func New(opts Options) (*Notifier, error) {
	if opts.Process != "" && opts.Signal == 0 {
		return nil, errors.New("notify: a signal must be set with a process")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.Kill == nil {
		opts.Kill = syscall.Kill
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	}
	return &Notifier{opts: opts}, nil
}

// Enabled reports whether any hook is configured.
func (n *Notifier) Enabled() bool {
	return n.opts.Process != "" || n.opts.URL != "" || len(n.opts.Command) > 0
}

// Notify runs every configured hook, in the order signal, URL, command, each
// within the timeout, and reports what each did.
func (n *Notifier) Notify(ctx context.Context) []Outcome {
	var out []Outcome
	run := func(hook string, f func(context.Context) error) {
		ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
		defer cancel()
		out = append(out, Outcome{Hook: hook, Err: f(ctx)})
	}
	if n.opts.Process != "" {
		run(HookSignal, func(context.Context) error { return n.signalProcesses() })
	}
	if n.opts.URL != "" {
		run(HookURL, n.post)
	}
	if len(n.opts.Command) > 0 {
		run(HookCommand, n.command)
	}
	return out
}

// post POSTs to the URL; any 2xx answer is success.
func (n *Notifier) post(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, http.NoBody)
	if err != nil {
		return fmt.Errorf("POST %s: %w", n.opts.URL, err)
	}
	req.Header.Set("User-Agent", "csr-agent")
	resp, err := n.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", n.opts.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", n.opts.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// command runs the command; exit status 0 is success. Its output is kept
// for the error message only.
func (n *Notifier) command(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, n.opts.Command[0], n.opts.Command[1:]...)
	cmd.Env = append(os.Environ(), n.opts.Env...)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Without WaitDelay, a child that keeps the output pipe open (a
	// daemonising reload script) would hold Wait past the timeout.
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s", ctx.Err(), n.opts.Timeout)
		}
		return fmt.Errorf("running %s: %w: %s", n.opts.Command[0], err, strings.TrimSpace(out.String()))
	}
	return nil
}

// limitedBuffer keeps the first 1 KiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 1024 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
