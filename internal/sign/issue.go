package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// Defaults for Options.
const (
	// DefaultMaxExpiration matches approve.DefaultMaxExpiration.
	DefaultMaxExpiration = approve.DefaultMaxExpiration
	// DefaultBackdate is what kube-controller-manager's signer uses. Node
	// clocks differ; a certificate valid only from the signer's "now" is
	// rejected as "not yet valid" by a peer whose clock runs behind.
	DefaultBackdate = 5 * time.Minute
	// DefaultMinValidity is the shortest remaining CA lifetime worth issuing
	// under: a shorter leaf would be renewed again at once, by every pod.
	DefaultMinValidity = 10 * time.Minute
)

// serialBytes is 128 bits from a CSPRNG. Unpredictable serials are what
// defeat chosen-prefix collision attacks on the signature (the CA/Browser
// Forum asks for at least 64 bits); 16 bytes plus DER's sign octet stay
// within RFC 5280's 20-octet limit.
const serialBytes = 16

// Options configure an Issuer. Zero fields take defaults.
type Options struct {
	// MaxExpiration caps the leaf lifetime; configure it as the policy's.
	MaxExpiration time.Duration
	// Backdate sets NotBefore this far before now.
	Backdate time.Duration
	// MinValidity refuses to issue when the CA expires sooner than this.
	MinValidity time.Duration
	Clock       clock.PassiveClock // default the real clock
	Rand        io.Reader          // serial numbers; default crypto/rand
}

func (o *Options) defaults() {
	if o.MaxExpiration == 0 {
		o.MaxExpiration = DefaultMaxExpiration
	}
	if o.Backdate == 0 {
		o.Backdate = DefaultBackdate
	}
	if o.MinValidity == 0 {
		o.MinValidity = DefaultMinValidity
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.MaxExpiration < approve.MinMaxExpiration {
		errs = append(errs, fmt.Errorf("Options.MaxExpiration %s: want at least %s", o.MaxExpiration, approve.MinMaxExpiration))
	}
	if o.Backdate < 0 || o.Backdate > time.Hour {
		errs = append(errs, fmt.Errorf("Options.Backdate %s: want 0 to 1h", o.Backdate))
	}
	if o.MinValidity < 0 || o.MinValidity > o.MaxExpiration {
		errs = append(errs, fmt.Errorf("Options.MinValidity %s: want 0 to MaxExpiration (%s)", o.MinValidity, o.MaxExpiration))
	}
	return errors.Join(errs...)
}

// Issuer builds and signs leaf certificates. It is safe for concurrent use.
type Issuer struct {
	opts Options
}

// New defaults and validates opts.
func New(opts Options) (*Issuer, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("sign options: %w", err)
	}
	return &Issuer{opts: opts}, nil
}

// Template builds the leaf for g under ca, from g alone:
//   - subject: CN only; SANs: exactly g.Names;
//   - KeyUsage digitalSignature, plus keyEncipherment for an RSA key that
//     asked for it (only RSA keys can encipher; TLS 1.2 RSA key exchange
//     needs it);
//   - ExtKeyUsage: server and/or client auth as granted;
//   - basicConstraints cA=false; no other extension;
//   - a random 128-bit serial;
//   - NotBefore = now - Backdate, not before the CA's NotBefore;
//   - NotAfter = the earliest of now + requested, now + MaxExpiration and the
//     CA's NotAfter.
//
// It fails with ErrCAExpired when the CA expires within MinValidity and with
// ErrInvalidGrant for a grant the policy would not have produced.
func (i *Issuer) Template(ca *CA, g approve.Grant) (*x509.Certificate, error) {
	now := i.opts.Clock.Now()
	caCert := ca.Certificate()
	if caCert.NotAfter.Before(now.Add(i.opts.MinValidity)) {
		return nil, fmt.Errorf("%w: %q expires at %s, less than %s from now", ErrCAExpired, caCert.Subject, caCert.NotAfter.UTC(), i.opts.MinValidity)
	}
	lifetime := i.opts.MaxExpiration
	if g.ExpirationSeconds != nil {
		if *g.ExpirationSeconds <= 0 {
			return nil, fmt.Errorf("%w: expirationSeconds %d", ErrInvalidGrant, *g.ExpirationSeconds)
		}
		lifetime = min(lifetime, time.Duration(*g.ExpirationSeconds)*time.Second)
	}
	keyUsage, extKeyUsage, err := usages(g)
	if err != nil {
		return nil, err
	}
	if err := withinConstraints(caCert, g.Names); err != nil {
		return nil, err
	}
	serial, err := randomSerial(i.opts.Rand)
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-i.opts.Backdate)
	if notBefore.Before(caCert.NotBefore) {
		notBefore = caCert.NotBefore
	}
	notAfter := now.Add(lifetime)
	if caCert.NotAfter.Before(notAfter) {
		notAfter = caCert.NotAfter
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: g.Names.CommonName},
		DNSNames:              slices.Clone(g.Names.DNSNames),
		IPAddresses:           cloneIPs(g.Names.IPAddresses),
		URIs:                  cloneURLs(g.Names.URIs),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           extKeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  false,
	}, nil
}

