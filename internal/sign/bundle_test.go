package sign

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/pki"
)

// overlap is what a default Issuer keeps an anchor for after the switch.
const overlap = DefaultMaxExpiration + DefaultBackdate

// rotation is the two CAs of a rotation and the CA sources of its phases.
type rotation struct {
	old, next *CA
	staged    *CA // tls.crt/tls.key still old, ca.crt old + new roots
	switched  *CA // tls.crt/tls.key new, ca.crt new root only
}

func newRotation(t *testing.T) rotation {
	t.Helper()
	old := selfSignedAt(t, t0.Add(-24*time.Hour), SelfSignedOptions{CommonName: "old", Validity: 365 * 24 * time.Hour})
	next := selfSignedAt(t, t0, SelfSignedOptions{CommonName: "new", Validity: 365 * 24 * time.Hour})
	staged := must(ParseCA(PEMs{Cert: old.PEMs().Cert, Key: old.PEMs().Key, CA: cat(old.TrustBundle(), next.TrustBundle())}, t0))
	return rotation{old: old, next: next, staged: staged, switched: next}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// controllerSim plans bundles as the controller's syncs do: the published
// bundle and the state are carried from one plan to the next (persisted),
// the CA in use only in memory.
type controllerSim struct {
	t         *testing.T
	clock     *clocktesting.FakePassiveClock
	published []byte
	state     map[string]AnchorState
	inUse     *CA
	retired   []string
}

func (s *controllerSim) sync(source *CA) *BundlePlan {
	s.t.Helper()
	p, err := PlanBundle(BundleInput{
		Now: s.clock.Now(), Published: s.published, Source: source, Signing: []*CA{s.inUse},
		Retired: s.retired, State: s.state, Overlap: overlap,
	})
	if err != nil {
		s.t.Fatalf("PlanBundle: %v", err)
	}
	s.published, s.state, s.inUse = p.PEM, p.State, source
	return p
}

func anchors(t *testing.T, pemData []byte) []string {
	t.Helper()
	var names []string
	for _, c := range must(pki.ParseCertificates(pemData)) {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

func wantAnchors(t *testing.T, p *BundlePlan, want ...string) {
	t.Helper()
	if got := anchors(t, p.PEM); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("bundle holds %v, want %v", got, want)
	}
}

func fp(ca *CA) string { return Fingerprint(ca.Certificate()) }

func TestTheNewAnchorIsPublishedBeforeSigningSwitches(t *testing.T) {
	r := newRotation(t)
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	s.sync(r.old)
	p := s.sync(r.staged)
	wantAnchors(t, p, "old", "new")
	if p.Signing != 1 || p.Staged != 1 || p.Retiring != 0 {
		t.Errorf("signing/staged/retiring = %d/%d/%d, want 1/1/0", p.Signing, p.Staged, p.Retiring)
	}
	if st := p.State[fp(r.next)]; st.Signing || st.DropAfter != nil {
		t.Errorf("staged anchor has state %+v, want none", st)
	}
	// Staged anchors stay as long as the source lists them.
	s.clock.SetTime(t0.Add(300 * 24 * time.Hour))
	wantAnchors(t, s.sync(r.staged), "old", "new")
}

func TestTheOldAnchorIsDroppedWhenItsLastLeafHasExpired(t *testing.T) {
	r := newRotation(t)
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	s.sync(r.old)
	s.sync(r.staged)
	s.clock.SetTime(t0.Add(time.Hour))
	// The sync that loads the new CA runs while the old one still signs.
	p := s.sync(r.switched)
	wantAnchors(t, p, "new", "old")
	if !p.State[fp(r.old)].Signing {
		t.Errorf("old anchor not signing while the old CA is still in use: %+v", p.State[fp(r.old)])
	}
	// The next sync sees signing switched away: the clock starts.
	switched := t0.Add(time.Hour + time.Second)
	s.clock.SetTime(switched)
	p = s.sync(r.switched)
	st := p.State[fp(r.old)]
	if st.SigningStopped == nil || !st.SigningStopped.Equal(switched) || st.DropAfter == nil || !st.DropAfter.Equal(switched.Add(overlap)) {
		t.Fatalf("old anchor state %+v, want stopped at %s, dropped after %s", st, switched, switched.Add(overlap))
	}
	if !p.NextChange.Equal(*st.DropAfter) || p.Retiring != 1 {
		t.Errorf("NextChange %s, retiring %d; want %s, 1", p.NextChange, p.Retiring, st.DropAfter)
	}
	// A leaf the old CA signed at the switch (in flight when it was
	// swapped) has expired by then.
	leaf := must(newIssuer(t, switched, Options{}).Issue(r.old, grantFor(newP256(t).Public())))
	if leaf.Leaf.NotAfter.After(*st.DropAfter) {
		t.Errorf("a leaf of the old CA is valid until %s, after its anchor is dropped at %s", leaf.Leaf.NotAfter, st.DropAfter)
	}

	s.clock.SetTime(st.DropAfter.Add(-time.Nanosecond))
	wantAnchors(t, s.sync(r.switched), "new", "old")
	s.clock.SetTime(*st.DropAfter)
	p = s.sync(r.switched)
	wantAnchors(t, p, "new")
	if len(p.Dropped) != 1 || !p.Dropped[0].Cert.Equal(r.old.Certificate()) || p.Dropped[0].Reason != DropLeavesExpired {
		t.Errorf("Dropped = %+v, want the old anchor, LeavesExpired", p.Dropped)
	}
	if _, ok := p.State[fp(r.old)]; ok {
		t.Error("state of an anchor gone from bundle and source is kept")
	}
}

func TestARetiredAnchorTheSourceStillListsStaysOut(t *testing.T) {
	r := newRotation(t)
	// The operator switched tls.crt but left both roots in ca.crt.
	both := must(ParseCA(PEMs{Cert: r.next.PEMs().Cert, Key: r.next.PEMs().Key, CA: cat(r.next.TrustBundle(), r.old.TrustBundle())}, t0))
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	s.sync(r.staged)
	s.sync(both)
	s.sync(both)
	s.clock.SetTime(t0.Add(overlap))
	wantAnchors(t, s.sync(both), "new")
	s.clock.SetTime(t0.Add(2 * overlap))
	wantAnchors(t, s.sync(both), "new")
}

func TestTheRetirementMarkerDropsAnAnchorAtOnce(t *testing.T) {
	r := newRotation(t)
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	s.sync(r.staged)
	s.sync(r.switched)
	s.sync(r.switched)
	s.retired = []string{fp(r.old)}
	p := s.sync(r.switched)
	wantAnchors(t, p, "new")
	if len(p.Dropped) != 1 || p.Dropped[0].Reason != DropMarked || len(p.Refused) != 0 {
		t.Errorf("Dropped = %+v, Refused = %d; want the old anchor MarkedRetired, none refused", p.Dropped, len(p.Refused))
	}
	// A staged anchor can be withdrawn the same way.
	s = &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0), retired: []string{fp(r.next)}}
	wantAnchors(t, s.sync(r.staged), "old")
}

