package main

import (
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/config"
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
		Process: cfg.NotifyProcess, Signal: syscallSignal(cfg.NotifySignal), URL: cfg.NotifyURL,
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
	metrics, health := status.NewMetrics(), status.NewHealth(clk)

	g, gctx := errgroup.WithContext(ctx)
	if ln != nil {
		ctx := klog.NewContext(gctx, klog.FromContext(gctx).WithName("http"))
		g.Go(func() error { return status.Serve(ctx, ln, status.Endpoints(health, d.writer, metrics, clk)) })
	}
	g.Go(func() error {
		end := health.Begin("obtaining the first certificate", cfg.IssueTimeout+time.Minute)
		started, err := d.agent.Start(gctx)
		end()
		if err != nil {
			return err
		}
		filesChanged, caChanged := make(chan struct{}, 1), make(chan struct{}, 1)
		files, err := watch.NewFiles(cfg.CertDir)
		if err != nil {
			return err
		}
		wctx := klog.NewContext(gctx, klog.FromContext(gctx).WithName("watch"))
		if cfg.CAFile != "" {
			if err := files.WatchCA(cfg.CAFile); err != nil {
				klog.FromContext(wctx).Error(err, "ca.crt follows CA_FILE only at renewals")
			}
		} else {
			g.Go(func() error {
				return watch.TrustBundles(wctx, d.api.WatchTrustBundles(cfg.SignerName), cfg.SignerName, caChanged)
			})
		}
		g.Go(func() error { return files.Run(wctx, filesChanged, caChanged) })

		obs := &observer{metrics: metrics, notifier: notifier, files: files, clock: clk}
		files.Follow(gctx, started.Published.Generation)
		if started.Issued {
			metrics.Issued(started.Published, started.Took)
		} else {
			metrics.Current(started.Published)
		}
		if started.Replaced {
			obs.notify(gctx)
		}
		releaseMemory()
		loop, err := renew.New(renew.Options{
			Renewer: d.agent, Files: d.writer, Current: started.Published, RenewNow: started.RenewNow,
			Policy: renew.Policy{Before: cfg.RenewBefore}, RenewLimit: cfg.IssueTimeout + time.Minute,
			FilesChanged: filesChanged, CAChanged: caChanged,
			Observer: obs, Health: health, Events: d.events, Clock: clk,
		})
		if err != nil {
			return err
		}
		return loop.Run(klog.NewContext(gctx, klog.FromContext(gctx).WithName("renew")))
	})
	err = g.Wait()
	if ctx.Err() != nil {
		// SIGTERM: whatever was under way was finished or abandoned, and a
		// publish is atomic either way. Pending requests are resumed by the
		// next start, or removed by the API server's CSR cleaner.
		klog.FromContext(ctx).Info("Stopped")
		return nil
	}
	return err
}

// observer feeds what the renewal loop does to the metrics, the file watch
// and the application.
type observer struct {
	metrics  *status.Metrics
	notifier *notify.Notifier
	files    *watch.Files
	clock    clock.PassiveClock
}

var _ renew.Observer = (*observer)(nil)

func (o *observer) Attempted(result renew.Result, took time.Duration) {
	o.metrics.Renewal(result, took, o.clock.Now())
}

func (o *observer) Published(ctx context.Context, pub *writer.Published, why renew.Reason) {
	o.files.Follow(ctx, pub.Generation)
	o.metrics.Published(pub, why)
	if why != renew.ReasonRenewed {
		klog.FromContext(ctx).Info("Republished", "reason", string(why), "notAfter", pub.Leaf.NotAfter)
	}
	o.notify(ctx)
	releaseMemory()
}

// releaseMemory returns the heap freed after an issuance or a publish (key
// generation, decoding, TLS handshakes) to the kernel now. The runtime's
// scavenger would return it only gradually, and the agent, in every pod,
// then sleeps for hours: its resident memory is what it holds while idle.
func releaseMemory() { debug.FreeOSMemory() }

// notify runs the notification hooks; a failure is reported, and the agent
// carries on: the files are in place either way.
func (o *observer) notify(ctx context.Context) {
	logger := klog.FromContext(ctx)
	var told []string
	for _, out := range o.notifier.Notify(ctx) {
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

func syscallSignal(s config.Signal) syscall.Signal { return syscall.Signal(s) }
