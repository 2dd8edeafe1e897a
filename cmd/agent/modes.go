package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/csr-agent/csr-agent/internal/agent"
	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/kube"
	"github.com/csr-agent/csr-agent/internal/status"
	"github.com/csr-agent/csr-agent/internal/writer"
)

func runInit(ctx context.Context, cfg *config.Agent) error {
	d, err := wire(cfg)
	if err != nil {
		return err
	}
	defer d.flushEvents(ctx)
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

// eventFlushTimeout bounds how long an exiting agent waits for its last
// Events (an init container's CertificateIssued or CertificateDenied).
const eventFlushTimeout = 3 * time.Second

// flushEvents posts the Events still queued, for at most eventFlushTimeout,
// even when ctx has ended (a SIGTERM).
func (d *deps) flushEvents(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventFlushTimeout)
	defer cancel()
	d.events.Flush(ctx)
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
