package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/sign"
)

// Annotations of the published ClusterTrustBundle. The bundle is where both
// live because it exists whatever the CA's source (Secret or CA_DIR), every
// replica can read it, and the state is written in the same update as the
// bundle it describes, so they never disagree.
const (
	// AnnotationRetiredAnchors is the operator's retirement marker: SHA-256
	// fingerprints (sign.ParseFingerprints) of trust anchors to drop from
	// the bundle at once and never publish again, even if the CA source
	// still lists them. An anchor a signing CA chains to is never dropped:
	// the controller refuses, with an error, a Warning Event and
	// csr_agent_controller_trust_anchor_retirement_refused.
	AnnotationRetiredAnchors = "csr-agent.io/retired-anchors"
	// AnnotationAnchorState is the controller's memory of each published
	// anchor (sign.AnchorState as JSON, keyed by fingerprint): which ones
	// signing chains to, and when signing switched away from the others and
	// so when they leave. Written by the controller only.
	AnnotationAnchorState = "csr-agent.io/anchor-state"
)

// Reasons of the Events about the trust bundle.
const (
	ReasonAnchorRetiring        = "TrustAnchorRetiring"
	ReasonAnchorDropped         = "TrustAnchorDropped"
	ReasonRetirementRefused     = "RetirementRefused"
	ReasonInvalidRetiredAnchors = "InvalidRetiredAnchors"
	ReasonInvalidAnchorState    = "InvalidAnchorState"
)

// retireMetrics describe the anchors of the published bundle.
type retireMetrics struct {
	anchors  *prometheus.GaugeVec
	nextDrop prometheus.Gauge
	dropped  *prometheus.CounterVec
	refused  *prometheus.GaugeVec
}

func newRetireMetrics(reg prometheus.Registerer) *retireMetrics {
	const ns = "csr_agent_controller"
	m := &retireMetrics{
		anchors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "trust_anchors",
			Help: "Anchors of the published trust bundle by state: signing (the signing CA chains to it), staged (published ahead of a rotation), retiring (signing switched away; dropped once its last leaf expired).",
		}, []string{"state"}),
		nextDrop: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "trust_anchor_next_drop_timestamp_seconds",
			Help: "When the next retiring anchor leaves the published bundle (its last leaf has expired), as a Unix time; 0 when none is retiring.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "trust_anchors_dropped_total",
			Help: "Anchors dropped from the published trust bundle, by reason: Expired, LeavesExpired, MarkedRetired.",
		}, []string{"reason"}),
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "trust_anchor_retirement_refused",
			Help: "Retirement marker entries not applied at the last publish, by reason: SigningAnchor (the signing CA chains to it), Invalid (the marker is malformed and ignored whole). Alert on any non-zero value.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.anchors, m.nextDrop, m.dropped, m.refused)
	return m
}

// bundleInput reads the marker and the persisted state from the published
// bundle. A malformed value is reported and ignored, which keeps anchors
// rather than dropping them: a malformed marker retires nothing, a lost
// state restarts the retirement clocks of anchors no longer in the source.
func (c *Controller) bundleInput(ctx context.Context, ctb *certificatesv1.ClusterTrustBundle, ca *sign.CA) sign.BundleInput {
	logger := klog.FromContext(ctx)
	in := sign.BundleInput{
		Now: c.now().UTC(), Published: []byte(ctb.Spec.TrustBundle), Source: ca, Signing: []*sign.CA{c.ca.Current()},
		Overlap: c.opts.Issuer.RetirementOverlap(),
	}
	invalid := 0.0
	if v, ok := ctb.Annotations[AnnotationRetiredAnchors]; ok {
		retired, err := sign.ParseFingerprints(v)
		if err != nil {
			invalid = 1
			logger.Error(err, "Ignoring the retirement marker: no anchor is retired until it is fixed",
				"clusterTrustBundle", ctb.Name, "annotation", AnnotationRetiredAnchors)
			c.bundleEvent(ctb, corev1.EventTypeWarning, ReasonInvalidRetiredAnchors,
				"annotation %s ignored, no anchor retired: %v", AnnotationRetiredAnchors, err)
		}
		in.Retired = retired
	}
	c.retire.refused.WithLabelValues("Invalid").Set(invalid)
	if v, ok := ctb.Annotations[AnnotationAnchorState]; ok {
		if err := json.Unmarshal([]byte(v), &in.State); err != nil {
			in.State = nil
			logger.Error(err, "Discarding unreadable trust anchor state; retiring anchors restart their wait",
				"clusterTrustBundle", ctb.Name, "annotation", AnnotationAnchorState)
			c.bundleEvent(ctb, corev1.EventTypeWarning, ReasonInvalidAnchorState,
				"annotation %s unreadable, replaced: %v", AnnotationAnchorState, err)
		}
	}
	return in
}

