package sign

import (
	"fmt"
	"time"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// Limits kube-apiserver enforces on the status of a PodCertificateRequest
// (certificates validation, ValidatePodCertificateRequestStatusUpdate).
const (
	// PodCertificateMinLifetime: notAfter - notBefore must be at least this.
	PodCertificateMinLifetime = time.Hour
	// podCertificateNotBeforeSkew: notBefore must be within this of the API
	// server's clock when the status is written.
	podCertificateNotBeforeSkew = 5 * time.Minute
	// podCertificateRefreshMargin: beginRefreshAt must be at least this
	// after notBefore and before notAfter.
	podCertificateRefreshMargin = 10 * time.Minute
)

// PodCertificateBackdate is how far before now a pod certificate's
// notBefore is set. Less than the CSR path's DefaultBackdate: the API server
// refuses a notBefore more than 5 minutes from its own clock, and the
// status write happens a moment after signing; 2 minutes covers ordinary
// clock skew between nodes and leaves 3 for skew between the controller and
// the API server.
const PodCertificateBackdate = 2 * time.Minute

// Refresh window, as fractions of the lifetime: the kubelet starts
// refreshing at beginRefreshAt, drawn per certificate in [70 %, 90 %] so the
// pods of one rollout, issued together, do not all come back together.
const (
	refreshFrom = 0.7
	refreshSpan = 0.2
)

// PodCertificate is a signed pod certificate and the times its
// PodCertificateRequest status carries.
type PodCertificate struct {
	*Issued
	// BeginRefreshAt is when the kubelet should start refreshing.
	BeginRefreshAt time.Time
}

// IssuePodCertificate signs g for a PodCertificateRequest. The template is
// Template's (names, usages, serial: one implementation for both paths);
// only the validity differs, to meet the API's rules for this status:
//
//   - notBefore = now - PodCertificateBackdate, not before the CA's;
//   - notAfter = notBefore + the earliest of g.ExpirationSeconds
//     (spec.maxExpirationSeconds) and MaxExpiration, but never less than the
//     API's minimum of PodCertificateMinLifetime, and not after the CA's
//     notAfter. Measured from notBefore, not from now: the API bounds
//     notAfter - notBefore by maxExpirationSeconds, backdating included;
//   - a CA that cannot cover PodCertificateMinLifetime fails with
//     ErrCAExpired (transient: the request waits for a new CA).
//
// jitter, in [0, 1), places BeginRefreshAt in the refresh window.
func (i *Issuer) IssuePodCertificate(ca *CA, g approve.Grant, jitter float64) (*PodCertificate, error) {
	if g.ExpirationSeconds == nil || time.Duration(*g.ExpirationSeconds)*time.Second < PodCertificateMinLifetime {
		return nil, fmt.Errorf("%w: maxExpirationSeconds %v is below the API's minimum %s", ErrInvalidGrant, g.ExpirationSeconds, PodCertificateMinLifetime)
	}
	tmpl, err := i.Template(ca, g)
	if err != nil {
		return nil, err
	}
	now := i.opts.Clock.Now()
	caCert := ca.Certificate()
	notBefore := now.Add(-PodCertificateBackdate)
	if notBefore.Before(caCert.NotBefore) {
		notBefore = caCert.NotBefore
	}
	if notBefore.After(now.Add(podCertificateNotBeforeSkew)) {
		return nil, fmt.Errorf("%w: %q is valid from %s", ErrCANotYetValid, caCert.Subject, caCert.NotBefore.UTC())
	}
	lifetime := max(min(time.Duration(*g.ExpirationSeconds)*time.Second, i.opts.MaxExpiration), PodCertificateMinLifetime)
	notAfter := notBefore.Add(lifetime)
	if caCert.NotAfter.Before(notAfter) {
		notAfter = caCert.NotAfter
	}
	if notAfter.Sub(notBefore) < PodCertificateMinLifetime {
		return nil, fmt.Errorf("%w: %q expires at %s, too soon for a pod certificate of at least %s", ErrCAExpired, caCert.Subject, caCert.NotAfter.UTC(), PodCertificateMinLifetime)
	}
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	issued, err := Sign(ca, tmpl, g.PublicKey)
	if err != nil {
		return nil, err
	}
	return &PodCertificate{Issued: issued, BeginRefreshAt: BeginRefreshAt(issued.Leaf.NotBefore, issued.Leaf.NotAfter, jitter)}, nil
}

// BeginRefreshAt places the refresh point at 70 % + 20 % × jitter of the
// lifetime, kept at least 10 minutes from either end as the API requires (a
// one-hour certificate has only 6 minutes after 90 %). It is rounded to the
// second, the resolution at which the API stores it.
func BeginRefreshAt(notBefore, notAfter time.Time, jitter float64) time.Time {
	jitter = min(max(jitter, 0), 1)
	lifetime := notAfter.Sub(notBefore)
	t := notBefore.Add(time.Duration(float64(lifetime) * (refreshFrom + refreshSpan*jitter))).Round(time.Second)
	if latest := notAfter.Add(-podCertificateRefreshMargin); t.After(latest) {
		t = latest
	}
	if earliest := notBefore.Add(podCertificateRefreshMargin); t.Before(earliest) {
		t = earliest
	}
	return t
}
