package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/utils/clock"
)

// KeyAlgorithm is the key type of a generated CA.
type KeyAlgorithm string

const (
	ECDSAP256 KeyAlgorithm = "ECDSA-P256"
	ECDSAP384 KeyAlgorithm = "ECDSA-P384"
	RSA3072   KeyAlgorithm = "RSA-3072"
)

// Defaults for SelfSignedOptions.
const (
	DefaultCACommonName = "csr-agent.io/pod CA"
	// DefaultCAValidity is kubeadm's for cluster CAs: a generated CA is for
	// demos and first installs, and an expired CA stops every pod's renewal.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
)

// SelfSignedOptions configure NewSelfSignedCA. Zero fields take defaults.
type SelfSignedOptions struct {
	CommonName   string        // default DefaultCACommonName
	Validity     time.Duration // default DefaultCAValidity
	KeyAlgorithm KeyAlgorithm  // default ECDSAP256
	// Backdate sets NotBefore this far before now, for the same clock skew
	// leaves are backdated for. Default DefaultBackdate.
	Backdate time.Duration
	Clock    clock.PassiveClock // default the real clock
	Rand     io.Reader          // serial numbers; default crypto/rand
	// PermittedDNSDomains and PermittedURIDomains, when set, become a
	// critical X.509 name constraints extension (RFC 5280 4.2.1.10): leaves
	// naming anything outside them do not verify. A verifier that does not
	// understand the extension must reject the chain, since it is critical.
	PermittedDNSDomains []string
	PermittedURIDomains []string
}

func (o *SelfSignedOptions) defaults() {
	if o.CommonName == "" {
		o.CommonName = DefaultCACommonName
	}
	if o.Validity == 0 {
		o.Validity = DefaultCAValidity
	}
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = ECDSAP256
	}
	if o.Backdate == 0 {
		o.Backdate = DefaultBackdate
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
}

func (o *SelfSignedOptions) validate() error {
	var errs []error
	if o.Validity < time.Hour {
		errs = append(errs, fmt.Errorf("SelfSignedOptions.Validity %s: want at least 1h", o.Validity))
	}
	if o.Backdate < 0 || o.Backdate > time.Hour {
		errs = append(errs, fmt.Errorf("SelfSignedOptions.Backdate %s: want 0 to 1h", o.Backdate))
	}
	switch o.KeyAlgorithm {
	case ECDSAP256, ECDSAP384, RSA3072:
	default:
		errs = append(errs, fmt.Errorf("SelfSignedOptions.KeyAlgorithm %q: want %s, %s or %s", o.KeyAlgorithm, ECDSAP256, ECDSAP384, RSA3072))
	}
	return errors.Join(errs...)
}

// NewSelfSignedCA generates a key and a self-signed root CA certificate. The
// CA may sign only leaves (pathLen 0). Store its PEMs() in the CA Secret.
func NewSelfSignedCA(opts SelfSignedOptions) (*CA, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("self-signed CA options: %w", err)
	}
	key, err := generateKey(opts.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("generating %s CA key: %w", opts.KeyAlgorithm, err)
	}
	serial, err := randomSerial(opts.Rand)
	if err != nil {
		return nil, err
	}
	now := opts.Clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: opts.CommonName},
		NotBefore:                   now.Add(-opts.Backdate),
		NotAfter:                    now.Add(opts.Validity),
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		PermittedDNSDomains:         opts.PermittedDNSDomains,
		PermittedURIDomains:         opts.PermittedURIDomains,
		PermittedDNSDomainsCritical: len(opts.PermittedDNSDomains) > 0 || len(opts.PermittedURIDomains) > 0,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating self-signed CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding CA key: %w", err)
	}
	return ParseCA(PEMs{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, now)
}

func generateKey(alg KeyAlgorithm) (crypto.Signer, error) {
	switch alg {
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}
