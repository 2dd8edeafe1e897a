// Package pki parses the PEM material both halves of csr-agent take from
// outside: the agent's key and certificate chain before it publishes them,
// and the controller's CA from a Secret or files. Parsing is strict, because
// what passes is published or signed with:
//
//   - a "-----BEGIN" that pem.Decode would skip as text is an error, not
//     ignored, so a malformed key block never travels on as "text" inside a
//     certificate file;
//   - a private key is exactly one PEM block without headers (legacy
//     encrypted PEM is refused) holding an ECDSA, RSA or Ed25519 key, as
//     PKCS#8, PKCS#1 or SEC 1;
//   - certificates are CERTIFICATE blocks only: a private key pasted into a
//     bundle stops the load. Text around the blocks is allowed (RFC 7468
//     explanatory text; the CSR API allows it in status.certificate).
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Blocks decodes every PEM block in data, failing on a malformed one.
func Blocks(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if n := bytes.Count(data, []byte("-----BEGIN")); n != len(blocks) {
		return nil, fmt.Errorf("%d of %d PEM blocks are malformed", n-len(blocks), n)
	}
	if len(blocks) == 0 {
		return nil, errors.New("no PEM block found")
	}
	return blocks, nil
}

// ParsePrivateKey parses exactly one PEM private key.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	blocks, err := Blocks(data)
	if err != nil {
		return nil, err
	}
	if len(blocks) != 1 {
		return nil, fmt.Errorf("want exactly one PEM block, found %d", len(blocks))
	}
	b := blocks[0]
	if len(b.Headers) != 0 {
		return nil, fmt.Errorf("PEM block %q has headers (legacy encrypted keys are not supported)", b.Type)
	}
	var k any
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("PEM block type %q is not a private key", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", b.Type, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	default:
		return nil, fmt.Errorf("unsupported private key type %T", k)
	}
}

// ParseCertificates parses one or more PEM certificates, in order.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	blocks, err := Blocks(data)
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, b := range blocks {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", i+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", i+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}
