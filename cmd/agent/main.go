package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/agent"
	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/kube"
	"github.com/csr-agent/csr-agent/internal/status"
	"github.com/csr-agent/csr-agent/internal/writer"
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

func main() {
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
		logger.Error(err, "agent "+mode+" failed")
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return exitCode(err)
	}
	return exitOK
}

func runInit(ctx context.Context, cfg *config.Agent) error {
	d, err := wire(cfg)
	if err != nil {
		return err
	}
	return d.agent.Init(ctx)
}

// deps are what both modes build from the configuration.
type deps struct {
	api    *kube.Client
	writer *writer.Writer
	events *kube.Recorder
	agent  *agent.Agent
}

func wire(cfg *config.Agent) (*deps, error) {
	password, err := cfg.ReadKeystorePassword()
	if err != nil {
		return nil, err
	}
	restCfg, err := kube.LoadConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	api, err := kube.New(restCfg, "csr-agent/"+version)
	if err != nil {
		return nil, err
	}
	w, err := newWriter(cfg, password)
	if err != nil {
		return nil, err
	}
	keys := &issue.FileKeyStore{Path: pendingKeyPath(cfg.CertDir)}
	issuer, err := issue.New(issue.Options{Client: api, Keys: keys})
	if err != nil {
		return nil, err
	}
	events := kube.NewRecorder(api, kube.ObjectRef{Namespace: cfg.PodNamespace, Name: cfg.PodName, UID: cfg.PodUID}, nil)
	a, err := agent.New(agent.Options{Config: cfg, API: api, Writer: w, Issuer: issuer, Keys: keys, Events: events})
	if err != nil {
		return nil, err
	}
	return &deps{api: api, writer: w, events: events, agent: a}, nil
}

func newWriter(cfg *config.Agent, keystorePassword []byte) (*writer.Writer, error) {
	return writer.New(writer.Options{
		Dir: cfg.CertDir, KeyMode: cfg.KeyFileMode, CertMode: cfg.CertFileMode, KeystorePassword: keystorePassword,
	})
}

// runProbe is `agent probe`, the exec startup probe of a native sidecar: it
// passes once a valid, matching, unexpired pair is on disk. It reads files
// only, so it works with HTTP_ADDR="" and costs the API server nothing.
func runProbe(cfg *config.Agent, stdout, stderr io.Writer) int {
	password, err := cfg.ReadKeystorePassword()
	if err != nil {
		fmt.Fprintf(stderr, "agent: invalid configuration:\n%v\n", indent(err))
		return exitConfig
	}
	w, err := newWriter(cfg, password)
	if err != nil {
		fmt.Fprintf(stderr, "agent: %v\n", err)
		return exitError
	}
	pub, err := status.Ready(w, time.Now())
	if err != nil {
		fmt.Fprintf(stdout, "not ready: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "ready: certificate valid until %s\n", pub.Leaf.NotAfter.UTC().Format(time.RFC3339))
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
while waiting.

Configuration (environment variables):
`)
	config.Usage(w)
}

func indent(err error) string {
	return "  " + strings.ReplaceAll(err.Error(), "\n", "\n  ")
}
