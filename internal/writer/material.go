package writer

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"

	"github.com/csr-agent/csr-agent/internal/pki"
)

// Errors. Match them with errors.Is.
var (
	// ErrInvalid: material given to Publish cannot be published.
	ErrInvalid = errors.New("invalid certificate material")
	// ErrMismatch: the private key is not the leaf certificate's. Publish
	// wraps it together with ErrInvalid, Load together with ErrDamaged.
	ErrMismatch = errors.New("private key does not match the leaf certificate")
	// ErrNotFound: nothing is published (no key, certificate or bundle).
	// It is also an fs.ErrNotExist.
	ErrNotFound = fmt.Errorf("no certificate published: %w", fs.ErrNotExist)
	// ErrDamaged: something is published but it is incomplete, unparseable
	// or inconsistent; republish.
	ErrDamaged = errors.New("published certificate files are damaged")
	// ErrDrift: Verify found the visible files differ from what was
	// published; republish.
	ErrDrift = errors.New("published certificate files changed")
)

// maxFileSize bounds every file read or accepted. The largest legitimate file
// is a CA bundle (a full public trust store is under 300 KiB); the bound stops
// a misbehaving container in the pod from making the agent read gigabytes.
const maxFileSize = 4 << 20

// Material is what a caller publishes: PEM exactly as it has it.
type Material struct {
	// KeyPEM holds one private key: PKCS#8 "PRIVATE KEY", PKCS#1 "RSA
	// PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"; ECDSA, RSA or Ed25519.
	// It is published re-encoded as PKCS#8.
	KeyPEM []byte
	// ChainPEM is the leaf followed by intermediates, as the signer returned
	// it. Every PEM block must be a CERTIFICATE; text between blocks is
	// allowed (RFC 7468 §5.2, as the certificates API allows) and kept.
	ChainPEM []byte
	// CAPEM is the CA bundle, same form as ChainPEM. Empty (or only
	// whitespace) means none: ca.crt is then not published.
	CAPEM []byte
}

// Published describes one generation of published files.
type Published struct {
	// Generation is the hidden directory ..data pointed to, e.g.
	// "..2026_11_26_22_30_00.123456789".
	Generation string
	// Leaf is the first certificate of the chain; its NotBefore, NotAfter
	// and SANs are the caller's to judge (expiry is policy, not validity).
	Leaf *x509.Certificate
	// Chain is every certificate of tls.crt, leaf first.
	Chain []*x509.Certificate
	// CAs is ca.crt parsed; nil when none is published.
	CAs []*x509.Certificate
	// Key is the private key (*ecdsa.PrivateKey, *rsa.PrivateKey or
	// ed25519.PrivateKey).
	Key crypto.Signer

	// The exact bytes of each file. CAPEM and Keystore are nil when those
	// files are not published.
	KeyPEM, ChainPEM, CAPEM, BundlePEM, Keystore []byte
}

// Material returns what would republish this generation.
func (p *Published) Material() Material {
	return Material{KeyPEM: p.KeyPEM, ChainPEM: p.ChainPEM, CAPEM: p.CAPEM}
}

// parseMaterial validates m and renders tls.key, tls.crt, ca.crt and tls.pem
// (not the keystore, which needs the Writer's options). Errors wrap class:
// ErrInvalid for a caller's input, ErrDamaged for files read back from disk.
func parseMaterial(m Material, class error) (*Published, error) {
	for _, f := range []struct {
		what string
		data []byte
	}{{"key", m.KeyPEM}, {"chain", m.ChainPEM}, {"CA bundle", m.CAPEM}} {
		if len(f.data) > maxFileSize {
			return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", class, f.what, len(f.data), maxFileSize)
		}
	}
	key, err := pki.ParsePrivateKey(m.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %w", class, err)
	}
	chain, err := pki.ParseCertificates(m.ChainPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: chain: %w", class, err)
	}
	var cas []*x509.Certificate
	if len(bytes.TrimSpace(m.CAPEM)) > 0 {
		if cas, err = pki.ParseCertificates(m.CAPEM); err != nil {
			return nil, fmt.Errorf("%w: CA bundle: %w", class, err)
		}
	}
	if err := checkPair(key, chain[0]); err != nil {
		return nil, fmt.Errorf("%w: %w", class, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: key: encoding PKCS#8: %w", class, err)
	}
	p := &Published{
		Leaf:     chain[0],
		Chain:    chain,
		CAs:      cas,
		Key:      key,
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		ChainPEM: bytes.Clone(m.ChainPEM),
	}
	if cas != nil {
		p.CAPEM = bytes.Clone(m.CAPEM)
	}
	p.BundlePEM = bundle(p.KeyPEM, p.ChainPEM)
	return p, nil
}

// bundle is tls.pem: the key first so a reader that stops at the first
// "PRIVATE KEY" block and one that collects CERTIFICATE blocks both work.
func bundle(keyPEM, chainPEM []byte) []byte {
	return append(bytes.Clone(keyPEM), chainPEM...)
}

// checkPair compares public keys rather than signing a challenge: the
// standard library's key types all implement Equal, and it also catches an
// RSA key whose modulus matches but exponent does not.
func checkPair(key crypto.Signer, leaf *x509.Certificate) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return fmt.Errorf("%w (leaf subject %q, serial %s)", ErrMismatch, leaf.Subject.String(), leaf.SerialNumber)
	}
	return nil
}
