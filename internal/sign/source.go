package sign

import "sync/atomic"

// Source holds the CA in use, swapped whole when its Secret changes, so a
// signature never mixes one CA's certificate with another's key. The zero
// value holds no CA.
type Source struct {
	ca atomic.Pointer[CA]
}

// NewSource returns a Source holding ca.
func NewSource(ca *CA) *Source {
	s := &Source{}
	s.Set(ca)
	return s
}

// Current returns the CA in use, nil when none has been set.
func (s *Source) Current() *CA { return s.ca.Load() }

// Set replaces the CA in use; callers validated it with ParseCA.
func (s *Source) Set(ca *CA) { s.ca.Store(ca) }
