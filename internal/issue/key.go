package issue

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	certutil "k8s.io/client-go/util/cert"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/identity"
)

// GenerateKey makes a new private key of the configured type. The key only
// ever exists in this process and in the pod's certificate directory.
func GenerateKey(kt config.KeyType, rand io.Reader) (crypto.Signer, error) {
	switch kt {
	case config.KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand)
	case config.KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand)
	case config.KeyRSA2048:
		return rsa.GenerateKey(rand, 2048)
	case config.KeyRSA3072:
		return rsa.GenerateKey(rand, 3072)
	case config.KeyRSA4096:
		return rsa.GenerateKey(rand, 4096)
	case config.KeyEd25519:
		_, key, err := ed25519.GenerateKey(rand)
		return key, err
	}
	return nil, fmt.Errorf("unknown key type %q", kt)
}

// KeyUsages maps the requested usages to the CSR's spec.usages. Digital
// signature is always needed for TLS; key encipherment only for RSA keys,
// where TLS 1.2's RSA key exchange encrypts with the certificate's key
// (ECDSA and Ed25519 keys cannot encrypt, and strict signers refuse it).
func KeyUsages(key crypto.Signer, u config.Usages) []certificatesv1.KeyUsage {
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
	if _, ok := key.(*rsa.PrivateKey); ok {
		usages = append(usages, certificatesv1.UsageKeyEncipherment)
	}
	if u.Server() {
		usages = append(usages, certificatesv1.UsageServerAuth)
	}
	if u.Client() {
		usages = append(usages, certificatesv1.UsageClientAuth)
	}
	return usages
}

// CertificateRequest encodes a PEM PKCS#10 request for the identity, signed
// by key (proof that the pod holds it).
func CertificateRequest(key crypto.Signer, id identity.Identity) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: id.CommonName},
		DNSNames:    id.DNSNames,
		IPAddresses: id.IPs,
	}
	csr, err := certutil.MakeCSRFromTemplate(key, tmpl)
	if err != nil {
		return nil, fmt.Errorf("encoding certificate request: %w", err)
	}
	return csr, nil
}

// EncodeKey returns the key as a PKCS#8 PEM block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// DecodeKey parses a PKCS#8 PEM private key.
func DecodeKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("decoding private key: no PRIVATE KEY block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("decoding private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("decoding private key: %T cannot sign", key)
	}
	return signer, nil
}

// requestPublicKey returns the public key of a PEM CSR, for telling whether
// a CSR found on the server is this agent's own.
func requestPublicKey(request []byte) (crypto.PublicKey, error) {
	csr, err := parseRequest(request)
	if err != nil {
		return nil, err
	}
	return csr.PublicKey, nil
}

func parseRequest(request []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(request)
	if block == nil {
		return nil, fmt.Errorf("no PEM block in request")
	}
	return x509.ParseCertificateRequest(block.Bytes)
}

type publicKeyEqualer interface {
	Equal(crypto.PublicKey) bool
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ae, ok := a.(publicKeyEqualer)
	return ok && ae.Equal(b)
}

// KeyTypeOf names the type of key in the configuration's terms.
func KeyTypeOf(key crypto.Signer) (config.KeyType, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return config.KeyECDSAP256, nil
		case elliptic.P384():
			return config.KeyECDSAP384, nil
		}
	case *rsa.PrivateKey:
		switch k.N.BitLen() {
		case 2048:
			return config.KeyRSA2048, nil
		case 3072:
			return config.KeyRSA3072, nil
		case 4096:
			return config.KeyRSA4096, nil
		}
	case ed25519.PrivateKey:
		return config.KeyEd25519, nil
	}
	return "", fmt.Errorf("unsupported key %T", key)
}

// checkIssued makes sure the signer answered with a certificate chain whose
// leaf is for key.
func checkIssued(chainPEM []byte, key crypto.Signer) error {
	certs, err := certutil.ParseCertsPEM(chainPEM)
	if err != nil {
		return fmt.Errorf("parsing issued certificate: %w", err)
	}
	if !samePublicKey(key.Public(), certs[0].PublicKey) {
		return fmt.Errorf("issued certificate is for another key")
	}
	return nil
}