// withinConstraints refuses names the CA's permitted DNS or URI subtrees do
// not cover: such a leaf would fail every verification, so the request is
// better failed with the reason than issued unusable. (IP and excluded
// subtrees are left to verifiers; the CAs this project makes have none.)
func withinConstraints(ca *x509.Certificate, n approve.Names) error {
	inside := func(host string, permitted []string) bool {
		if len(permitted) == 0 {
			return true
		}
		return slices.ContainsFunc(permitted, func(c string) bool {
			c = strings.ToLower(c)
			if strings.HasPrefix(c, ".") {
				return strings.HasSuffix(host, c)
			}
			return host == c || strings.HasSuffix(host, "."+c)
		})
	}
	for _, name := range n.DNSNames {
		if !inside(strings.ToLower(name), ca.PermittedDNSDomains) {
			return fmt.Errorf("%w: DNS name %q is outside the CA's name constraints %q", ErrInvalidGrant, name, ca.PermittedDNSDomains)
		}
	}
	for _, u := range n.URIs {
		if !inside(strings.ToLower(u.Hostname()), ca.PermittedURIDomains) {
			return fmt.Errorf("%w: URI %q is outside the CA's name constraints %q", ErrInvalidGrant, u, ca.PermittedURIDomains)
		}
	}
	return nil
}

func usages(g approve.Grant) (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	_, isRSA := g.PublicKey.(*rsa.PublicKey)
	switch g.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return 0, nil, fmt.Errorf("%w: public key of type %T", ErrInvalidGrant, g.PublicKey)
	}
	ku := x509.KeyUsageDigitalSignature
	var eku []x509.ExtKeyUsage
	for _, u := range g.Usages {
		switch u {
		case certificatesv1.UsageDigitalSignature:
		case certificatesv1.UsageKeyEncipherment:
			if isRSA {
				ku |= x509.KeyUsageKeyEncipherment
			}
		case certificatesv1.UsageServerAuth:
			eku = appendNew(eku, x509.ExtKeyUsageServerAuth)
		case certificatesv1.UsageClientAuth:
			eku = appendNew(eku, x509.ExtKeyUsageClientAuth)
		default:
			return 0, nil, fmt.Errorf("%w: usage %q", ErrInvalidGrant, u)
		}
	}
	if len(eku) == 0 {
		return 0, nil, fmt.Errorf("%w: neither server auth nor client auth", ErrInvalidGrant)
	}
	return ku, eku, nil
}

func appendNew[T comparable](s []T, v T) []T {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func randomSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, serialBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("reading random serial number: %w", err)
	}
	n := new(big.Int).SetBytes(b)
	if n.Sign() == 0 {
		// RFC 5280 requires a positive serial; all-zero output means a broken
		// random source, not bad luck.
		return nil, errors.New("random serial number is zero")
	}
	return n, nil
}

func cloneIPs(ips []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range ips {
		out = append(out, slices.Clone(ip))
	}
	return out
}

func cloneURLs(us []*url.URL) []*url.URL {
	var out []*url.URL
	for _, u := range us {
		c := *u
		out = append(out, &c)
	}
	return out
}

// Issued is a signed leaf.
type Issued struct {
	Leaf *x509.Certificate
	// PEM is the leaf followed by the CA's chain (its signing certificate
	// and intermediates unless they are trust anchors): the value of the
	// CSR's status.certificate.
	PEM []byte
}

// Sign signs tmpl for pub with ca.
func Sign(ca *CA, tmpl *x509.Certificate, pub crypto.PublicKey) (*Issued, error) {
	// The rand argument is ignored by crypto/x509 since Go 1.26.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing signed certificate: %w", err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der}) // writes to a bytes.Buffer cannot fail
	b.Write(ca.chainPEM)
	return &Issued{Leaf: leaf, PEM: b.Bytes()}, nil
}

// Issue builds the template for g and signs it.
func (i *Issuer) Issue(ca *CA, g approve.Grant) (*Issued, error) {
	tmpl, err := i.Template(ca, g)
	if err != nil {
		return nil, err
	}
	return Sign(ca, tmpl, g.PublicKey)
}
