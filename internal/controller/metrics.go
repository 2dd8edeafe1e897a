package controller

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/util/workqueue"
)

// Values of the result label of csr_agent_controller_decisions_total.
const (
	resultApproved = "approved"
	resultDenied   = "denied"
	resultFailed   = "failed"
)

// metrics are the controller's Prometheus metrics, in a registry of its
// own: several controllers can live in one process (the tests run two), and
// nothing else registers by accident.
type metrics struct {
	registry     *prometheus.Registry
	decisions    *prometheus.CounterVec
	issued       prometheus.Counter
	signDuration prometheus.Histogram
	issueLatency prometheus.Histogram
	caNotAfter   prometheus.Gauge
	leader       prometheus.Gauge
	deferred     prometheus.Counter
}

func newMetrics(queue workqueue.TypedRateLimitingInterface[string]) *metrics {
	const ns = "csr_agent_controller"
	m := &metrics{
		registry: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "decisions_total",
			Help: "CSRs approved or denied (pending CSRs), or failed (approved CSRs that cannot be signed), by result and condition reason.",
		}, []string{"result", "reason"}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "certificates_issued_total",
			Help: "Certificates written to status.certificate.",
		}),
		signDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "signing_duration_seconds",
			Help: "Time to build and sign one certificate, without API calls.",
			// ECDSA signatures take tens of microseconds, RSA ones up to
			// milliseconds.
			Buckets: prometheus.ExponentialBuckets(0.00002, 4, 8),
		}),
		issueLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "issue_latency_seconds",
			Help: "Time from CSR creation to the certificate being stored (creationTimestamp has a 1 s resolution).",
			// From a quiet cluster (well under a second) to a large rollout.
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
		caNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "ca_not_after_timestamp_seconds",
			Help: "Expiry of the signing CA in use, as a Unix time; alert well before it.",
		}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "decisions_deferred_total",
			Help: "Decisions put off because their requester (a pod, or a user) made more requests than its budget allows; a steady rise points at a pod creating CSRs in a loop.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "leader",
			Help: "1 while this replica leads (approves and signs), 0 while it stands by.",
		}),
	}
	m.registry.MustRegister(m.decisions, m.issued, m.signDuration, m.issueLatency, m.caNotAfter, m.leader, m.deferred,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_depth",
			Help: "CSRs waiting to be processed.",
		}, func() float64 { return float64(queue.Len()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// MetricsHandler serves the controller's metrics in the Prometheus format.
func (c *Controller) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(c.metrics.registry, promhttp.HandlerOpts{Registry: c.metrics.registry})
}
