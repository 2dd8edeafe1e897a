// Package status is what the sidecar tells the outside about itself: the
// /healthz, /readyz and /metrics endpoint.
//
// The few metrics are written in the Prometheus text format by hand.
// client_golang would add 2.2 MB to a binary that runs in every pod of a
// cluster (with its protobuf model and Go runtime collectors), for four
// metric families that need no more than a mutex and fmt.
package status

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/writer"
)

// issuanceBuckets are the upper bounds, in seconds, of the issuance
// duration histogram: an automatic approver answers in well under a second,
// a person in minutes (ISSUE_TIMEOUT is 5m by default).
var issuanceBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics holds the sidecar's metrics. It is safe for concurrent use.
type Metrics struct {
	mu            sync.Mutex
	notAfter      time.Time
	renewalDue    time.Time
	lastRenewal   time.Time
	renewals      map[renew.Result]uint64
	publishes     map[renew.Reason]uint64
	notifications map[[2]string]uint64 // hook, result
	buckets       []uint64             // cumulative counts per issuanceBuckets
	count         uint64
	sum           float64
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		renewals:      make(map[renew.Result]uint64),
		publishes:     make(map[renew.Reason]uint64),
		notifications: make(map[[2]string]uint64),
		buckets:       make([]uint64, len(issuanceBuckets)),
	}
}

// Issued records the first issuance: the certificate and how long it took
// from request to certificate.
func (m *Metrics) Issued(pub *writer.Published, took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notAfter = pub.Leaf.NotAfter
	m.observe(took)
}

// Current records the certificate on disk when none had to be issued.
func (m *Metrics) Current(pub *writer.Published) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notAfter = pub.Leaf.NotAfter
}

// Renewal records the result of a renewal attempt, which ended at now and
// took took.
func (m *Metrics) Renewal(result renew.Result, took time.Duration, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewals[result]++
	if result == renew.ResultSuccess {
		m.lastRenewal = now
		m.observe(took)
	}
}

// Published records a publish by the renewal loop.
func (m *Metrics) Published(pub *writer.Published, why renew.Reason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notAfter = pub.Leaf.NotAfter
	if why != renew.ReasonRenewed {
		m.publishes[why]++
	}
}

// Due records when the published certificate is due for renewal.
func (m *Metrics) Due(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.renewalDue = at
}

func (m *Metrics) observe(took time.Duration) {
	s := took.Seconds()
	m.count++
	m.sum += s
	for i, le := range issuanceBuckets {
		if s <= le {
			m.buckets[i]++
		}
	}
}

// Notified records a notification hook's outcome.
func (m *Metrics) Notified(hook string, err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notifications[[2]string{hook, result}]++
}

// WriteTo writes the metrics in the Prometheus text exposition format 0.0.4.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p printer
	p.family("csr_agent_certificate_expiration_timestamp_seconds", "gauge",
		"Not-after time of the published certificate, in seconds since the epoch.")
	if !m.notAfter.IsZero() {
		p.sample("csr_agent_certificate_expiration_timestamp_seconds", "", float64(m.notAfter.Unix()))
	}
	p.family("csr_agent_certificate_renewal_due_timestamp_seconds", "gauge",
		"When the published certificate is due for renewal, in seconds since the epoch; retries do not move it, so a time in the past means a renewal not done yet.")
	if !m.renewalDue.IsZero() {
		p.sample("csr_agent_certificate_renewal_due_timestamp_seconds", "", float64(m.renewalDue.Unix()))
	}
	p.family("csr_agent_last_renewal_success_timestamp_seconds", "gauge",
		"Time of the last successful renewal, in seconds since the epoch; 0 before the first.")
	p.sample("csr_agent_last_renewal_success_timestamp_seconds", "", float64(unixOrZero(m.lastRenewal)))
	p.family("csr_agent_renewals_total", "counter", "Renewal attempts by result: success, denied, failed (by the signer) or error.")
	for _, r := range []renew.Result{renew.ResultSuccess, renew.ResultDenied, renew.ResultFailed, renew.ResultError} {
		p.sample("csr_agent_renewals_total", fmt.Sprintf(`result=%q`, r), float64(m.renewals[r]))
	}
	p.family("csr_agent_issuance_duration_seconds", "histogram", "Time from creating a certificate request to holding the certificate.")
	for i, le := range issuanceBuckets {
		p.sample("csr_agent_issuance_duration_seconds_bucket", fmt.Sprintf(`le="%g"`, le), float64(m.buckets[i]))
	}
	p.sample("csr_agent_issuance_duration_seconds_bucket", `le="+Inf"`, float64(m.count))
	p.sample("csr_agent_issuance_duration_seconds_sum", "", m.sum)
	p.sample("csr_agent_issuance_duration_seconds_count", "", float64(m.count))
	p.family("csr_agent_republishes_total", "counter", "Publishes of the current pair by reason: repaired (files changed) or ca-changed.")
	for _, r := range []renew.Reason{renew.ReasonRepaired, renew.ReasonCAChanged} {
		p.sample("csr_agent_republishes_total", fmt.Sprintf(`reason=%q`, r), float64(m.publishes[r]))
	}
	p.family("csr_agent_notifications_total", "counter", "Notification hook runs by hook (signal, url, command) and result.")
	for _, k := range slices.SortedFunc(maps.Keys(m.notifications), func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	}) {
		p.sample("csr_agent_notifications_total", fmt.Sprintf(`hook=%q,result=%q`, k[0], k[1]), float64(m.notifications[k]))
	}
	n, err := w.Write(p.buf)
	return int64(n), err
}

// WriteReady writes csr_agent_ready, in the format of WriteTo. Readiness
// is read from the files at each scrape, as /readyz does, rather than
// recorded: a certificate expires, and files are damaged, between events.
func WriteReady(w io.Writer, ready bool) error {
	var p printer
	p.family("csr_agent_ready", "gauge",
		"1 while a valid certificate and its key are on disk (what /readyz answers), 0 otherwise.")
	v := 0.0
	if ready {
		v = 1
	}
	p.sample("csr_agent_ready", "", v)
	_, err := w.Write(p.buf)
	return err
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

type printer struct{ buf []byte }

func (p *printer) family(name, kind, help string) {
	p.buf = fmt.Appendf(p.buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
}

func (p *printer) sample(name, labels string, v float64) {
	if labels != "" {
		labels = "{" + labels + "}"
	}
	p.buf = fmt.Appendf(p.buf, "%s%s %s\n", name, labels, strconv.FormatFloat(v, 'f', -1, 64))
}
