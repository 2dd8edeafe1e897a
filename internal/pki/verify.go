package pki

import "crypto/x509"

// Verifies tells whether the certificates in caPEM verify the chain in
// chainPEM (leaf first), at the middle of the leaf's validity.
func Verifies(caPEM, chainPEM []byte) bool {
	cas, err := ParseCertificates(caPEM)
	if err != nil {
		return false
	}
	chain, err := ParseCertificates(chainPEM)
	if err != nil || len(chain) == 0 {
		return false
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	leaf := chain[0]
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates,
		CurrentTime: leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err == nil
}
