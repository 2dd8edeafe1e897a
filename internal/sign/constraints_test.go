package sign

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// constrainedCA is a CA made as the controller makes one by default.
func constrainedCA(t *testing.T) *CA {
	t.Helper()
	p, err := approve.New(approve.Options{TrustDomain: "example.org"})
	if err != nil {
		t.Fatal(err)
	}
	dns, uri := p.NameConstraints()
	return selfSignedAt(t, t0, SelfSignedOptions{PermittedDNSDomains: dns, PermittedURIDomains: uri})
}

func TestGeneratedCAIsNameConstrainedToTheClustersForms(t *testing.T) {
	ca := constrainedCA(t).Certificate()
	if !ca.PermittedDNSDomainsCritical {
		t.Error("name constraints are not critical")
	}
	if got := strings.Join(ca.PermittedDNSDomains, ","); got != "cluster.local,svc" {
		t.Errorf("permitted DNS subtrees %q, want cluster.local,svc", got)
	}
	if got := strings.Join(ca.PermittedURIDomains, ","); got != "example.org" {
		t.Errorf("permitted URI subtrees %q, want example.org", got)
	}
}

// Even a leaf the signer would never make (signed here directly, as a
// wrongly approved request or a misused key would be) does not verify for
// a name outside the constraints, while the cluster's forms do.
func TestLeafForAnOutsideNameDoesNotVerifyUnderTheGeneratedCA(t *testing.T) {
	ca := constrainedCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	for name, ok := range map[string]bool{
		"web.shop.svc.cluster.local":      true,
		"web.shop.svc":                    true,
		"10-1-2-3.shop.pod.cluster.local": true,
		"google.com":                      false,
		"web.shop":                        false,
		"localhost":                       false,
		"cluster.local.evil.example":      false,
	} {
		tmpl := &x509.Certificate{SerialNumber: must(randomSerial(rand.Reader)), DNSNames: []string{name}, NotBefore: t0, NotAfter: t0.AddDate(0, 0, 1),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		issued, err := Sign(ca, tmpl, newP256(t).Public())
		if err != nil {
			t.Fatal(err)
		}
		_, err = issued.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, CurrentTime: t0.Add(time.Hour)})
		if (err == nil) != ok {
			t.Errorf("%s: verify error %v, want ok=%v", name, err, ok)
		}
	}
}

func TestSignerRefusesNamesOutsideItsCAsConstraints(t *testing.T) {
	ca := constrainedCA(t)
	i := newIssuer(t, t0, Options{})
	for _, names := range []approve.Names{
		{DNSNames: []string{"web.shop.svc.cluster.local", "legacy.example.com"}},
		{URIs: []*url.URL{must(url.Parse("spiffe://evil.example/ns/shop/sa/web"))}},
	} {
		g := grantFor(newP256(t).Public())
		g.Names = names
		if _, err := i.Template(ca, g); !errors.Is(err, ErrInvalidGrant) {
			t.Errorf("Template(%+v) error = %v, want ErrInvalidGrant", names, err)
		}
	}
	g := grantFor(newP256(t).Public())
	g.Names.URIs = []*url.URL{must(url.Parse("spiffe://example.org/ns/shop/sa/web"))}
	if _, err := i.Template(ca, g); err != nil {
		t.Errorf("Template within the constraints: %v", err)
	}
}
