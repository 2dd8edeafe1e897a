package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// reconcilePodCertificate decides a pending PodCertificateRequest and
// writes the outcome in one status update: Issued with the chain, or Denied
// or Failed with the reason. Any error is transient and retried; only a
// policy decision denies or fails a request.
func (c *Controller) reconcilePodCertificate(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key this controller queued
	}
	pcr, err := c.pcr.lister.PodCertificateRequests(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if finished(pcr) || pcr.Spec.SignerName != c.signer || c.pcr.written.superseded(key, pcr.ResourceVersion) {
		return nil
	}
	// The same per-pod budget as CSRs: a pod spec can declare many
	// podCertificate volumes, each a request the kubelet makes.
	if wait := c.budgets.take(podKey(pcr.Spec.PodUID), c.now()); wait > 0 {
		c.metrics.deferred.Inc()
		c.pcr.queue.AddAfter(key, wait)
		return nil
	}
	pcr = pcr.DeepCopy()
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("podCertificateRequest", key, "pod", klog.KRef(ns, pcr.Spec.PodName)))
	d, err := c.decidePodCertificate(ctx, pcr)
	if err != nil {
		return err
	}
	if !d.Approve {
		if d.Reason == approve.ReasonNoNames && c.now().Sub(pcr.CreationTimestamp.Time) < noNamesGrace {
			return fmt.Errorf("%w: %s", errNoNamesYet, d.Message)
		}
		return c.finishPodCertificate(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeDenied, d)
	}
	return c.issuePodCertificate(ctx, pcr, d.Grant)
}

// noNamesGrace is how long a request for a pod with no name yet waits
// before it is denied. A denial is final for the pod (the kubelet does not
// ask again, and the pod never starts), while the usual cause is transient:
// the pod's Service is applied a moment after its Deployment. The kubelet
// asks before the pod has an IP, so a pod that only has pod-IP names waits
// in vain and is denied; the API's cleaner would delete the request after
// 15 minutes anyway.
const noNamesGrace = 5 * time.Minute

// errNoNamesYet retries a request for a pod that has no name yet.
var errNoNamesYet = errors.New("pod has no name to certify yet")

// decidePodCertificate applies the policy to facts read right before
// signing, as the CSR path does (decide.go): the pod and the Services that
// select it from the API server, since a pod deleted, re-created or
// relabelled a moment ago must not get a certificate nor keep a name, and
// the service account's UID (serviceAccountUID). A denial the Services could explain (a hint
// naming a Service the cache has not seen yet, no name at all) is
// confirmed with every Service of the namespace read live.
func (c *Controller) decidePodCertificate(ctx context.Context, pcr *certificatesv1.PodCertificateRequest) (approve.Decision, error) {
	who := approve.Requester{Namespace: pcr.Namespace, ServiceAccount: pcr.Spec.ServiceAccountName, PodName: pcr.Spec.PodName, PodUID: pcr.Spec.PodUID}
	cached, err := c.cachedFacts(who)
	if err != nil {
		return approve.Decision{}, err
	}
	fresh, err := c.freshFacts(ctx, who, cached, nil)
	if err != nil {
		return approve.Decision{}, err
	}
	facts := approve.PodCertificateFacts{Facts: fresh}
	if facts.ServiceAccountUID, err = c.serviceAccountUID(ctx, pcr); err != nil {
		return approve.Decision{}, err
	}
	d := c.opts.Policy.DecidePodCertificate(pcr, facts)
	if d.Approve || (d.Reason != approve.ReasonInvalidUserAnnotations && d.Reason != approve.ReasonNoNames) {
		return d, nil
	}
	live, err := c.liveFacts(ctx, who)
	if err != nil {
		return approve.Decision{}, err
	}
	facts.Services = live.Services
	return c.opts.Policy.DecidePodCertificate(pcr, facts), nil
}

// serviceAccountUID is the UID of the service account pcr names, or ""
// when it does not exist, as far as the decision needs it.
//
// The cache answers only when it shows exactly the UID the request names;
// anything else (not cached yet, another UID) is read live, so a cache
// lagging behind a new or re-created service account neither denies a
// request nor lets an old UID through. Trusting an agreeing cache is safe
// because the UID is not what the certificate is for: the API server
// admitted the request only while that UID was the service account's
// (NodeRestriction), and the pod, read live right before it, still exists
// with the request's pod UID and runs under that service account's name,
// which is what the certificate carries (its SPIFFE ID).
// What the cache can miss is a deletion after it last heard from the API
// server, the race a live read has too with a deletion right after it.
// This saves a read per request, a third of the API requests of a burst of
// pod certificate requests besides their creation.
func (c *Controller) serviceAccountUID(ctx context.Context, pcr *certificatesv1.PodCertificateRequest) (types.UID, error) {
	ns, name := pcr.Namespace, pcr.Spec.ServiceAccountName
	if sa, err := c.pcr.saLister.ServiceAccounts(ns).Get(name); err == nil && sa.UID == pcr.Spec.ServiceAccountUID {
		return sa.UID, nil
	}
	sa, err := c.opts.Client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading service account %s/%s: %w", ns, name, err)
	}
	return sa.UID, nil
}

