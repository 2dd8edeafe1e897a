package sign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/csr-agent/csr-agent/internal/pki"
)

func TestParseCAAcceptsUsableCAs(t *testing.T) {
	ecKey := newP256(t).(*ecdsa.PrivateKey)
	ecCert, ecPEM := makeCert(t, caTemplate("ec", t0.Add(-time.Hour), t0.Add(time.Hour)), ecKey, nil, nil)
	rsaKey := keyRSA2048().(*rsa.PrivateKey)
	_, rsaPEM := makeCert(t, caTemplate("rsa", t0.Add(-time.Hour), t0.Add(time.Hour)), rsaKey, nil, nil)
	interKey := newP256(t)
	_, interPEM := makeCert(t, caTemplate("intermediate", t0.Add(-time.Hour), t0.Add(time.Hour)), interKey, ecCert, ecKey)

	tests := []struct {
		name       string
		pems       PEMs
		wantBundle []byte
		wantChain  int // certificates sent after each leaf
	}{
		{"self-signed, PKCS#8 key, no ca.crt", PEMs{Cert: ecPEM, Key: pkcs8PEM(ecKey)}, ecPEM, 0},
		{"self-signed, SEC 1 key, ca.crt itself", PEMs{Cert: ecPEM, Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: must(x509.MarshalECPrivateKey(ecKey))}), CA: ecPEM}, ecPEM, 0},
		{"self-signed RSA, PKCS#1 key", PEMs{Cert: rsaPEM, Key: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})}, rsaPEM, 0},
		{"intermediate under ca.crt", PEMs{Cert: interPEM, Key: pkcs8PEM(interKey), CA: ecPEM}, ecPEM, 1},
		{"intermediate with its chain in tls.crt", PEMs{Cert: append(bytes.Clone(interPEM), ecPEM...), Key: pkcs8PEM(interKey), CA: ecPEM}, ecPEM, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := ParseCA(tt.pems, t0)
			if err != nil {
				t.Fatalf("ParseCA: %v", err)
			}
			if !bytes.Equal(ca.TrustBundle(), tt.wantBundle) {
				t.Errorf("TrustBundle =\n%s\nwant\n%s", ca.TrustBundle(), tt.wantBundle)
			}
			var got int
			if len(ca.chainPEM) > 0 {
				got = len(must(pki.ParseCertificates(ca.chainPEM)))
			}
			if got != tt.wantChain {
				t.Errorf("chain has %d certificates, want %d", got, tt.wantChain)
			}
		})
	}
}

