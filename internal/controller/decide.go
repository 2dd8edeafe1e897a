package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// Facts are read at three levels of freshness. The caches trail the API by
// the watch latency, so they only ever pick the path; what is written is
// decided from the API:
//
//   - cachedFacts: the pod and its namespace's Services from the informers.
//     A request-only denial (a wildcard, a weak key...) needs nothing more.
//   - freshFacts, before any approval or signature: the pod read live (its
//     UID, service account, labels, IPs, deletion) and, read live too,
//     every cached Service that selects the live pod and that the request
//     could name (approve.Service.NamedIn; a PodCertificateRequest names
//     all of them), so a pod deleted, re-created or relabelled, or a
//     Service edited, since the request was created is seen. A Service
//     left out (not cached yet, or not named) can only be missing from the
//     grant, never wrongly in it. One read for a request of pod-IP names,
//     two for a pod behind one Service.
//   - liveFacts, before any denial that depends on the pod or its Services:
//     the pod and a list of every Service of its namespace, so a cache
//     lagging behind a new pod or Service never becomes a denial.

// cachedFacts reads the pod and its namespace's Services from the caches.
func (c *Controller) cachedFacts(who approve.Requester) (approve.Facts, error) {
	var facts approve.Facts
	pod, err := c.informer.cachedPodFacts(who.Namespace, who.PodName)
	if err != nil {
		return facts, fmt.Errorf("reading pod %s/%s from the cache: %w", who.Namespace, who.PodName, err)
	}
	facts.Pod = pod
	svcs, err := c.informer.svcLister.Services(who.Namespace).List(labels.Everything())
	if err != nil {
		return facts, fmt.Errorf("listing services of %s from the cache: %w", who.Namespace, err)
	}
	for _, s := range svcs {
		facts.Services = append(facts.Services, approve.ServiceFrom(s))
	}
	return facts, nil
}

// freshFacts reads the pod live and re-reads, live, the cached Services that
// select it and that named accepts (nil: all).
func (c *Controller) freshFacts(ctx context.Context, who approve.Requester, cached approve.Facts, named func(approve.Service) bool) (approve.Facts, error) {
	var facts approve.Facts
	pod, err := c.livePod(ctx, who)
	if err != nil || pod == nil {
		return facts, err
	}
	facts.Pod = pod
	core := c.opts.Client.CoreV1()
	for _, s := range cached.Services {
		if !s.Selects(pod) || (named != nil && !named(s)) {
			continue
		}
		svc, err := core.Services(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return facts, fmt.Errorf("reading service %s/%s: %w", s.Namespace, s.Name, err)
		}
		facts.Services = append(facts.Services, approve.ServiceFrom(svc))
	}
	return facts, nil
}

// liveFacts reads the pod and every Service of its namespace from the API.
func (c *Controller) liveFacts(ctx context.Context, who approve.Requester) (approve.Facts, error) {
	var facts approve.Facts
	pod, err := c.livePod(ctx, who)
	if err != nil {
		return facts, err
	}
	facts.Pod = pod
	svcs, err := c.opts.Client.CoreV1().Services(who.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return facts, fmt.Errorf("listing services of %s: %w", who.Namespace, err)
	}
	for i := range svcs.Items {
		facts.Services = append(facts.Services, approve.ServiceFrom(&svcs.Items[i]))
	}
	return facts, nil
}

// livePod reads the requesting pod from the API; nil when it does not exist.
func (c *Controller) livePod(ctx context.Context, who approve.Requester) (*approve.Pod, error) {
	pod, err := c.opts.Client.CoreV1().Pods(who.Namespace).Get(ctx, who.PodName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading pod %s/%s: %w", who.Namespace, who.PodName, err)
	}
	return approve.PodFrom(pod), nil
}

// decideWith applies rule to csr: from the caches first, then from fresh
// facts before an approval and from live facts before a denial that depends
// on them (see above). A request that is not from a pod has no facts to read.
func (c *Controller) decideWith(ctx context.Context, csr *certificatesv1.CertificateSigningRequest,
	rule func(*certificatesv1.CertificateSigningRequest, approve.Facts) approve.Decision,
) (approve.Decision, *approve.Requester, error) {
	who, err := approve.RequesterOf(csr)
	if err != nil {
		return rule(csr, approve.Facts{}), nil, nil
	}
	facts, err := c.cachedFacts(who)
	if err != nil {
		return approve.Decision{}, &who, err
	}
	d := rule(csr, facts)
	if !d.Approve && !approve.DependsOnFacts(d.Reason) {
		return d, &who, nil
	}
	if d.Approve {
		if c.afterCachedFacts != nil {
			c.afterCachedFacts(csr)
		}
		dns, ips := approve.RequestedNames(csr)
		named := func(s approve.Service) bool { return s.NamedIn(dns, ips) }
		if facts, err = c.freshFacts(ctx, who, facts, named); err != nil {
			return approve.Decision{}, &who, err
		}
		if d = rule(csr, facts); d.Approve || !approve.DependsOnFacts(d.Reason) {
			return d, &who, nil
		}
	}
	if facts, err = c.liveFacts(ctx, who); err != nil {
		return approve.Decision{}, &who, err
	}
	if d = rule(csr, facts); awaitingPodIPs(csr, d, facts) {
		return approve.Decision{}, &who, fmt.Errorf("pod %s/%s: %w", who.Namespace, who.PodName, errPodIPsNotReported)
	}
	return d, &who, nil
}