// issuePodCertificate signs and stores the certificate. A CA that is
// missing, not yet valid or too close to expiry for the API's one-hour
// minimum is transient: the request waits for the CA to be fixed.
func (c *Controller) issuePodCertificate(ctx context.Context, pcr *certificatesv1.PodCertificateRequest, grant *approve.Grant) error {
	ca := c.ca.Current()
	if ca == nil {
		return errNoCA
	}
	start := time.Now()
	cert, err := c.opts.Issuer.IssuePodCertificate(ca, *grant, c.opts.Jitter())
	c.metrics.signDuration.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, sign.ErrCAExpired), errors.Is(err, sign.ErrCANotYetValid):
		return fmt.Errorf("signing: %w", err)
	case err != nil:
		return c.finishPodCertificate(ctx, pcr, certificatesv1.PodCertificateRequestConditionTypeFailed,
			approve.Decision{Reason: ReasonSigningFailed, Message: err.Error()})
	}
	pcr.Status = certificatesv1.PodCertificateRequestStatus{
		Conditions:       []metav1.Condition{pcrCondition(certificatesv1.PodCertificateRequestConditionTypeIssued, approve.ReasonApproved, "issued by csr-agent", metav1.NewTime(c.now()))},
		CertificateChain: string(cert.PEM),
		NotBefore:        &metav1.Time{Time: cert.Leaf.NotBefore},
		BeginRefreshAt:   &metav1.Time{Time: cert.BeginRefreshAt},
		NotAfter:         &metav1.Time{Time: cert.Leaf.NotAfter},
	}
	if err := c.updatePodCertificateStatus(ctx, pcr); err != nil {
		return fmt.Errorf("storing certificate: %w", err)
	}
	c.metrics.pcrDecisions.WithLabelValues(resultApproved, approve.ReasonApproved).Inc()
	c.metrics.pcrIssued.Inc()
	c.metrics.pcrIssueLatency.Observe(c.now().Sub(pcr.CreationTimestamp.Time).Seconds())
	klog.FromContext(ctx).V(2).Info("Issued pod certificate", "serial", cert.Leaf.SerialNumber.Text(16),
		"notAfter", cert.Leaf.NotAfter, "beginRefreshAt", cert.BeginRefreshAt)
	return nil
}

// finishPodCertificate sets the Denied or Failed condition and tells the
// pod why.
func (c *Controller) finishPodCertificate(ctx context.Context, pcr *certificatesv1.PodCertificateRequest, condType string, d approve.Decision) error {
	pcr.Status = certificatesv1.PodCertificateRequestStatus{
		Conditions: []metav1.Condition{pcrCondition(condType, d.Reason, d.Message, metav1.NewTime(c.now()))},
	}
	if err := c.updatePodCertificateStatus(ctx, pcr); err != nil {
		return fmt.Errorf("setting %s: %w", condType, err)
	}
	result, action := resultDenied, "Deny"
	if condType == certificatesv1.PodCertificateRequestConditionTypeFailed {
		result, action = resultFailed, "Sign"
	}
	c.metrics.pcrDecisions.WithLabelValues(result, d.Reason).Inc()
	pod := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pcr.Namespace, Name: pcr.Spec.PodName, UID: pcr.Spec.PodUID}
	c.recorder.Eventf(pod, pcr, corev1.EventTypeWarning, d.Reason, action, "%s",
		truncateNote(fmt.Sprintf("pod certificate request %s %s: %s", pcr.Name, condType, d.Message)))
	klog.FromContext(ctx).Info("Pod certificate not issued", "condition", condType, "reason", d.Reason, "message", d.Message)
	return nil
}

// pcrCondition is a terminal condition; the API requires status True and a
// lastTransitionTime.
func pcrCondition(condType, reason, message string, now metav1.Time) metav1.Condition {
	return metav1.Condition{Type: condType, Status: metav1.ConditionTrue, Reason: reason, Message: message, LastTransitionTime: now}
}

// updatePodCertificateStatus is the decision's one write. It carries the
// resourceVersion read from the cache, and the API refuses to change a
// finished request's status at all: two replicas that both believe they
// lead cannot both issue.
func (c *Controller) updatePodCertificateStatus(ctx context.Context, pcr *certificatesv1.PodCertificateRequest) error {
	read := pcr.ResourceVersion
	if _, err := c.opts.Client.CertificatesV1().PodCertificateRequests(pcr.Namespace).UpdateStatus(ctx, pcr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.pcr.written.add(pcr.Namespace+"/"+pcr.Name, read)
	return nil
}