func TestTheAnchorOfASigningCAIsNeverRetired(t *testing.T) {
	r := newRotation(t)
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0), retired: []string{fp(r.old), fp(r.next)}}
	p := s.sync(r.old)
	wantAnchors(t, p, "old")
	if len(p.Refused) != 1 || !p.Refused[0].Equal(r.old.Certificate()) {
		t.Errorf("Refused = %v, want the old anchor", p.Refused)
	}
	// Marked together with the switch: the old CA still signs until the
	// swap, so its anchor stays for this sync and goes at the next.
	s.retired = []string{fp(r.old)}
	p = s.sync(r.switched)
	wantAnchors(t, p, "new", "old")
	if len(p.Refused) != 1 {
		t.Errorf("Refused = %v, want the old anchor while the old CA is in use", p.Refused)
	}
	p = s.sync(r.switched)
	wantAnchors(t, p, "new")
	if len(p.Refused) != 0 {
		t.Errorf("Refused = %v after the swap, want none", p.Refused)
	}
}

func TestTheRetirementClockSurvivesARestart(t *testing.T) {
	r := newRotation(t)
	both := must(ParseCA(PEMs{Cert: r.next.PEMs().Cert, Key: r.next.PEMs().Key, CA: cat(r.next.TrustBundle(), r.old.TrustBundle())}, t0))
	a := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	a.sync(r.staged)
	a.sync(both)
	p := a.sync(both)
	dropAfter := *p.State[fp(r.old)].DropAfter

	// A new leader (nothing in memory) reads the persisted state back.
	raw := must(json.Marshal(a.state))
	var state map[string]AnchorState
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	b := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0.Add(time.Hour)), published: a.published, state: state}
	p = b.sync(both)
	if got := *p.State[fp(r.old)].DropAfter; !got.Equal(dropAfter) {
		t.Errorf("after a restart the old anchor is dropped after %s, want %s as persisted", got, dropAfter)
	}
	b.clock.SetTime(dropAfter)
	wantAnchors(t, b.sync(both), "new")

	// Without the state, the old root the source lists would look staged
	// and stay for ever: the persisted state is what retires it.
	c := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(dropAfter), published: a.published}
	wantAnchors(t, c.sync(both), "new", "old")
}

