package sign

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestSourceSwapsTheCAWhole(t *testing.T) {
	var empty Source
	if empty.Current() != nil {
		t.Fatal("zero Source holds a CA")
	}
	a := selfSignedAt(t, t0, SelfSignedOptions{CommonName: "a"})
	b := selfSignedAt(t, t0, SelfSignedOptions{CommonName: "b"})
	s := NewSource(a)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				if ca := s.Current(); ca != a && ca != b {
					t.Errorf("Current = %p, want a or b", ca)
					return
				}
			}
		})
	}
	for range 100 {
		s.Set(b)
		s.Set(a)
	}
	wg.Wait()
	s.Set(b)
	if s.Current() != b {
		t.Error("Set did not replace the CA")
	}
}

func TestBundleKeepsBothCAsDuringRotation(t *testing.T) {
	old := selfSignedAt(t, t0.Add(-24*time.Hour), SelfSignedOptions{CommonName: "old", Validity: 48 * time.Hour})
	next := selfSignedAt(t, t0, SelfSignedOptions{CommonName: "new"})
	expired := selfSignedAt(t, t0.Add(-48*time.Hour), SelfSignedOptions{CommonName: "expired", Validity: 24 * time.Hour})
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

	tests := []struct {
		name       string
		prev, next []byte
		want       []byte
	}{
		{"first install", nil, next.TrustBundle(), next.TrustBundle()},
		{"rotation: new first, then old", old.TrustBundle(), next.TrustBundle(), cat(next.TrustBundle(), old.TrustBundle())},
		{"again on its own output: unchanged", cat(next.TrustBundle(), old.TrustBundle()), next.TrustBundle(), cat(next.TrustBundle(), old.TrustBundle())},
		{"duplicates inside one input", cat(old.TrustBundle(), old.TrustBundle()), cat(next.TrustBundle(), next.TrustBundle()), cat(next.TrustBundle(), old.TrustBundle())},
		{"expired anchors dropped", cat(expired.TrustBundle(), old.TrustBundle()), next.TrustBundle(), cat(next.TrustBundle(), old.TrustBundle())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Bundle(t0, tt.prev, tt.next)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Bundle =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestBundleRejectsWhatMustNotBePublished(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	expired := selfSignedAt(t, t0.Add(-48*time.Hour), SelfSignedOptions{Validity: 24 * time.Hour})
	leaf := must(newIssuer(t, t0, Options{}).Issue(ca, grantFor(newP256(t).Public())))
	tests := []struct {
		name       string
		prev, next []byte
	}{
		{"no new bundle", ca.TrustBundle(), nil},
		{"new bundle expired", ca.TrustBundle(), expired.TrustBundle()},
		{"private key in the new bundle", nil, append(ca.TrustBundle(), ca.PEMs().Key...)},
		{"private key in the previous bundle", ca.PEMs().Key, ca.TrustBundle()},
		{"leaf certificate", leaf.PEM, ca.TrustBundle()},
		{"garbage", []byte("not pem"), ca.TrustBundle()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Bundle(t0, tt.prev, tt.next); !errors.Is(err, ErrInvalidBundle) {
				t.Errorf("Bundle error = %v, want ErrInvalidBundle", err)
			}
		})
	}
}
