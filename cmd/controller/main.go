// Command controller approves and signs the CertificateSigningRequests of
// csr-agent's signer (default csr-agent.io/pod) and publishes its CA as a
// ClusterTrustBundle. See package internal/controller for how, and package
// internal/config (or `controller help`) for its environment variables.
//
// Usage: controller [run|help|version]. Exit codes: 0 stopped by SIGTERM or
// SIGINT, 1 error (including a lost leader election: the pod restarts as a
// standby), 2 invalid configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/kube"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes; see the package documentation.
const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0 || args[0] == "run" && len(args) == 1:
	case len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help"):
		usage(stdout)
		return exitOK
	case len(args) == 1 && (args[0] == "version" || args[0] == "--version"):
		fmt.Fprintln(stdout, "csr-agent controller", version)
		return exitOK
	default:
		fmt.Fprintf(stderr, "controller: unexpected arguments %q\n\n", args)
		usage(stderr)
		return exitConfig
	}
	cfg, err := config.ControllerFromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "controller: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return exitConfig
	}
	logger := newLogger(cfg, stderr)
	ctx = klog.NewContext(ctx, logger)
	for _, warning := range config.ControllerUnknown(os.Environ()) {
		logger.Info("Suspicious environment variable", "warning", warning)
	}
	if err := runController(ctx, cfg); err != nil {
		logger.Error(err, "Controller stopped")
		if errors.Is(err, config.ErrInvalid) {
			return exitConfig
		}
		return exitError
	}
	return exitOK
}

func runController(ctx context.Context, cfg *config.Controller) error {
	restCfg, err := kube.LoadConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = cfg.KubeAPIQPS, cfg.KubeAPIBurst
	restCfg.UserAgent = "csr-agent-controller/" + version
	// Protobuf, as kube-controller-manager uses: cheaper than JSON for the
	// API server to encode on every watch event and write of a burst.
	restCfg.ContentType = runtime.ContentTypeProtobuf
	restCfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("building client: %w", err)
	}
	policy, err := approve.New(approve.Options{
		SignerName:        cfg.SignerName,
		ClusterDomain:     cfg.ClusterDomain,
		ShortServiceNames: cfg.ShortServiceNames,
		MaxExpiration:     cfg.MaxExpiration,
		TrustDomain:       cfg.SPIFFETrustDomain,
	})
	if err != nil {
		return err
	}
	issuer, err := sign.New(sign.Options{MaxExpiration: cfg.MaxExpiration})
	if err != nil {
		return err
	}
	opts := controller.Options{
		Client:          client,
		Policy:          policy,
		Issuer:          issuer,
		CreateCA:        cfg.CreateCA,
		TrustBundleName: cfg.TrustBundleName,
		Workers:         cfg.Workers,
		MetricsAddr:     cfg.MetricsAddr,
		HealthAddr:      cfg.HealthAddr,
	}
	if opts.PodCertificates, err = controller.ServesPodCertificates(client.Discovery()); err != nil {
		return err
	}
	if cfg.CADir != "" {
		opts.CADir = cfg.CADir
	} else {
		opts.CASecret = types.NamespacedName{Namespace: cfg.CASecretNamespace, Name: cfg.CASecretName}
	}
	if cfg.LeaderElect {
		identity := cfg.PodName
		if identity == "" {
			if identity, err = os.Hostname(); err != nil {
				return fmt.Errorf("naming this replica (set POD_NAME): %w", err)
			}
		}
		opts.LeaderElection = &controller.LeaderElection{
			Namespace: cfg.LeaseNamespace, Name: cfg.LeaseName, Identity: identity,
			LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.LeaseRenewDeadline, RetryPeriod: cfg.LeaseRetryPeriod,
		}
	}
	c, err := controller.New(opts)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// newLogger returns the controller's structured logger and routes
// client-go's klog output into it, so every line has one format.
func newLogger(cfg *config.Controller, w io.Writer) logr.Logger {
	logger := logr.FromSlogHandler(config.LogHandler(w, cfg.LogFormat, cfg.LogLevel))
	klog.SetLogger(logger)
	return logger
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: controller [run]

Approves, denies and signs the CertificateSigningRequests of one signer name,
issues or denies its PodCertificateRequests (Kubernetes 1.37+, found by
discovery), and publishes its CA as a ClusterTrustBundle, until SIGTERM.

  run       run the controller (the default)
  help      show this help
  version   print the version

Exit codes: 0 stopped by a signal, 1 error or leader election lost,
2 invalid configuration.

`)
	config.ControllerUsage(w)
}
