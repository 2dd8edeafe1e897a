package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/csr-agent/csr-agent/internal/pki"
	"github.com/csr-agent/csr-agent/internal/pki/pkitest"
)

// TestVerifiesOnlyAChainItsCAsSigned: a trust bundle read from a cache may
// lag a CA rotation; Verifies is how a reader finds out and reads again.
func TestVerifiesOnlyAChainItsCAsSigned(t *testing.T) {
	ca, other := pkitest.NewCA(t), pkitest.NewCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := ca.Issue(t, key.Public(), pkitest.Leaf{CN: "web", DNSNames: []string{"web.app.svc"}})
	tests := []struct {
		name     string
		bundle   []byte
		chain    []byte
		verifies bool
	}{
		{"its CA", ca.PEM(), leaf, true},
		{"its CA among others", append(other.PEM(), ca.PEM()...), leaf, true},
		{"another CA only", other.PEM(), leaf, false},
		{"no bundle", nil, leaf, false},
		{"no chain", ca.PEM(), nil, false},
		{"not PEM", []byte("garbage"), leaf, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pki.Verifies(tt.bundle, tt.chain); got != tt.verifies {
				t.Errorf("Verifies = %v, want %v", got, tt.verifies)
			}
		})
	}
}
