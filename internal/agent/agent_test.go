package agent

import (
	"crypto"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/identity"
	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/pki/pkitest"
	"github.com/csr-agent/csr-agent/internal/writer"
)

func TestNewReportsEveryMissingOptionAtOnce(t *testing.T) {
	_, err := New(Options{})
	if err == nil {
		t.Fatal("New(Options{}) succeeded")
	}
	for _, want := range []string{"config must be set", "API must be set", "writer must be set", "issuer must be set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestNewDefaultsTheClock(t *testing.T) {
	a := newTestAgent(t, &fakeAPI{}, nil)
	if a.clock == nil {
		t.Error("no default clock")
	}
}

// The published certificate's lifetime in the reusable tests: 70% of it is
// the renewal point.
var (
	notBefore = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = notBefore.Add(100 * time.Hour)
	renewAt   = notBefore.Add(70 * time.Hour)
)

func TestReusableReturnsThePublishedPairOnlyWhileItStillFits(t *testing.T) {
	ca := pkitest.NewCA(t)
	names := []string{"web.shop.svc.cluster.local", "web.shop.svc", "web.shop", "web"}
	ips := []net.IP{net.ParseIP("10.0.0.7").To4(), net.ParseIP("fd00::7")}
	published := pkitest.Leaf{CN: names[0], DNSNames: names, IPs: ips, NotBefore: notBefore, NotAfter: notAfter}
	wanted := identity.Identity{CommonName: names[0], DNSNames: names, IPs: ips}
	for _, tc := range []struct {
		name     string
		id       func(id identity.Identity) identity.Identity
		keyType  config.KeyType // of the published key; default ECDSA P-256, as configured
		now      time.Time
		reusable bool
	}{
		{name: "same identity, young", now: notBefore.Add(time.Hour), reusable: true},
		{name: "clock behind NotBefore", now: notBefore.Add(-time.Minute), reusable: true},
		{name: "at the renewal point", now: renewAt, reusable: true},
		{name: "just past the renewal point", now: renewAt.Add(time.Second)},
		{name: "expired", now: notAfter.Add(time.Hour)},
		{
			name: "names in another order", now: notBefore, reusable: true,
			id: func(id identity.Identity) identity.Identity {
				id.DNSNames = []string{"web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"}
				id.IPs = []net.IP{ips[1], ips[0]}
				return id
			},
		},
		{
			name: "IPv4 in 16-byte form", now: notBefore, reusable: true,
			id: func(id identity.Identity) identity.Identity {
				id.IPs = []net.IP{net.ParseIP("10.0.0.7"), ips[1]}
				return id
			},
		},
		{
			name: "a Service was added", now: notBefore,
			id: func(id identity.Identity) identity.Identity {
				id.DNSNames = append(append([]string(nil), names...), "api")
				return id
			},
		},
		{
			name: "a name was dropped", now: notBefore,
			id: func(id identity.Identity) identity.Identity {
				id.DNSNames = names[:3]
				return id
			},
		},
		{
			name: "another IP", now: notBefore,
			id: func(id identity.Identity) identity.Identity {
				id.IPs = []net.IP{net.ParseIP("10.0.0.8").To4(), ips[1]}
				return id
			},
		},
		{
			name: "no IP wanted any more", now: notBefore,
			id: func(id identity.Identity) identity.Identity {
				id.IPs = nil
				return id
			},
		},
		{
			name: "another common name", now: notBefore,
			id: func(id identity.Identity) identity.Identity {
				id.CommonName = "web"
				return id
			},
		},
		{name: "key of another type", now: notBefore, keyType: config.KeyEd25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testingclock.NewFakePassiveClock(tc.now)
			a := newTestAgent(t, &fakeAPI{}, clk)
			kt := tc.keyType
			if kt == "" {
				kt = config.KeyECDSAP256
			}
			id := wanted
			if tc.id != nil {
				id = tc.id(id)
			}
			key := newKey(t, kt)
			publish(t, a, key, ca.Issue(t, key.Public(), published))

			pub, ok := a.reusable(t.Context(), id)
			if ok != tc.reusable {
				t.Fatalf("reusable = %v, want %v", ok, tc.reusable)
			}
			if ok && !samePublic(pub.Key, key) {
				t.Error("returned another key than the published one")
			}
			if !ok && pub != nil {
				t.Error("returned a pair it says is not reusable")
			}
		})
	}
}

func TestReusableIsFalseWhenNothingUsableIsPublished(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		logPart string
	}{
		{name: "empty directory"},
		{name: "damaged", files: map[string]string{"tls.key": "garbage"}, logPart: "not usable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAgent(t, &fakeAPI{}, nil)
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(a.cfg.CertDir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var logs logCapture
			if pub, ok := a.reusable(logs.context(t), identity.Identity{CommonName: "web"}); ok || pub != nil {
				t.Fatalf("reusable = %v, %v; want nil, false", pub, ok)
			}
			if tc.logPart != "" && !logs.has(tc.logPart) {
				t.Errorf("no log line says %q: %q", tc.logPart, logs.lines)
			}
		})
	}
}

func TestInitKeepsAValidPublishedCertificateWithoutAskingForOne(t *testing.T) {
	// The fake API has no CSR client: any attempt to request panics.
	a := newTestAgent(t, &fakeAPI{}, testingclock.NewFakePassiveClock(notBefore.Add(time.Hour)))
	id, err := a.Identity(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t, config.KeyECDSAP256)
	chain := pkitest.NewCA(t).Issue(t, key.Public(), pkitest.Leaf{CN: id.CommonName, DNSNames: id.DNSNames, NotBefore: notBefore, NotAfter: notAfter})
	before := publish(t, a, key, chain)
	var logs logCapture
	if err := a.Init(logs.context(t)); err != nil {
		t.Fatal(err)
	}
	if !logs.has("Valid certificate already published") {
		t.Errorf("no log line says the certificate is kept: %q", logs.lines)
	}
	after, err := a.writer.Load()
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation {
		t.Errorf("generation %s replaced by %s", before.Generation, after.Generation)
	}
}

func publish(t *testing.T, a *Agent, key crypto.Signer, chain []byte) *writer.Published {
	t.Helper()
	keyPEM, err := issue.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := a.writer.Publish(writer.Material{KeyPEM: keyPEM, ChainPEM: chain})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func samePublic(a, b crypto.Signer) bool {
	pub, ok := a.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(b.Public())
}
