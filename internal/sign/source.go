package sign

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/csr-agent/csr-agent/internal/pki"
)

// Source holds the CA in use, swapped whole when its Secret changes, so a
// signature never mixes one CA's certificate with another's key. The zero
// value holds no CA.
type Source struct {
	ca atomic.Pointer[CA]
}

// NewSource returns a Source holding ca.
func NewSource(ca *CA) *Source {
	s := &Source{}
	s.Set(ca)
	return s
}

// Current returns the CA in use, nil when none has been set.
func (s *Source) Current() *CA { return s.ca.Load() }

// Set replaces the CA in use; callers validated it with ParseCA.
func (s *Source) Set(ca *CA) { s.ca.Store(ca) }

// Bundle merges trust bundles for a CA rotation: the certificates of next
// (the new CA's TrustBundle), then those of prev (the bundle published so
// far) not already present, dropping expired certificates. Publishing the
// merge before signing with the new CA, and keeping the old anchors until
// they expire (or the last leaf they signed has), lets every client verify
// leaves from both CAs during the overlap. The output depends only on the
// inputs and now, so re-running it on its own output is a no-op and the
// controller can compare before writing.
//
// Every block must be a CA certificate: anything else in a published trust
// bundle is a mistake to stop at, not to pass on.
func Bundle(now time.Time, prev, next []byte) ([]byte, error) {
	nextCerts, err := pki.ParseCertificates(next)
	if err != nil {
		return nil, fmt.Errorf("%w: new bundle: %w", ErrInvalidBundle, err)
	}
	var prevCerts []*x509.Certificate
	if len(bytes.TrimSpace(prev)) > 0 {
		if prevCerts, err = pki.ParseCertificates(prev); err != nil {
			return nil, fmt.Errorf("%w: previous bundle: %w", ErrInvalidBundle, err)
		}
	}
	out, err := appendLive(nil, nextCerts, now)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: new bundle has no unexpired certificate", ErrInvalidBundle)
	}
	if out, err = appendLive(out, prevCerts, now); err != nil {
		return nil, err
	}
	return encodeCertificates(out), nil
}

// appendLive appends the unexpired certificates of certs not yet in out.
func appendLive(out, certs []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("%w: %q is not a CA", ErrInvalidBundle, c.Subject)
		}
		if now.Before(c.NotAfter) && !containsCert(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, have := range certs {
		if have.Equal(c) {
			return true
		}
	}
	return false
}
