package sign

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/csr-agent/csr-agent/internal/pki"
)

// The trust bundle and the retirement of its anchors.
//
// Clients verify leaves against the published bundle, so an anchor must be
// published before the first leaf that chains to it, and may leave only once
// no unexpired leaf of ours chains to it. At every sync each anchor of the
// CA source (ca.crt, or the self-signed tls.crt) and of the bundle published
// so far is in one of these states:
//
//  1. signing: a CA that signs, or is about to, chains to it. Always kept;
//     a retirement marker naming it is refused.
//  2. staged: in the CA source, but no CA we signed with chained to it since
//     it appeared: the first phase of a rotation publishes the next CA's
//     anchor before any leaf of it exists, so that clients trust it first.
//     Kept while it stays in the source.
//  3. retiring: signing switched away from it at SigningStopped. Kept until
//     DropAfter = SigningStopped + overlap, the moment the last leaf that
//     can chain to it has expired, then dropped, even if the source still
//     lists it.
//  4. dropped: past DropAfter, named in the operator's retirement marker, or
//     expired itself.
//
// Only the switch from 1 to 3 needs memory across syncs (a restarted or new
// leader cannot tell a retiring anchor from a staged one otherwise), so the
// caller persists BundlePlan.State and hands it back as BundleInput.State.
// An anchor with no history that is published but no longer in the source
// (a bundle written by an older version, or a staged anchor withdrawn) is
// treated as retiring from now: the safe side, it only delays the drop.

// BundleInput is everything PlanBundle decides from.
type BundleInput struct {
	Now time.Time
	// Published is the bundle published so far; empty on first install.
	Published []byte
	// Source is the CA being loaded: its trust anchors are published.
	Source *CA
	// Signing are the CAs that may still sign while the bundle is written:
	// the one being replaced by Source until the swap. Nil entries are
	// ignored; Source is always signing.
	Signing []*CA
	// Retired are SHA-256 fingerprints (Fingerprint) the operator retired.
	Retired []string
	// State is BundlePlan.State of the previous sync, as persisted.
	State map[string]AnchorState
	// Overlap is how long after signing stopped a leaf chaining to the
	// anchor may still be valid: Issuer.RetirementOverlap.
	Overlap time.Duration
}

// AnchorState is what is remembered of one anchor between syncs, keyed by
// its fingerprint.
type AnchorState struct {
	// Subject is for the people reading the persisted state.
	Subject string `json:"subject,omitempty"`
	// Signing: a signing CA chained to it at the last sync.
	Signing bool `json:"signing,omitempty"`
	// SigningStopped is when signing was first seen to no longer chain to
	// it; DropAfter when it leaves the bundle (SigningStopped + overlap at
	// that time, so that a later change of MAX_EXPIRATION cannot cut short
	// the leaves already signed).
	SigningStopped *time.Time `json:"signingStopped,omitempty"`
	DropAfter      *time.Time `json:"dropAfter,omitempty"`
}

// DropReason says why an anchor left the bundle.
type DropReason string

const (
	DropExpired       DropReason = "Expired"       // the anchor itself expired
	DropLeavesExpired DropReason = "LeavesExpired" // DropAfter passed
	DropMarked        DropReason = "MarkedRetired" // named in the retirement marker
)

// Dropped is an anchor of the published bundle that the plan removes.
type Dropped struct {
	Cert   *x509.Certificate
	Reason DropReason
}

// BundlePlan is the bundle to publish and what it changes.
type BundlePlan struct {
	// PEM is the new bundle: the source's anchors first, then the earlier
	// ones kept, each once.
	PEM []byte
	// State is to be persisted and handed back at the next sync.
	State map[string]AnchorState
	// Dropped are the anchors of Published left out.
	Dropped []Dropped
	// Refused are anchors named in Retired that a signing CA chains to:
	// they stay, and the operator must be told.
	Refused []*x509.Certificate
	// Signing, Staged and Retiring count the anchors of PEM by state.
	Signing, Staged, Retiring int
	// NextChange is the earliest moment the plan would change with nothing
	// else changing (an anchor's DropAfter or expiry); zero if never.
	NextChange time.Time
}

// PlanBundle decides the trust bundle to publish (see the states above).
// It depends only on its input, so planning again from its own output and
// state at the same time changes nothing, and the caller can compare before
// writing. Every certificate of Published and of the source must be a CA
// certificate (ErrInvalidBundle otherwise): anything else in a published
// trust bundle is a mistake to stop at, not to pass on.
func PlanBundle(in BundleInput) (*BundlePlan, error) {
	source, published, err := parseBundles(in)
	if err != nil {
		return nil, err
	}
	pl := &planner{
		in: in, plan: &BundlePlan{State: map[string]AnchorState{}},
		signing: map[string]bool{}, retired: map[string]bool{},
		inSource: fingerprints(source), published: fingerprints(published),
	}
	for _, ca := range append([]*CA{in.Source}, in.Signing...) {
		if ca != nil {
			maps.Copy(pl.signing, fingerprints(ca.signingAnchors))
		}
	}
	for _, fp := range in.Retired {
		pl.retired[fp] = true
	}
	seen := map[string]bool{}
	for _, c := range slices.Concat(source, published) {
		if fp := Fingerprint(c); !seen[fp] {
			seen[fp] = true
			pl.decide(c, fp)
		}
	}
	if pl.plan.Signing == 0 {
		return nil, fmt.Errorf("%w: new bundle has no unexpired anchor the signing CA chains to", ErrInvalidBundle)
	}
	pl.plan.PEM = encodeCertificates(pl.kept)
	return pl.plan, nil
}

