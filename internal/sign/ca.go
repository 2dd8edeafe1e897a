// Package sign is the signer core of csr-agent's controller: the CA it signs
// with, the certificate template built from an approved request, the
// signature itself, and the trust bundle published to clients.
//
// The CA is read from the shape of a kubernetes.io/tls Secret: tls.crt is the
// signing certificate followed by any intermediates, tls.key its private key,
// ca.crt the trust anchors to publish (optional when tls.crt is a self-signed
// root). A certificate is built only from an approve.Grant, never from the
// raw request, so no subject field, extension or name the policy did not
// check can reach it.
//
// Randomness is injected for serial numbers (io.Reader, crypto/rand by
// default). Since Go 1.26 the crypto packages ignore a caller's reader for
// key generation and signatures (GODEBUG cryptocustomrand) and always use the
// system generator, which is what a CA wants; tests that need determinism
// control serials only.
package sign

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/csr-agent/csr-agent/internal/pki"
)

// Errors. Each is wrapped with the detail; test with errors.Is.
var (
	ErrInvalidCA     = errors.New("invalid CA")
	ErrNotCA         = errors.New("certificate is not a CA")
	ErrKeyMismatch   = errors.New("private key does not match the CA certificate")
	ErrCAExpired     = errors.New("CA expired")
	ErrCANotYetValid = errors.New("CA not yet valid")
	ErrUntrustedCA   = errors.New("CA does not chain to the trust bundle")
	ErrInvalidGrant  = errors.New("invalid grant")
	ErrInvalidBundle = errors.New("invalid trust bundle")
)

// Keys of the kubernetes.io/tls Secret holding the CA.
const (
	SecretCertKey = "tls.crt"
	SecretKeyKey  = "tls.key"
	SecretCAKey   = "ca.crt"
)

// PEMs are the CA as stored.
type PEMs struct {
	// Cert is tls.crt: the signing certificate, then its intermediates.
	Cert []byte
	// Key is tls.key: the signing key (PKCS#8, SEC 1 or PKCS#1).
	Key []byte
	// CA is ca.crt: the trust anchors; may be empty when Cert is a
	// self-signed root.
	CA []byte
}

// PEMsFromSecretData reads the keys of a kubernetes.io/tls Secret.
func PEMsFromSecretData(data map[string][]byte) PEMs {
	return PEMs{Cert: data[SecretCertKey], Key: data[SecretKeyKey], CA: data[SecretCAKey]}
}

// SecretData returns p as the data of a kubernetes.io/tls Secret.
func (p PEMs) SecretData() map[string][]byte {
	return map[string][]byte{SecretCertKey: p.Cert, SecretKeyKey: p.Key, SecretCAKey: p.CA}
}

// CA is a validated signing certificate and key. It is immutable.
type CA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	pems     PEMs
	chainPEM []byte // tls.crt less the trust anchors, sent after each leaf
	bundle   []byte // trust anchors, published to clients
	// signingAnchors are the anchors of bundle that cert chains to: what
	// every leaf signed now verifies against (see bundle.go).
	signingAnchors []*x509.Certificate
}

// ParseCA parses and validates a CA as of now: tls.crt's first certificate
// is a CA allowed to sign certificates, tls.key is its key, it is valid now,
// and it chains through the intermediates to ca.crt (or is a self-signed
// root when ca.crt is empty), so the published bundle verifies what is
// issued.
func ParseCA(p PEMs, now time.Time) (*CA, error) {
	certs, err := pki.ParseCertificates(p.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, SecretCertKey, err)
	}
	key, err := pki.ParsePrivateKey(p.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, SecretKeyKey, err)
	}
	c := certs[0]
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, fmt.Errorf("%w: %q has no basicConstraints cA=true", ErrNotCA, c.Subject)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %q lacks keyUsage keyCertSign", ErrNotCA, c.Subject)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(c.PublicKey) {
		return nil, fmt.Errorf("%w: %q", ErrKeyMismatch, c.Subject)
	}
	if now.Before(c.NotBefore) {
		return nil, fmt.Errorf("%w: %q is valid from %s, now is %s", ErrCANotYetValid, c.Subject, c.NotBefore.UTC(), now.UTC())
	}
	if !now.Before(c.NotAfter) {
		return nil, fmt.Errorf("%w: %q expired at %s", ErrCAExpired, c.Subject, c.NotAfter.UTC())
	}
	anchors := certs[:1]
	if len(p.CA) > 0 {
		if anchors, err = pki.ParseCertificates(p.CA); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCA, SecretCAKey, err)
		}
	} else if !selfSigned(c) {
		return nil, fmt.Errorf("%w: %s is required when %q is not a self-signed root", ErrUntrustedCA, SecretCAKey, c.Subject)
	}
	chains, err := verifyChain(c, certs[1:], anchors, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedCA, err)
	}
	return &CA{
		cert:           c,
		key:            key,
		pems:           p,
		chainPEM:       encodeCertificates(chain(certs, anchors)),
		bundle:         encodeCertificates(anchors),
		signingAnchors: chainRoots(chains),
	}, nil
}

// Certificate returns the signing certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// TrustBundle returns the PEM certificates clients should trust (ca.crt, or
// the self-signed root).
func (c *CA) TrustBundle() []byte { return bytes.Clone(c.bundle) }

// PEMs returns the CA as loaded, for storing a generated CA in its Secret.
// It contains the private key.
func (c *CA) PEMs() PEMs {
	return PEMs{Cert: bytes.Clone(c.pems.Cert), Key: bytes.Clone(c.pems.Key), CA: bytes.Clone(c.pems.CA)}
}

// chain is what a client needs between a leaf and its trust anchor: the
// signing certificate and intermediates of tls.crt, less any certificate the
// client already trusts (RFC 8446 4.4.2 lets the root be omitted).
func chain(certs, anchors []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if !slices.ContainsFunc(anchors, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func verifyChain(c *x509.Certificate, intermediates, anchors []*x509.Certificate, now time.Time) ([][]*x509.Certificate, error) {
	opts := x509.VerifyOptions{
		Roots:         x509.NewCertPool(),
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		// The CA signs both server and client certificates.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, a := range anchors {
		opts.Roots.AddCert(a)
	}
	for _, i := range intermediates {
		opts.Intermediates.AddCert(i)
	}
	return c.Verify(opts)
}

func encodeCertificates(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // writes to a bytes.Buffer cannot fail
	}
	return b.Bytes()
}
