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
	"math/big"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/approve"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var (
	keyRSA2048 = sync.OnceValue(func() crypto.Signer { return must(rsa.GenerateKey(rand.Reader, 2048)) })
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func newP256(t testing.TB) crypto.Signer {
	t.Helper()
	return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
}

// selfSignedAt makes a CA at now.
func selfSignedAt(t testing.TB, now time.Time, opts SelfSignedOptions) *CA {
	t.Helper()
	opts.Clock = clocktesting.NewFakePassiveClock(now)
	ca, err := NewSelfSignedCA(opts)
	if err != nil {
		t.Fatalf("NewSelfSignedCA: %v", err)
	}
	return ca
}

func newIssuer(t testing.TB, now time.Time, opts Options) *Issuer {
	t.Helper()
	opts.Clock = clocktesting.NewFakePassiveClock(now)
	i, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return i
}

var serialCounter int64 = 1000

// makeCert signs tmpl for key with parent/parentKey (self-signed when parent
// is nil) and returns the certificate and its PEM.
func makeCert(t testing.TB, tmpl *x509.Certificate, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, []byte) {
	t.Helper()
	serialCounter++
	tmpl.SerialNumber = big.NewInt(serialCounter)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return must(x509.ParseCertificate(der)), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func caTemplate(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
}

func pkcs8PEM(key crypto.Signer) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(key))})
}

// grantFor is a grant as approve produces it for a P-256 server key.
func grantFor(pub crypto.PublicKey, usages ...certificatesv1.KeyUsage) approve.Grant {
	if len(usages) == 0 {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return approve.Grant{
		PublicKey: pub,
		Names:     approve.Names{DNSNames: []string{"web.shop.svc.cluster.local"}},
		Usages:    usages,
	}
}

func int32p(v int32) *int32 { return &v }
