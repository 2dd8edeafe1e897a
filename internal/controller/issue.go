package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// ReasonSigningFailed is the Failed reason of an approved request the
// signer refused for a reason of its own (a grant it could not use).
const ReasonSigningFailed = "SigningFailed"

// errNoCA means no CA is loaded yet; the CSR waits, it is not failed.
var errNoCA = errors.New("no CA loaded")

// issue signs csr for grant with the current CA and stores the
// certificate. A CA that is missing or about to expire is a transient
// problem: the CSR waits for the operator to fix the CA rather than fail.
func (c *Controller) issue(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, grant *approve.Grant) error {
	ca := c.ca.Current()
	if ca == nil {
		return errNoCA
	}
	start := time.Now()
	issued, err := c.opts.Issuer.Issue(ca, *grant)
	c.metrics.signDuration.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, sign.ErrCAExpired):
		return fmt.Errorf("signing: %w", err)
	case err != nil:
		var who *approve.Requester
		if r, rerr := approve.RequesterOf(csr); rerr == nil {
			who = &r
		}
		return c.fail(ctx, csr, who, approve.Decision{Reason: ReasonSigningFailed, Message: err.Error()})
	}
	csr.Status.Certificate = issued.PEM
	if err := c.updateStatus(ctx, csr); err != nil {
		return fmt.Errorf("storing certificate: %w", err)
	}
	c.metrics.issued.Inc()
	c.metrics.issueLatency.Observe(c.now().Sub(csr.CreationTimestamp.Time).Seconds())
	klog.FromContext(ctx).V(2).Info("Issued certificate", "serial", issued.Leaf.SerialNumber.Text(16),
		"notAfter", issued.Leaf.NotAfter, "issuer", issued.Leaf.Issuer.String())
	return nil
}

// fail sets the Failed condition on an approved CSR that will not be
// signed, and tells the pod why.
func (c *Controller) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, who *approve.Requester, d approve.Decision) error {
	csr.Status.Conditions = append(csr.Status.Conditions, condition(certificatesv1.CertificateFailed, d, c.now()))
	if err := c.updateStatus(ctx, csr); err != nil {
		return fmt.Errorf("setting Failed: %w", err)
	}
	c.metrics.decisions.WithLabelValues(resultFailed, d.Reason).Inc()
	c.warn(csr, who, d, "Sign", "approved certificate request %s not signed: %s")
	klog.FromContext(ctx).Info("Failed approved CSR", "reason", d.Reason, "message", d.Message, "requester", csr.Spec.Username)
	return nil
}
