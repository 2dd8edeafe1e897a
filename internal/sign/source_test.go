package sign

import (
	"sync"
	"testing"
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