func TestParseCARejectsWhatCannotSign(t *testing.T) {
	key := newP256(t)
	_, caPEM := makeCert(t, caTemplate("ca", t0.Add(-time.Hour), t0.Add(time.Hour)), key, nil, nil)
	leafTmpl := caTemplate("leaf", t0.Add(-time.Hour), t0.Add(time.Hour))
	leafTmpl.IsCA, leafTmpl.KeyUsage = false, x509.KeyUsageDigitalSignature
	_, leafPEM := makeCert(t, leafTmpl, key, nil, nil)
	noCertSign := caTemplate("no-certsign", t0.Add(-time.Hour), t0.Add(time.Hour))
	noCertSign.KeyUsage = x509.KeyUsageDigitalSignature
	_, noCertSignPEM := makeCert(t, noCertSign, key, nil, nil)
	_, expiredPEM := makeCert(t, caTemplate("expired", t0.Add(-2*time.Hour), t0.Add(-time.Hour)), key, nil, nil)
	_, futurePEM := makeCert(t, caTemplate("future", t0.Add(time.Hour), t0.Add(2*time.Hour)), key, nil, nil)
	otherKey := newP256(t)
	otherCert, otherPEM := makeCert(t, caTemplate("other root", t0.Add(-time.Hour), t0.Add(time.Hour)), otherKey, nil, nil)
	interKey := newP256(t)
	_, interPEM := makeCert(t, caTemplate("intermediate", t0.Add(-time.Hour), t0.Add(time.Hour)), interKey, otherCert, otherKey)

	tests := []struct {
		name string
		pems PEMs
		want error
	}{
		{"not a CA", PEMs{Cert: leafPEM, Key: pkcs8PEM(key)}, ErrNotCA},
		{"CA without keyCertSign", PEMs{Cert: noCertSignPEM, Key: pkcs8PEM(key)}, ErrNotCA},
		{"key of another CA", PEMs{Cert: caPEM, Key: pkcs8PEM(otherKey)}, ErrKeyMismatch},
		{"expired", PEMs{Cert: expiredPEM, Key: pkcs8PEM(key)}, ErrCAExpired},
		{"not yet valid", PEMs{Cert: futurePEM, Key: pkcs8PEM(key)}, ErrCANotYetValid},
		{"intermediate without ca.crt", PEMs{Cert: interPEM, Key: pkcs8PEM(interKey)}, ErrUntrustedCA},
		{"intermediate under another root", PEMs{Cert: interPEM, Key: pkcs8PEM(interKey), CA: caPEM}, ErrUntrustedCA},
		{"self-signed CA with unrelated ca.crt", PEMs{Cert: caPEM, Key: pkcs8PEM(key), CA: otherPEM}, ErrUntrustedCA},
		{"empty tls.crt", PEMs{Key: pkcs8PEM(key)}, ErrInvalidCA},
		{"private key in tls.crt", PEMs{Cert: append(bytes.Clone(caPEM), pkcs8PEM(key)...), Key: pkcs8PEM(key)}, ErrInvalidCA},
		{"malformed block after tls.crt", PEMs{Cert: append(bytes.Clone(caPEM), "-----BEGIN CERTIFICATE-----\njunk\n"...), Key: pkcs8PEM(key)}, ErrInvalidCA},
		{"empty tls.key", PEMs{Cert: caPEM}, ErrInvalidCA},
		{"certificate as tls.key", PEMs{Cert: caPEM, Key: caPEM}, ErrInvalidCA},
		{"private key in ca.crt", PEMs{Cert: caPEM, Key: pkcs8PEM(key), CA: pkcs8PEM(key)}, ErrInvalidCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCA(tt.pems, t0); !errors.Is(err, tt.want) {
				t.Errorf("ParseCA error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSecretDataRoundTrips(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	data := ca.PEMs().SecretData()
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if _, ok := data[k]; !ok {
			t.Errorf("SecretData lacks %s", k)
		}
	}
	again, err := ParseCA(PEMsFromSecretData(data), t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("ParseCA of stored CA: %v", err)
	}
	if !again.Certificate().Equal(ca.Certificate()) {
		t.Error("reloaded CA differs")
	}
}

func TestNewSelfSignedCAMakesALeafOnlyRoot(t *testing.T) {
	serial := bytes.Repeat([]byte{0x42}, 16)
	ca := selfSignedAt(t, t0, SelfSignedOptions{Rand: bytes.NewReader(serial)})
	c := ca.Certificate()
	if c.Subject.CommonName != DefaultCACommonName || len(c.Subject.Names) != 1 {
		t.Errorf("Subject = %v, want CN=%s only", c.Subject, DefaultCACommonName)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA=%v MaxPathLen=%d MaxPathLenZero=%v, want a CA that signs only leaves", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage = %b lacks keyCertSign", c.KeyUsage)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.NotBefore.Equal(t0.Add(-DefaultBackdate)) || !c.NotAfter.Equal(t0.Add(DefaultCAValidity)) {
		t.Errorf("validity %s to %s, want %s to %s", c.NotBefore, c.NotAfter, t0.Add(-DefaultBackdate), t0.Add(DefaultCAValidity))
	}
	if got := c.SerialNumber.FillBytes(make([]byte, 16)); !bytes.Equal(got, serial) {
		t.Errorf("serial %x, want %x from the injected rand", got, serial)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("no subject key identifier: leaves get no authority key identifier")
	}
	if !bytes.Equal(ca.TrustBundle(), ca.PEMs().Cert) {
		t.Error("trust bundle of a self-signed CA is not its certificate")
	}
}

func TestNewSelfSignedCAHonoursOptions(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{CommonName: "demo CA", Validity: 48 * time.Hour, KeyAlgorithm: ECDSAP384})
	c := ca.Certificate()
	if c.Subject.CommonName != "demo CA" || !c.NotAfter.Equal(t0.Add(48*time.Hour)) {
		t.Errorf("CN %q NotAfter %s, want demo CA and %s", c.Subject.CommonName, c.NotAfter, t0.Add(48*time.Hour))
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		t.Errorf("key %T, want ECDSA P-384", c.PublicKey)
	}
	if testing.Short() {
		return
	}
	rsaCA := selfSignedAt(t, t0, SelfSignedOptions{KeyAlgorithm: RSA3072})
	if k, ok := rsaCA.Certificate().PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 3072 {
		t.Errorf("key %T, want RSA 3072", rsaCA.Certificate().PublicKey)
	}
}

func TestNewSelfSignedCARejectsBadOptions(t *testing.T) {
	_, err := NewSelfSignedCA(SelfSignedOptions{Validity: time.Minute, KeyAlgorithm: "DSA", Backdate: -1})
	for _, want := range []string{"Validity", "KeyAlgorithm", "Backdate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
