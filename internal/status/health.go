package status

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"time"

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

// Response is what an endpoint answers.
type Response struct {
	Code        int
	ContentType string
	Body        []byte
}

// Endpoints answers /healthz, /readyz and /metrics.
func Endpoints(health *Health, files Loader, metrics *Metrics, c clock.PassiveClock) func(path string) Response {
	text := func(code int, format string, args ...any) Response {
		return Response{Code: code, ContentType: "text/plain; charset=utf-8", Body: fmt.Appendf(nil, format+"\n", args...)}
	}
	return func(path string) Response {
		switch path {
		case "/healthz":
			if err := health.Check(); err != nil {
				return text(http.StatusServiceUnavailable, "unhealthy: %v", err)
			}
			return text(http.StatusOK, "ok")
		case "/readyz":
			pub, err := Ready(files, c.Now())
			if err != nil {
				return text(http.StatusServiceUnavailable, "not ready: %v", err)
			}
			return text(http.StatusOK, "ok: certificate valid until %s", pub.Leaf.NotAfter.UTC().Format(time.RFC3339))
		case "/metrics":
			var b bytes.Buffer
			_, _ = metrics.WriteTo(&b)
			_, notReady := Ready(files, c.Now())
			_ = WriteReady(&b, notReady == nil)
			return Response{Code: http.StatusOK, ContentType: "text/plain; version=0.0.4; charset=utf-8", Body: b.Bytes()}
		}
		return text(http.StatusNotFound, "not found; try /healthz, /readyz or /metrics")
	}
}