// parseBundles parses the source's anchors and the published bundle.
func parseBundles(in BundleInput) (source, published []*x509.Certificate, err error) {
	if source, err = pki.ParseCertificates(in.Source.TrustBundle()); err != nil {
		return nil, nil, fmt.Errorf("%w: new bundle: %w", ErrInvalidBundle, err)
	}
	if len(bytes.TrimSpace(in.Published)) > 0 {
		if published, err = pki.ParseCertificates(in.Published); err != nil {
			return nil, nil, fmt.Errorf("%w: previous bundle: %w", ErrInvalidBundle, err)
		}
	}
	for _, c := range slices.Concat(source, published) {
		if !c.IsCA {
			return nil, nil, fmt.Errorf("%w: %q is not a CA", ErrInvalidBundle, c.Subject)
		}
	}
	return source, published, nil
}

func fingerprints(certs []*x509.Certificate) map[string]bool {
	set := map[string]bool{}
	for _, c := range certs {
		set[Fingerprint(c)] = true
	}
	return set
}

// planner holds one PlanBundle's sets, by fingerprint, and its result.
type planner struct {
	in                                    BundleInput
	signing, retired, inSource, published map[string]bool
	plan                                  *BundlePlan
	kept                                  []*x509.Certificate
}

// decide puts c, whose fingerprint is fp, in one of the states.
func (pl *planner) decide(c *x509.Certificate, fp string) {
	p, now := pl.plan, pl.in.Now
	if !now.Before(c.NotAfter) {
		pl.drop(c, fp, DropExpired)
		return
	}
	st := pl.in.State[fp]
	st.Subject = c.Subject.String()
	switch {
	case pl.signing[fp]:
		// Signing again after a switch back clears the retirement.
		p.State[fp] = AnchorState{Subject: st.Subject, Signing: true}
		if pl.retired[fp] {
			p.Refused = append(p.Refused, c)
		}
		p.Signing++
		pl.keep(c)
		return
	case st.DropAfter == nil && (st.Signing || !pl.inSource[fp]):
		// Signing just switched away, or the history is unknown.
		stopped, until := now, now.Add(pl.in.Overlap)
		st = AnchorState{Subject: st.Subject, SigningStopped: &stopped, DropAfter: &until}
	}
	kept := false
	switch {
	case pl.retired[fp]:
		pl.drop(c, fp, DropMarked)
	case st.DropAfter != nil && !now.Before(*st.DropAfter):
		pl.drop(c, fp, DropLeavesExpired)
	case st.DropAfter != nil:
		kept = true
		p.Retiring++
		p.next(*st.DropAfter)
		pl.keep(c)
	default:
		kept = true
		p.Staged++
		pl.keep(c)
	}
	if st.DropAfter != nil && (kept || pl.inSource[fp]) {
		// Remembered while it is published or could come back: a retired
		// anchor the source still lists stays out.
		p.State[fp] = st
	}
}

func (pl *planner) keep(c *x509.Certificate) {
	pl.kept = append(pl.kept, c)
	pl.plan.next(c.NotAfter)
}

// drop records c as dropped if it was published.
func (pl *planner) drop(c *x509.Certificate, fp string, why DropReason) {
	if pl.published[fp] {
		pl.plan.Dropped = append(pl.plan.Dropped, Dropped{Cert: c, Reason: why})
	}
}

// next lowers NextChange to t.
func (p *BundlePlan) next(t time.Time) {
	if p.NextChange.IsZero() || t.Before(p.NextChange) {
		p.NextChange = t
	}
}

// Fingerprint is the SHA-256 of c's DER in lowercase hex: how anchors are
// named in the retirement marker and the persisted state. (`openssl x509
// -noout -fingerprint -sha256` prints it in upper case with colons, which
// ParseFingerprints accepts.)
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseFingerprints reads a list of SHA-256 fingerprints separated by commas
// or white space, each 64 hex digits in either case, optionally in pairs
// separated by colons as openssl prints them. It returns them as Fingerprint does, or an error naming the first entry
// that is not one: a retirement list with a typo is refused whole rather
// than half applied.
func ParseFingerprints(s string) ([]string, error) {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }) {
		v := strings.ToLower(strings.ReplaceAll(f, ":", ""))
		if b, err := hex.DecodeString(v); err != nil || len(b) != sha256.Size {
			if len(f) > 80 {
				f = f[:80] + "..."
			}
			return nil, fmt.Errorf("%q is not a SHA-256 fingerprint (64 hexadecimal digits)", f)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// RetirementOverlap is how long after the last signature with a CA a leaf
// it signed may still be valid, and so how long its anchor stays published
// after signing switched away: the longest lifetime this Issuer signs
// (MaxExpiration, counted from the signature), plus the backdating
// allowance. The allowance is the clock skew the project already assumes
// between nodes (a verifier whose clock is behind accepts a leaf for that
// much longer); it also covers the signatures that finish just after the
// switch is recorded: those in flight when the CA is swapped, and those of
// a deposed leader before it notices, which stops within its lease's renew
// deadline (seconds).
func (i *Issuer) RetirementOverlap() time.Duration {
	return i.opts.MaxExpiration + i.opts.Backdate
}

// chainRoots returns the last certificate of each chain, once each: the
// anchors a verified certificate chains to.
func chainRoots(chains [][]*x509.Certificate) []*x509.Certificate {
	var roots []*x509.Certificate
	for _, ch := range chains {
		if r := ch[len(ch)-1]; !slices.ContainsFunc(roots, r.Equal) {
			roots = append(roots, r)
		}
	}
	return roots
}
