package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/idle"
	"github.com/csr-agent/csr-agent/internal/issue"
)

// Exit codes; see the package documentation.
const (
	exitOK      = 0
	exitError   = 1
	exitConfig  = 2
	exitDenied  = 3
	exitFailed  = 4
	exitTimeout = 5
	exitDeleted = 6
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// maxProcs caps GOMAXPROCS unless the environment sets it. The agent waits
// on the network and the disk; it has no parallel work. Without a CPU
// limit the runtime would size itself for the node, and on a 64-core node
// every pod's agent would keep 64 processors' worth of caches.
const maxProcs = 2

func main() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) > maxProcs {
		runtime.GOMAXPROCS(maxProcs)
	}
	idle.SetGC() // GOGC off and GOMEMLIMIT 16MiB unless set; see package idle
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		usage(stderr)
		return exitConfig
	}
	switch args[0] {
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	case "version", "--version":
		fmt.Fprintln(stdout, "csr-agent", version)
		return exitOK
	case "init", "sidecar", "probe":
	default:
		fmt.Fprintf(stderr, "agent: unknown mode %q\n\n", args[0])
		usage(stderr)
		return exitConfig
	}
	mode := args[0]
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "agent: invalid configuration:\n%v\n", indent(err))
		return exitConfig
	}
	if mode == "probe" {
		return runProbe(cfg, stdout, stderr)
	}
	logger := newLogger(cfg, stderr)
	ctx = klog.NewContext(ctx, logger)
	for _, warning := range config.Unknown(os.Environ()) {
		logger.Info("Suspicious environment variable", "warning", warning)
	}
	run := runInit
	if mode == "sidecar" {
		run = runSidecar
	}
	if err := run(ctx, cfg); err != nil {
		logger.Error(err, "Agent failed", "mode", mode)
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return exitCode(err)
	}
	return exitOK
}

func pendingKeyPath(dir string) string { return dir + "/.pending.key" }

func exitCode(err error) int {
	switch {
	case errors.Is(err, issue.ErrDenied):
		return exitDenied
	case errors.Is(err, issue.ErrFailed):
		return exitFailed
	case errors.Is(err, issue.ErrTimeout):
		return exitTimeout
	case errors.Is(err, issue.ErrDeleted):
		return exitDeleted
	case errors.Is(err, config.ErrInvalid):
		return exitConfig
	}
	return exitError
}

// newLogger returns the agent's structured logger and routes client-go's
// klog output into it, so every line has one format.
func newLogger(cfg *config.Agent, w io.Writer) logr.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel.Slog()}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == config.LogText {
		h = slog.NewTextHandler(w, opts)
	}
	logger := logr.FromSlogHandler(h)
	klog.SetLogger(logger)
	return logger
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: agent MODE

Modes:
  init      obtain a certificate for this pod, write it to CERT_DIR, exit
  sidecar   as init, then keep the certificate valid: renew, repair, notify
  probe     exit 0 if CERT_DIR holds a valid pair (a startup probe), else 1
  help      show this help
  version   print the version

Exit codes: 0 success, 1 error, 2 invalid configuration, 3 request denied,
4 request failed, 5 timed out waiting (ISSUE_TIMEOUT), 6 request deleted
while waiting. The sidecar exits so only while getting its first certificate,
and 0 on SIGTERM. probe: 0 ready, 1 not ready.

Configuration (environment variables):
`)
	config.Usage(w)
}

func indent(err error) string {
	return "  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")
}
