package controller

import (
	"context"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// factSource reads what the policy needs to know about the requesting pod.
type factSource func(ctx context.Context, who approve.Requester) (approve.Facts, error)

// cachedFacts reads the pod and its namespace's Services from the caches.
func (c *Controller) cachedFacts(_ context.Context, who approve.Requester) (approve.Facts, error) {
	var facts approve.Facts
	pod, err := c.informer.podLister.Pods(who.Namespace).Get(who.PodName)
	switch {
	case err == nil:
		facts.Pod = approve.PodFrom(pod)
	case !apierrors.IsNotFound(err):
		return facts, fmt.Errorf("reading pod %s/%s from the cache: %w", who.Namespace, who.PodName, err)
	}
	svcs, err := c.informer.svcLister.Services(who.Namespace).List(labels.Everything())
	if err != nil {
		return facts, fmt.Errorf("listing services of %s from the cache: %w", who.Namespace, err)
	}
	for _, s := range svcs {
		facts.Services = append(facts.Services, approve.ServiceFrom(s))
	}
	return facts, nil
}

// liveFacts reads the same from the API server. It confirms a denial that
// depends on them: the caches may not have seen a pod or a Service created
// a moment before the CSR.
func (c *Controller) liveFacts(ctx context.Context, who approve.Requester) (approve.Facts, error) {
	var facts approve.Facts
	core := c.opts.Client.CoreV1()
	pod, err := core.Pods(who.Namespace).Get(ctx, who.PodName, metav1.GetOptions{})
	switch {
	case err == nil:
		facts.Pod = approve.PodFrom(pod)
	case !apierrors.IsNotFound(err):
		return facts, fmt.Errorf("reading pod %s/%s: %w", who.Namespace, who.PodName, err)
	}
	svcs, err := core.Services(who.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return facts, fmt.Errorf("listing services of %s: %w", who.Namespace, err)
	}
	for i := range svcs.Items {
		facts.Services = append(facts.Services, approve.ServiceFrom(&svcs.Items[i]))
	}
	return facts, nil
}

// decideWith applies rule to csr with the cached facts and, when the
// outcome is negative and could differ with fresher facts, again with live
// ones. A request that is not from a pod has no facts to read.
func (c *Controller) decideWith(ctx context.Context, csr *certificatesv1.CertificateSigningRequest,
	rule func(*certificatesv1.CertificateSigningRequest, approve.Facts) approve.Decision,
) (approve.Decision, *approve.Requester, error) {
	who, err := approve.RequesterOf(csr)
	if err != nil {
		return rule(csr, approve.Facts{}), nil, nil
	}
	var d approve.Decision
	for _, read := range []factSource{c.cachedFacts, c.liveFacts} {
		facts, err := read(ctx, who)
		if err != nil {
			return d, &who, err
		}
		if d = rule(csr, facts); d.Approve || !approve.DependsOnFacts(d.Reason) {
			break
		}
	}
	return d, &who, nil
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
	d, who, err := c.decideWith(ctx, csr, c.opts.Policy.DecideApproved)
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
