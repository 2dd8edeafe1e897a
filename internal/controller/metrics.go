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

// Values of the path label: which API a request came through.
const (
	pathCSR            = "csr"
	pathPodCertificate = "podcertificaterequest"
)

// metrics are the controller's Prometheus metrics, in a registry of its
// own: several controllers can live in one process (the tests run two), and
// nothing else registers by accident.
type metrics struct {
	registry *prometheus.Registry
	// decisions, issued and issueLatency are the CSR path's series; the
	// pcr* ones the PodCertificateRequest path's, of the same metrics.
	decisions       *prometheus.CounterVec
	pcrDecisions    *prometheus.CounterVec
	issued          prometheus.Counter
	pcrIssued       prometheus.Counter
	signDuration    prometheus.Histogram
	issueLatency    prometheus.Observer
	pcrIssueLatency prometheus.Observer
	caNotAfter      prometheus.Gauge
	leader          prometheus.Gauge
	deferred        prometheus.Counter
}

func newMetrics(queue, pcrQueue workqueue.TypedRateLimitingInterface[string]) *metrics {
	const ns = "csr_agent_controller"
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "decisions_total",
		Help: "Requests approved or denied (pending CSRs, PodCertificateRequests), or failed (approved CSRs or PodCertificateRequests that cannot be signed), by path, result and condition reason.",
	}, []string{"path", "result", "reason"})
	issued := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Name: "certificates_issued_total",
		Help: "Certificates written to the status of a CSR or PodCertificateRequest, by path.",
	}, []string{"path"})
	issueLatency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Name: "issue_latency_seconds",
		Help: "Time from request creation to the certificate being stored, by path (creationTimestamp has a 1 s resolution).",
		// From a quiet cluster (well under a second) to a large rollout.
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
	}, []string{"path"})
	m := &metrics{
		registry:        prometheus.NewRegistry(),
		decisions:       decisions.MustCurryWith(prometheus.Labels{"path": pathCSR}),
		pcrDecisions:    decisions.MustCurryWith(prometheus.Labels{"path": pathPodCertificate}),
		issued:          issued.WithLabelValues(pathCSR),
		pcrIssued:       issued.WithLabelValues(pathPodCertificate),
		issueLatency:    issueLatency.WithLabelValues(pathCSR),
		pcrIssueLatency: issueLatency.WithLabelValues(pathPodCertificate),
		signDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "signing_duration_seconds",
			Help: "Time to build and sign one certificate, without API calls.",
			// ECDSA signatures take tens of microseconds, RSA ones up to
			// milliseconds.
			Buckets: prometheus.ExponentialBuckets(0.00002, 4, 8),
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
	m.registry.MustRegister(decisions, issued, m.signDuration, issueLatency, m.caNotAfter, m.leader, m.deferred,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_depth", ConstLabels: prometheus.Labels{"path": pathCSR},
			Help: "Requests waiting to be processed, by path.",
		}, func() float64 { return float64(queue.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_depth", ConstLabels: prometheus.Labels{"path": pathPodCertificate},
			Help: "Requests waiting to be processed, by path.",
		}, func() float64 { return float64(pcrQueue.Len()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// MetricsHandler serves the controller's metrics in the Prometheus format.
func (c *Controller) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(c.metrics.registry, promhttp.HandlerOpts{Registry: c.metrics.registry})
}