// setAnchorState stores the plan's state in ctb's annotations and reports
// whether that changed them.
func setAnchorState(ctb *certificatesv1.ClusterTrustBundle, plan *sign.BundlePlan) (bool, error) {
	before := maps.Clone(ctb.Annotations)
	if len(plan.State) == 0 {
		delete(ctb.Annotations, AnnotationAnchorState)
	} else {
		b, err := json.Marshal(plan.State)
		if err != nil {
			return false, fmt.Errorf("encoding trust anchor state: %w", err)
		}
		if ctb.Annotations == nil {
			ctb.Annotations = map[string]string{}
		}
		ctb.Annotations[AnnotationAnchorState] = string(b)
	}
	return !maps.Equal(before, ctb.Annotations), nil
}

// reportPlan tells what a published plan changed: anchors that started
// retiring or were dropped (logs, Events, metrics), and retirements
// refused, which are repeated at every publish until the marker is fixed.
func (c *Controller) reportPlan(ctx context.Context, ctb *certificatesv1.ClusterTrustBundle, in sign.BundleInput, plan *sign.BundlePlan) {
	logger := klog.FromContext(ctx).WithValues("clusterTrustBundle", ctb.Name)
	for fp, st := range plan.State {
		if st.DropAfter != nil && in.State[fp].DropAfter == nil {
			logger.Info("Trust anchor retiring: no CA we sign with chains to it", "fingerprint", fp, "subject", st.Subject,
				"signingStopped", st.SigningStopped, "dropAfter", st.DropAfter)
			c.bundleEvent(ctb, corev1.EventTypeNormal, ReasonAnchorRetiring,
				"anchor %q (sha256 %s) is no longer signed with; it leaves the bundle at %s, when the last certificate chaining to it has expired, or at once if listed in %s",
				st.Subject, fp, st.DropAfter.UTC().Format(time.RFC3339), AnnotationRetiredAnchors)
		}
	}
	for _, d := range plan.Dropped {
		fp := sign.Fingerprint(d.Cert)
		logger.Info("Dropped trust anchor", "fingerprint", fp, "subject", d.Cert.Subject.String(), "reason", string(d.Reason))
		c.bundleEvent(ctb, corev1.EventTypeNormal, ReasonAnchorDropped, "anchor %q (sha256 %s) dropped: %s", d.Cert.Subject.String(), fp, d.Reason)
		c.retire.dropped.WithLabelValues(string(d.Reason)).Inc()
	}
	for _, r := range plan.Refused {
		fp := sign.Fingerprint(r)
		logger.Error(errRetireSigning, "Refusing to retire a trust anchor", "fingerprint", fp, "subject", r.Subject.String(),
			"annotation", AnnotationRetiredAnchors)
		c.bundleEvent(ctb, corev1.EventTypeWarning, ReasonRetirementRefused,
			"anchor %q (sha256 %s) is listed in %s but the signing CA chains to it: switch signing to another CA first; it stays published",
			r.Subject.String(), fp, AnnotationRetiredAnchors)
	}
	c.retire.refused.WithLabelValues("SigningAnchor").Set(float64(len(plan.Refused)))
	c.retire.anchors.WithLabelValues("signing").Set(float64(plan.Signing))
	c.retire.anchors.WithLabelValues("staged").Set(float64(plan.Staged))
	c.retire.anchors.WithLabelValues("retiring").Set(float64(plan.Retiring))
	var next time.Time
	for _, st := range plan.State {
		if st.DropAfter != nil && st.DropAfter.After(in.Now) && (next.IsZero() || st.DropAfter.Before(next)) {
			next = *st.DropAfter
		}
	}
	if next.IsZero() {
		c.retire.nextDrop.Set(0)
	} else {
		c.retire.nextDrop.Set(float64(next.Unix()))
	}
}

// errRetireSigning is logged when the marker names a signing anchor.
var errRetireSigning = fmt.Errorf("the signing CA chains to this anchor")

func (c *Controller) bundleEvent(ctb *certificatesv1.ClusterTrustBundle, kind, reason, format string, args ...any) {
	if ctb.UID == "" {
		return // not created yet: nothing to attach the Event to
	}
	note := fmt.Sprintf(format, args...)
	if len(note) > maxNote {
		note = note[:maxNote-3] + "..."
	}
	c.recorder.Eventf(ctb, nil, kind, reason, "Publish", "%s", note)
}

// scheduleBundleChange queues a sync for when the bundle would change with
// nothing else changing: an anchor's last leaf expiring.
func (c *Controller) scheduleBundleChange(plan *sign.BundlePlan) {
	if plan.NextChange.IsZero() {
		return
	}
	// A second late rather than early: the plan changes at NextChange, not
	// just before it.
	c.caSync.queue.AddAfter(caKey, plan.NextChange.Sub(c.now())+time.Second)
}
