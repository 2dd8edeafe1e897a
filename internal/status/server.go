package status

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/writer"
)

// Health tracks the steps the sidecar is busy with. /healthz fails while a
// step has outlasted its limit: a renewal stuck past its own timeout, a
// publish hung on the volume. A sidecar that merely waits for its next
// renewal, or for a CSR to be approved within ISSUE_TIMEOUT, is healthy.
type Health struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	steps map[int]step
	seq   int
}

type step struct {
	name  string
	since time.Time
	limit time.Duration
}

var _ renew.Health = (*Health)(nil)

// NewHealth returns a Health with nothing in progress.
func NewHealth(c clock.PassiveClock) *Health {
	return &Health{clock: c, steps: make(map[int]step)}
}

// Begin marks a step as started; the returned function ends it.
func (h *Health) Begin(name string, limit time.Duration) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	id := h.seq
	h.steps[id] = step{name: name, since: h.clock.Now(), limit: limit}
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.steps, id)
	}
}

// Check returns an error naming a step that has outlasted its limit.
func (h *Health) Check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock.Now()
	for _, s := range h.steps {
		if took := now.Sub(s.since); took > s.limit {
			return fmt.Errorf("%s for %s, longer than %s", s.name, took.Round(time.Second), s.limit)
		}
	}
	return nil
}

// Loader reads what is published: *writer.Writer.
type Loader interface {
	Load() (*writer.Published, error)
}

var _ Loader = (*writer.Writer)(nil)

// Ready reports whether a valid pair is on disk: the key matches the
// certificate, the files are complete, and the certificate has not
// expired. `agent probe` and /readyz both ask it.
func Ready(files Loader, now time.Time) (*writer.Published, error) {
	pub, err := files.Load()
	if err != nil {
		return nil, err
	}
	if !now.Before(pub.Leaf.NotAfter) {
		return nil, fmt.Errorf("the published certificate expired at %s", pub.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return pub, nil
}

// Handler serves /healthz, /readyz and /metrics.
func Handler(health *Health, files Loader, metrics *Metrics, c clock.PassiveClock) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := health.Check(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		pub, err := Ready(files, c.Now())
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok: certificate valid until %s\n", pub.Leaf.NotAfter.UTC().Format(time.RFC3339))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = metrics.WriteTo(w)
	})
	return mux
}

// Serve serves h on ln until ctx ends, then shuts down within a second:
// probes and scrapes are short, and shutdown must fit the pod's grace period.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	klog.FromContext(ctx).Info("Serving /healthz, /readyz and /metrics", "address", ln.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		_ = srv.Close() // a scrape still open after the second is cut
	}
	if serveErr := <-done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stopping HTTP server: %w", err)
	}
	return nil
}
