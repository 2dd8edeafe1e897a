package agent

import (
	"errors"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/pki/pkitest"
)

// The fake API has no CSR client in these tests: a Start that tried to
// request a certificate would panic.

func TestStartKeepsAValidPairThatStillFits(t *testing.T) {
	a := newTestAgent(t, &fakeAPI{}, testingclock.NewFakePassiveClock(notBefore.Add(90*time.Hour)))
	id, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t, config.KeyECDSAP256)
	// Past the 70% Init would renew at, but valid: the sidecar keeps it
	// and lets the loop renew it at its own deadline.
	before := publish(t, a, key, pkitest.NewCA(t).Issue(t, key.Public(), pkitest.Leaf{CN: id.CommonName, DNSNames: id.DNSNames, NotBefore: notBefore, NotAfter: notAfter}))
	s, err := a.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Issued || s.RenewNow || s.Published.Generation != before.Generation {
		t.Errorf("Start = %+v, want the published pair kept as it is", s)
	}
}

func TestStartKeepsAValidPairForAnotherIdentityAndRenewsAtOnce(t *testing.T) {
	a := newTestAgent(t, &fakeAPI{}, testingclock.NewFakePassiveClock(notBefore.Add(time.Hour)))
	key := newKey(t, config.KeyECDSAP256)
	before := publish(t, a, key, pkitest.NewCA(t).Issue(t, key.Public(), pkitest.Leaf{CN: "old.example.com", DNSNames: []string{"old.example.com"}, NotBefore: notBefore, NotAfter: notAfter}))
	var logs logCapture
	s, err := a.Start(logs.context(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Issued || !s.RenewNow || s.Published.Generation != before.Generation {
		t.Errorf("Start = %+v, want the pair kept and renewed at once", s)
	}
	if !logs.has("names another identity") {
		t.Errorf("no log line says why: %q", logs.lines)
	}
}

func TestStartKeepsAValidPairWhenItsNamesCannotBeChecked(t *testing.T) {
	api := &fakeAPI{podErr: errors.New("connection refused")}
	a := newTestAgent(t, api, testingclock.NewFakePassiveClock(notBefore.Add(time.Hour)))
	a.cfg.ServiceNames = config.Services{Auto: true}
	key := newKey(t, config.KeyECDSAP256)
	publish(t, a, key, pkitest.NewCA(t).Issue(t, key.Public(), pkitest.Leaf{CN: "web", DNSNames: []string{"web"}, NotBefore: notBefore, NotAfter: notAfter}))
	s, err := a.Start(t.Context())
	if err != nil {
		t.Fatalf("Start failed with a valid pair on disk: %v", err)
	}
	if !s.RenewNow {
		t.Error("the pair's names were not checked, so it must be renewed (and so checked) at once")
	}
}

func TestCABundleDoesNotFallBackToTheAnnotation(t *testing.T) {
	a := newTestAgent(t, &fakeAPI{}, nil)
	if got := a.CABundle(t.Context()); got != nil {
		t.Errorf("CABundle = %q with no CA_FILE and no trust bundle, want nil (keep ca.crt)", got)
	}
	ca := pkitest.NewCA(t).PEM()
	a = newTestAgent(t, &fakeAPI{bundle: ca}, nil)
	if got := a.CABundle(t.Context()); string(got) != string(ca) {
		t.Error("CABundle does not return the signer's trust bundle")
	}
}
