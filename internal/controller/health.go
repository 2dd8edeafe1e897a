package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"
)

// health answers the kubelet's probes.
type health struct {
	c        *Controller
	watchdog *leaderelection.HealthzAdaptor // nil without leader election
}

func newHealth(c *Controller, le *LeaderElection) *health {
	h := &health{c: c}
	if le != nil {
		h.watchdog = leaderelection.NewLeaderHealthzAdaptor(watchdogTimeout)
	}
	return h
}

// HealthHandler serves /healthz and /readyz.
//
// /healthz (liveness) fails only when this replica leads but has not
// renewed its Lease for watchdogTimeout past the lease: it should have
// stopped leading, so it is stuck, and a restart helps. /readyz fails until
// the caches synced and a CA is loaded, on standbys too: a ready standby
// can sign the moment it leads.
func (c *Controller) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if c.health.watchdog != nil {
			if err := c.health.watchdog.Check(r); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func (c *Controller) ready() error {
	var errs []error
	if !c.synced.Load() {
		errs = append(errs, errors.New("caches not synced"))
	}
	if c.ca.Current() == nil {
		errs = append(errs, errors.New("no CA loaded"))
	}
	return errors.Join(errs...)
}

// shutdownTimeout bounds how long open scrapes and probes may delay exit;
// it fits well within a pod's default 30 s grace period.
const shutdownTimeout = 5 * time.Second

// serve listens on the configured addresses, so that an address in use
// fails Run at once, and serves until ctx is done.
func (c *Controller) serve(ctx context.Context, g *errgroup.Group) error {
	for _, s := range []struct {
		name, addr string
		handler    http.Handler
	}{
		{"metrics", c.opts.MetricsAddr, c.MetricsHandler()},
		{"health", c.opts.HealthAddr, c.HealthHandler()},
	} {
		if s.addr == "" {
			continue
		}
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listening for %s on %s: %w", s.name, s.addr, err)
		}
		srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
		klog.FromContext(ctx).Info("Serving", "endpoint", s.name, "addr", ln.Addr().String())
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serving %s: %w", s.name, err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	return nil
}