// errPodIPsNotReported is retried like any error, and logged quietly.
var errPodIPsNotReported = errors.New("no IPs in the pod's status yet")

// awaitingPodIPs tells whether d denies names of the pod's addresses that
// the pod's status does not show yet. The kubelet hands a container its pod
// IPs (downward API status.podIPs) before it writes them to the Pod object,
// and when many pods start on one node at once that write trails by
// seconds: an agent can ask for its pod-IP names before the API knows them.
// Such a request is retried, not denied; once the IPs are there, the same
// rule decides, so nothing is granted that the pod does not hold.
func awaitingPodIPs(csr *certificatesv1.CertificateSigningRequest, d approve.Decision, facts approve.Facts) bool {
	if d.Approve || (d.Reason != approve.ReasonIPNotAllowed && d.Reason != approve.ReasonDNSNameNotAllowed) {
		return false
	}
	if p := facts.Pod; p == nil || p.Terminating || p.HostNetwork || len(p.PodIPs) > 0 {
		return false
	}
	dns, ips := approve.RequestedNames(csr)
	return len(ips) > 0 || slices.ContainsFunc(dns, func(n string) bool { return strings.Contains(n, ".pod.") })
}

// decide approves or denies a pending CSR, and signs it once approved.
func (c *Controller) decide(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	d, who, err := c.decideWith(ctx, csr, c.opts.Policy.Decide)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	if !d.Approve {
		cond := condition(certificatesv1.CertificateDenied, d, c.now())
		if _, err := c.updateApproval(ctx, csr, cond); err != nil {
			return fmt.Errorf("denying: %w", err)
		}
		c.metrics.decisions.WithLabelValues(resultDenied, d.Reason).Inc()
		c.warn(csr, who, d, "Deny", "certificate request %s denied: %s")
		logger.Info("Denied CSR", "reason", d.Reason, "message", d.Message, "requester", csr.Spec.Username)
		return nil
	}
	approved, err := c.updateApproval(ctx, csr, condition(certificatesv1.CertificateApproved, d, c.now()))
	if err != nil {
		return fmt.Errorf("approving: %w", err)
	}
	c.metrics.decisions.WithLabelValues(resultApproved, d.Reason).Inc()
	logger.V(2).Info("Approved CSR", "requester", csr.Spec.Username)
	// Sign now rather than on the approval's watch event: the grant was
	// computed from the same facts a moment ago, and the round trip through
	// the watch would add latency to every certificate of a burst.
	return c.issue(ctx, approved, d.Grant)
}

// signApproved signs a CSR approved earlier, by this controller or by
// someone else, or fails it when it cannot be signed.
func (c *Controller) signApproved(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	extra, err := c.extraNames(ctx, csr)
	if err != nil {
		return err
	}
	d, who, err := c.decideWith(ctx, csr, func(csr *certificatesv1.CertificateSigningRequest, f approve.Facts) approve.Decision {
		f.Extra = extra
		return c.opts.Policy.DecideApproved(csr, f)
	})
	if err != nil {
		return err
	}
	if d.Approve {
		return c.issue(ctx, csr, d.Grant)
	}
	return c.fail(ctx, csr, who, d)
}

func condition(t certificatesv1.RequestConditionType, d approve.Decision, now time.Time) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{
		Type:           t,
		Status:         corev1.ConditionTrue,
		Reason:         d.Reason,
		Message:        d.Message,
		LastUpdateTime: metav1.NewTime(now),
	}
}

// updateApproval adds cond through the approval subresource. The update
// carries the resourceVersion read from the cache, so a CSR approved or
// denied by someone else meanwhile fails with a conflict and is read again.
func (c *Controller) updateApproval(ctx context.Context, csr *certificatesv1.CertificateSigningRequest,
	cond certificatesv1.CertificateSigningRequestCondition,
) (*certificatesv1.CertificateSigningRequest, error) {
	read := csr.ResourceVersion
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	out, err := c.opts.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	c.written.add(csr.Name, read)
	return out, nil
}

// updateStatus writes csr's status, failing with a conflict if the CSR
// changed since it was read.
func (c *Controller) updateStatus(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	read := csr.ResourceVersion
	if _, err := c.opts.Client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	c.written.add(csr.Name, read)
	return nil
}