func TestAPublishedAnchorWithoutHistoryRetiresFromNow(t *testing.T) {
	r := newRotation(t)
	// A bundle written before anchors had state: old and new, new signing.
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0), published: cat(r.next.TrustBundle(), r.old.TrustBundle())}
	p := s.sync(r.switched)
	wantAnchors(t, p, "new", "old")
	if st := p.State[fp(r.old)]; st.DropAfter == nil || !st.DropAfter.Equal(t0.Add(overlap)) {
		t.Errorf("old anchor state %+v, want dropped after %s", st, t0.Add(overlap))
	}
}

func TestSwitchingBackToARetiringCAKeepsItsAnchor(t *testing.T) {
	r := newRotation(t)
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	s.sync(r.staged)
	s.sync(r.switched)
	s.sync(r.switched)
	s.sync(r.staged) // rolled back
	s.clock.SetTime(t0.Add(2 * overlap))
	p := s.sync(r.staged)
	wantAnchors(t, p, "old", "new")
	if st := p.State[fp(r.old)]; !st.Signing || st.DropAfter != nil {
		t.Errorf("old anchor state %+v after switching back, want signing", st)
	}
}

func TestPlanningAgainChangesNothing(t *testing.T) {
	r := newRotation(t)
	s := &controllerSim{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	s.sync(r.staged)
	s.sync(r.switched)
	first := s.sync(r.switched)
	again := s.sync(r.switched)
	if !bytes.Equal(first.PEM, again.PEM) || len(again.Dropped) != 0 {
		t.Errorf("second plan changed the bundle or dropped %v", again.Dropped)
	}
	if a, b := must(json.Marshal(first.State)), must(json.Marshal(again.State)); !bytes.Equal(a, b) {
		t.Errorf("second plan changed the state:\n%s\n%s", a, b)
	}
}

func TestExpiredAnchorsAreDropped(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{CommonName: "ca"})
	expired := selfSignedAt(t, t0.Add(-48*time.Hour), SelfSignedOptions{CommonName: "expired", Validity: 24 * time.Hour})
	p := must(PlanBundle(BundleInput{Now: t0, Source: ca, Published: cat(expired.TrustBundle(), ca.TrustBundle()), Overlap: overlap}))
	wantAnchors(t, p, "ca")
	if len(p.Dropped) != 1 || p.Dropped[0].Reason != DropExpired {
		t.Errorf("Dropped = %+v, want the expired anchor", p.Dropped)
	}
}

func TestPlanBundleRejectsWhatMustNotBePublished(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{Validity: 24 * time.Hour})
	leaf := must(newIssuer(t, t0, Options{}).Issue(ca, grantFor(newP256(t).Public())))
	tests := []struct {
		name      string
		now       time.Time
		published []byte
	}{
		{"the signing anchor expired", t0.Add(48 * time.Hour), nil},
		{"private key in the published bundle", t0, ca.PEMs().Key},
		{"leaf certificate", t0, leaf.PEM},
		{"garbage", t0, []byte("not pem")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PlanBundle(BundleInput{Now: tt.now, Source: ca, Published: tt.published, Overlap: overlap})
			if !errors.Is(err, ErrInvalidBundle) {
				t.Errorf("PlanBundle error = %v, want ErrInvalidBundle", err)
			}
		})
	}
}

func TestFingerprintsAreReadInTheFormsOpenSSLAndPeopleWrite(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	want := Fingerprint(ca.Certificate())
	colons := strings.ToUpper(want[:2])
	for i := 2; i < len(want); i += 2 {
		colons += ":" + strings.ToUpper(want[i:i+2])
	}
	got, err := ParseFingerprints(" " + colons + ",\n" + want + " ")
	if err != nil || len(got) != 1 || got[0] != want {
		t.Errorf("ParseFingerprints = %v, %v; want [%s]", got, err, want)
	}
	if got, err := ParseFingerprints(""); err != nil || len(got) != 0 {
		t.Errorf("empty list: %v, %v", got, err)
	}
	for _, bad := range []string{want[:62], want + "00", "zz" + want[2:], want + ",sha1:abc", strings.Repeat("x", 500)} {
		if _, err := ParseFingerprints(bad); err == nil {
			t.Errorf("ParseFingerprints(%.20q...) accepted", bad)
		} else if len(err.Error()) > 200 {
			t.Errorf("error for a long entry is %d bytes long", len(err.Error()))
		}
	}
}
