package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/csr-agent/csr-agent/internal/pki/pkitest"
)

func testMaterial(t *testing.T) (keyPEM, certPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pkitest.NewCA(t).Issue(t, key.Public(), pkitest.Leaf{CN: "test"})
}

func TestParsePrivateKeyAcceptsOneKeyBlockAndNothingElse(t *testing.T) {
	keyPEM, certPEM := testMaterial(t)
	if _, err := ParsePrivateKey(keyPEM); err != nil {
		t.Fatalf("a PKCS#8 ECDSA key: %v", err)
	}
	withHeader := strings.Replace(string(keyPEM), "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"nothing", "", "no PEM block"},
		{"text", "not a key", "no PEM block"},
		{"two keys", string(keyPEM) + string(keyPEM), "exactly one PEM block"},
		{"a certificate", string(certPEM), "not a private key"},
		{"malformed block", "-----BEGIN PRIVATE KEY-----\nnot base64\n", "malformed"},
		{"legacy encrypted", withHeader, "headers"},
		{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})), "parsing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKey([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseCertificatesAllowsExplanatoryTextButNoOtherBlocks(t *testing.T) {
	keyPEM, certPEM := testMaterial(t)
	certs, err := ParseCertificates([]byte("# issuer: test\n" + string(certPEM) + "trailing words\n" + string(certPEM)))
	if err != nil || len(certs) != 2 {
		t.Fatalf("two certificates with text around them: %d certificates, error %v", len(certs), err)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"nothing", "", "no PEM block"},
		{"a key pasted into a bundle", string(certPEM) + string(keyPEM), `PEM block 2 is "PRIVATE KEY"`},
		{"a malformed block between good ones", string(certPEM) + "-----BEGIN CERTIFICATE-----\n!!\n" + string(certPEM), "malformed"},
		{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), "PEM block 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCertificates([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
