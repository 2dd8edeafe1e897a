package main

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/idle"
	"github.com/csr-agent/csr-agent/internal/notify"
	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/status"
	"github.com/csr-agent/csr-agent/internal/watch"
	"github.com/csr-agent/csr-agent/internal/writer"
)

// runSidecar is `agent sidecar`: the HTTP endpoint first (so /readyz is
// red, not absent, while the first certificate is requested), then what
// init does, then the renewal loop fed by the file and trust-bundle
// watches. Every goroutine belongs to one errgroup; SIGTERM ends them all
// and is a clean exit.
func runSidecar(ctx context.Context, cfg *config.Agent) error {
	d, err := wire(cfg)
	if err != nil {
		return err
	}
	notifier, err := notify.New(notify.Options{
		Process: cfg.NotifyProcess, Signal: syscall.Signal(cfg.NotifySignal), URL: cfg.NotifyURL,
		Command: cfg.NotifyCommand, Env: []string{"CERT_DIR=" + cfg.CertDir},
	})
	if err != nil {
		return err
	}
	var ln net.Listener
	if cfg.HTTPAddr != "" {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("HTTP_ADDR: %w", err)
		}
	}
	clk := clock.RealClock{}
	s := &sidecar{cfg: cfg, deps: d, metrics: status.NewMetrics(), health: status.NewHealth(clk), clock: clk}
	s.observer = observer{metrics: s.metrics, notifier: notifier, clock: clk}

	g, gctx := errgroup.WithContext(ctx)
	if ln != nil {
		hctx := klog.NewContext(gctx, klog.FromContext(gctx).WithName("http"))
		g.Go(func() error { return status.Serve(hctx, ln, status.Endpoints(s.health, d.writer, s.metrics, clk)) })
	}
	g.Go(func() error { return s.run(gctx, g) })
	err = g.Wait()
	d.flushEvents(ctx)
	if ctx.Err() != nil {
		// SIGTERM: whatever was under way was finished or abandoned, and a
		// publish is atomic either way. Pending requests are resumed by the
		// next start, or removed by the API server's CSR cleaner.
		klog.FromContext(ctx).Info("Stopped")
		return nil
	}
	return err
}

type sidecar struct {
	cfg *config.Agent
	*deps
	metrics  *status.Metrics
	health   *status.Health
	clock    clock.Clock
	observer observer
}

// run gets the first certificate, starts the watches in g, and runs the
// renewal loop until ctx ends.
func (s *sidecar) run(ctx context.Context, g *errgroup.Group) error {
	end := s.health.Begin("obtaining the first certificate", s.cfg.IssueTimeout+time.Minute)
	started, err := s.agent.Start(ctx)
	end()
	if err != nil {
		return err
	}
	if started.Issued {
		s.metrics.Issued(started.Published, started.Took)
	} else {
		s.metrics.Current(started.Published)
	}
	filesChanged, caChanged := s.watch(ctx, g)
	s.observer.files.Follow(ctx, started.Published.Generation)
	if started.Replaced {
		s.observer.notify(ctx)
	}
	releaseMemory(ctx)
	sweeper := &idle.Sweeper{Clock: clock.RealClock{}}
	g.Go(func() error {
		sweeper.Run(ctx, func(err error) {
			klog.FromContext(ctx).V(1).Info("Some memory could not be given back", "error", err.Error())
		})
		return nil
	})
	loop, err := renew.New(renew.Options{
		Renewer: s.agent, Files: s.writer, Current: started.Published, RenewNow: started.RenewNow,
		Policy: renew.Policy{Before: s.cfg.RenewBefore}, RenewLimit: s.cfg.IssueTimeout + time.Minute,
		FilesChanged: filesChanged, CAChanged: caChanged,
		Observer: &s.observer, Health: s.health, Events: s.events, Clock: s.clock,
	})
	if err != nil {
		return err
	}
	return loop.Run(klog.NewContext(ctx, klog.FromContext(ctx).WithName("renew")))
}

// watch starts, in g, the watches that tell the loop that the published
// files or the CA bundle's source changed. A watch that cannot start is a
// lost convenience, not a reason to stop keeping the certificate valid.
func (s *sidecar) watch(ctx context.Context, g *errgroup.Group) (files, ca <-chan struct{}) {
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithName("watch"))
	logger := klog.FromContext(ctx)
	filesChanged, caChanged := make(chan struct{}, 1), make(chan struct{}, 1)
	if s.cfg.CAFile == "" {
		g.Go(func() error {
			return watch.TrustBundles(ctx, s.api.WatchTrustBundles(s.cfg.SignerName), s.cfg.SignerName, caChanged)
		})
	}
	w, err := watch.NewFiles(s.cfg.CertDir)
	if err != nil {
		// Typically fs.inotify.max_user_instances (128 on some nodes) spent
		// by other pods running as the same user.
		logger.Error(err, "Cannot watch CERT_DIR; changed or deleted files are restored at the next renewal only")
		return nil, caChanged
	}
	if s.cfg.CAFile != "" {
		if err := w.WatchCA(s.cfg.CAFile); err != nil {
			logger.Error(err, "Cannot watch CA_FILE; ca.crt follows it at renewals only")
		}
	}
	s.observer.files = w
	g.Go(func() error { return w.Run(ctx, filesChanged, caChanged) })
	return filesChanged, caChanged
}

// observer feeds what the renewal loop does to the metrics, the file watch
// and the application.
type observer struct {
	metrics  *status.Metrics
	notifier *notify.Notifier
	files    *watch.Files // nil when CERT_DIR cannot be watched
	clock    clock.PassiveClock
}

var _ renew.Observer = (*observer)(nil)

func (o *observer) Attempted(result renew.Result, took time.Duration) {
	o.metrics.Renewal(result, took, o.clock.Now())
}

func (o *observer) Due(at time.Time) { o.metrics.Due(at) }

func (o *observer) Published(ctx context.Context, pub *writer.Published, why renew.Reason) {
	o.files.Follow(ctx, pub.Generation)
	o.metrics.Published(pub, why)
	if why != renew.ReasonRenewed {
		klog.FromContext(ctx).Info("Republished", "reason", string(why), "notAfter", pub.Leaf.NotAfter)
	}
	o.notify(ctx)
	releaseMemory(ctx)
}

// releaseMemory gives memory back before the agent sleeps (package idle):
// in every pod, the agent's cost is what it holds while idle.
func releaseMemory(ctx context.Context) {
	if err := idle.Release(); err != nil {
		klog.FromContext(ctx).V(1).Info("Some memory could not be given back", "error", err.Error())
	}
}

// notify runs the notification hooks; a failure is reported, and the agent
// carries on: the files are in place either way. The hooks run to the end
// (each within its timeout) even during shutdown: files that were replaced
// must be announced.
func (o *observer) notify(ctx context.Context) {
	logger := klog.FromContext(ctx)
	var told []string
	for _, out := range o.notifier.Notify(context.WithoutCancel(ctx)) {
		o.metrics.Notified(out.Hook, out.Err)
		if out.Err != nil {
			logger.Error(out.Err, "Telling the application failed; the new files are in place", "hook", out.Hook)
			continue
		}
		told = append(told, out.Hook)
	}
	if len(told) > 0 {
		logger.Info("Application told of the new files", "hooks", told)
	}
}
