package sign

import (
	"errors"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

func TestIssuePodCertificateMeetsTheAPIsLifetimeRules(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	ca := selfSignedAt(t, now.Add(-24*time.Hour), SelfSignedOptions{Validity: 365 * 24 * time.Hour})
	cases := []struct {
		name          string
		maxExpiration time.Duration // the issuer's (MAX_EXPIRATION)
		requested     int32         // spec.maxExpirationSeconds
		want          time.Duration // notAfter - notBefore
	}{
		{"request below the issuer's maximum", 24 * time.Hour, 7200, 2 * time.Hour},
		{"request at the API minimum", 24 * time.Hour, 3600, time.Hour},
		{"request at the API maximum is cut to the issuer's", 24 * time.Hour, 7862400, 24 * time.Hour},
		{"issuer maximum below the API minimum gives the minimum", 30 * time.Minute, 86400, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := newIssuer(t, now, Options{MaxExpiration: tc.maxExpiration})
			g := grantFor(newP256(t).Public(), certificatesv1.UsageServerAuth)
			g.ExpirationSeconds = int32p(tc.requested)
			pc, err := i.IssuePodCertificate(ca, g, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			leaf := pc.Leaf
			if want := now.Add(-PodCertificateBackdate); !leaf.NotBefore.Equal(want) {
				t.Errorf("notBefore %s, want %s", leaf.NotBefore, want)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tc.want {
				t.Errorf("lifetime %s, want %s", got, tc.want)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got > time.Duration(tc.requested)*time.Second {
				t.Errorf("lifetime %s exceeds maxExpirationSeconds %d, backdating included", got, tc.requested)
			}
			if pc.BeginRefreshAt.Before(leaf.NotBefore.Add(10*time.Minute)) || pc.BeginRefreshAt.After(leaf.NotAfter.Add(-10*time.Minute)) {
				t.Errorf("beginRefreshAt %s outside [notBefore+10m, notAfter-10m] of %s..%s", pc.BeginRefreshAt, leaf.NotBefore, leaf.NotAfter)
			}
		})
	}
}

func TestIssuePodCertificateStopsAtTheCAsExpiryAndWaitsWhenThatIsUnderAnHour(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	i := newIssuer(t, now, Options{})
	g := grantFor(newP256(t).Public(), certificatesv1.UsageServerAuth)
	g.ExpirationSeconds = int32p(86400)

	ca := selfSignedAt(t, now.Add(-time.Hour), SelfSignedOptions{Validity: 4 * time.Hour, Backdate: time.Nanosecond})
	pc, err := i.IssuePodCertificate(ca, g, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !pc.Leaf.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("notAfter %s, want the CA's %s", pc.Leaf.NotAfter, ca.Certificate().NotAfter)
	}

	short := selfSignedAt(t, now.Add(-time.Hour), SelfSignedOptions{Validity: 90 * time.Minute, Backdate: time.Nanosecond})
	if _, err := i.IssuePodCertificate(short, g, 0); !errors.Is(err, ErrCAExpired) {
		t.Errorf("CA expiring in 30m: err %v, want ErrCAExpired", err)
	}
	g.ExpirationSeconds = nil
	if _, err := i.IssuePodCertificate(ca, g, 0); !errors.Is(err, ErrInvalidGrant) {
		t.Errorf("no maxExpirationSeconds: err %v, want ErrInvalidGrant", err)
	}
}

func TestBeginRefreshAtIsBetween70And90PercentAndAtLeast10MinutesFromEitherEnd(t *testing.T) {
	nb := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		lifetime time.Duration
		jitter   float64
		want     time.Duration // after notBefore
	}{
		{24 * time.Hour, 0, 24 * time.Hour * 7 / 10},
		{24 * time.Hour, 0.5, 24 * time.Hour * 8 / 10},
		{24 * time.Hour, 1, 24 * time.Hour * 9 / 10},
		{24 * time.Hour, 7, 24 * time.Hour * 9 / 10},  // out of range: clamped
		{24 * time.Hour, -1, 24 * time.Hour * 7 / 10}, // out of range: clamped
		{time.Hour, 0, 42 * time.Minute},
		{time.Hour, 1, 50 * time.Minute}, // 90 % would leave 6 minutes
	}
	for _, tc := range cases {
		got := BeginRefreshAt(nb, nb.Add(tc.lifetime), tc.jitter)
		if want := nb.Add(tc.want); !got.Equal(want) {
			t.Errorf("lifetime %s jitter %v: %s, want %s", tc.lifetime, tc.jitter, got, want)
		}
	}
}
