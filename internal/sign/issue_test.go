package sign

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/pki"
)

func TestTemplateIsBuiltOnlyFromTheGrant(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	key := newP256(t)
	g := approve.Grant{
		PublicKey: key.Public(),
		Names: approve.Names{
			CommonName:  "web.shop.svc",
			DNSNames:    []string{"web.shop.svc", "web"},
			IPAddresses: []net.IP{net.ParseIP("10.1.2.3").To4(), net.ParseIP("fd00::3")},
			URIs:        []*url.URL{must(url.Parse("spiffe://example.org/ns/shop/sa/web"))},
		},
		Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth},
	}
	tmpl, err := newIssuer(t, t0, Options{}).Template(ca, g)
	if err != nil {
		t.Fatal(err)
	}
	if want := (pkix.Name{CommonName: "web.shop.svc"}); !equalNames(tmpl.Subject, want) {
		t.Errorf("Subject = %+v, want CN only", tmpl.Subject)
	}
	if !slices.Equal(tmpl.DNSNames, g.Names.DNSNames) {
		t.Errorf("DNSNames = %q, want %q", tmpl.DNSNames, g.Names.DNSNames)
	}
	if !slices.EqualFunc(tmpl.IPAddresses, g.Names.IPAddresses, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", tmpl.IPAddresses, g.Names.IPAddresses)
	}
	if len(tmpl.URIs) != 1 || tmpl.URIs[0].String() != g.Names.URIs[0].String() {
		t.Errorf("URIs = %v, want %v", tmpl.URIs, g.Names.URIs)
	}
	if len(tmpl.EmailAddresses) != 0 || len(tmpl.ExtraExtensions) != 0 || len(tmpl.Extensions) != 0 {
		t.Errorf("template carries emails %q or extensions %v %v", tmpl.EmailAddresses, tmpl.ExtraExtensions, tmpl.Extensions)
	}
	if tmpl.IsCA || !tmpl.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want false, true", tmpl.IsCA, tmpl.BasicConstraintsValid)
	}
	if tmpl.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %b, want digitalSignature", tmpl.KeyUsage)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(tmpl.ExtKeyUsage, want) {
		t.Errorf("ExtKeyUsage = %v, want %v", tmpl.ExtKeyUsage, want)
	}
	if want := t0.Add(-DefaultBackdate); !tmpl.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want now - backdate = %s", tmpl.NotBefore, want)
	}
	if tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() <= 0 {
		t.Errorf("SerialNumber = %v, want positive", tmpl.SerialNumber)
	}
	g.Names.DNSNames[0] = "mutated"
	if tmpl.DNSNames[0] == "mutated" {
		t.Error("template aliases the grant's slices")
	}
}

func equalNames(a, b pkix.Name) bool {
	return a.CommonName == b.CommonName && a.ToRDNSequence().String() == b.ToRDNSequence().String() && len(a.ExtraNames) == 0
}

func TestKeyUsagesFollowKeyTypeAndRequest(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	const (
		ds = certificatesv1.UsageDigitalSignature
		ke = certificatesv1.UsageKeyEncipherment
		sa = certificatesv1.UsageServerAuth
		cl = certificatesv1.UsageClientAuth
	)
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		usages  []certificatesv1.KeyUsage
		wantKU  x509.KeyUsage
		wantEKU []x509.ExtKeyUsage
	}{
		{"ECDSA server", newP256(t).Public(), []certificatesv1.KeyUsage{ds, sa}, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"ECDSA asking key encipherment gets none", newP256(t).Public(), []certificatesv1.KeyUsage{ds, ke, sa}, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"RSA asking key encipherment", keyRSA2048().Public(), []certificatesv1.KeyUsage{ds, ke, sa}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"RSA not asking key encipherment", keyRSA2048().Public(), []certificatesv1.KeyUsage{sa}, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"client only", newP256(t).Public(), []certificatesv1.KeyUsage{cl}, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{"duplicates", newP256(t).Public(), []certificatesv1.KeyUsage{cl, sa, cl}, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := newIssuer(t, t0, Options{}).Template(ca, grantFor(tt.pub, tt.usages...))
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.KeyUsage != tt.wantKU {
				t.Errorf("KeyUsage = %b, want %b", tmpl.KeyUsage, tt.wantKU)
			}
			if !slices.Equal(tmpl.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", tmpl.ExtKeyUsage, tt.wantEKU)
			}
		})
	}
}

func TestTemplateRefusesAGrantThePolicyWouldNotMake(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	pub := newP256(t).Public()
	tests := []struct {
		name string
		g    approve.Grant
	}{
		{"CA usage", grantFor(pub, certificatesv1.UsageServerAuth, certificatesv1.UsageCertSign)},
		{"neither server nor client auth", grantFor(pub, certificatesv1.UsageDigitalSignature)},
		{"no key", grantFor(nil)},
		{"zero expiration", func() approve.Grant { g := grantFor(pub); g.ExpirationSeconds = int32p(0); return g }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := newIssuer(t, t0, Options{}).Template(ca, tt.g); !errors.Is(err, ErrInvalidGrant) {
				t.Errorf("Template error = %v, want ErrInvalidGrant", err)
			}
		})
	}
}

func TestNotAfterIsTheEarliestOfRequestMaximumAndCA(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{Validity: 48 * time.Hour})
	caEnd := ca.Certificate().NotAfter
	tests := []struct {
		name      string
		now       time.Time
		max       time.Duration
		requested *int32
		want      time.Time
	}{
		{"requested, shorter than the maximum", t0, 24 * time.Hour, int32p(3600), t0.Add(time.Hour)},
		{"not requested: the maximum", t0, 24 * time.Hour, nil, t0.Add(24 * time.Hour)},
		{"requested beyond the maximum", t0, time.Hour, int32p(7200), t0.Add(time.Hour)},
		{"the CA expires first", caEnd.Add(-2 * time.Hour), 24 * time.Hour, int32p(10 * 3600), caEnd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := newIssuer(t, tt.now, Options{MaxExpiration: tt.max}).Template(ca, func() approve.Grant {
				g := grantFor(newP256(t).Public())
				g.ExpirationSeconds = tt.requested
				return g
			}())
			if err != nil {
				t.Fatal(err)
			}
			if !tmpl.NotAfter.Equal(tt.want) {
				t.Errorf("NotAfter = %s, want %s", tmpl.NotAfter, tt.want)
			}
		})
	}
}

func TestNotBeforeIsBackdatedButNotBeforeTheCA(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{Backdate: time.Minute})
	tmpl, err := newIssuer(t, t0, Options{Backdate: 30 * time.Minute}).Template(ca, grantFor(newP256(t).Public()))
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(-time.Minute); !tmpl.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want the CA's %s", tmpl.NotBefore, want)
	}
}

func TestRefusesToIssueWhenTheCAExpiresTooSoon(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{Validity: 24 * time.Hour})
	end := ca.Certificate().NotAfter
	for _, now := range []time.Time{end.Add(-5 * time.Minute), end, end.Add(time.Hour)} {
		_, err := newIssuer(t, now, Options{MinValidity: 10 * time.Minute}).Template(ca, grantFor(newP256(t).Public()))
		if !errors.Is(err, ErrCAExpired) {
			t.Errorf("at %s: Template error = %v, want ErrCAExpired", now, err)
		}
	}
}

func TestSerialIs128BitsFromTheInjectedRand(t *testing.T) {
	ca := selfSignedAt(t, t0, SelfSignedOptions{})
	g := grantFor(newP256(t).Public())
	seq := make([]byte, 16)
	for i := range seq {
		seq[i] = byte(i + 1)
	}
	tests := []struct {
		name    string
		rand    []byte
		want    *big.Int
		wantErr bool
	}{
		{"all ones", bytes.Repeat([]byte{0xff}, 16), new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1)), false},
		{"sequence, extra bytes unread", append(slices.Clone(seq), 0xaa), new(big.Int).SetBytes(seq), false},
		{"all zero", make([]byte, 16), nil, true},
		{"short", make([]byte, 15), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := newIssuer(t, t0, Options{Rand: bytes.NewReader(tt.rand)}).Template(ca, g)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Template = serial %v, want error", tmpl.SerialNumber)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tmpl.SerialNumber.Cmp(tt.want) != 0 {
				t.Errorf("SerialNumber = %x, want %x", tmpl.SerialNumber, tt.want)
			}
		})
	}
	iss := newIssuer(t, t0, Options{})
	seen := map[string]bool{}
	for range 64 {
		tmpl, err := iss.Template(ca, g)
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.SerialNumber.BitLen() > 128 || seen[tmpl.SerialNumber.String()] {
			t.Fatalf("serial %x longer than 128 bits or repeated", tmpl.SerialNumber)
		}
		seen[tmpl.SerialNumber.String()] = true
	}
}

// approveCSR runs the policy on a CSR from pod shop/web-0, selected by
// Service "web".
func approveCSR(t *testing.T, tmpl *x509.CertificateRequest, key crypto.Signer) (*x509.CertificateRequest, approve.Decision) {
	t.Helper()
	der := must(x509.CreateCertificateRequest(rand.Reader, tmpl, key))
	csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
		SignerName: approve.SignerName,
		Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		Username:   "system:serviceaccount:shop:web",
		Extra:      map[string]certificatesv1.ExtraValue{approve.ExtraPodName: {"web-0"}, approve.ExtraPodUID: {"uid-1"}},
	}}
	facts := approve.Facts{
		Pod: &approve.Pod{Namespace: "shop", Name: "web-0", UID: "uid-1", ServiceAccountName: "web", Phase: corev1.PodRunning,
			PodIPs: []string{"10.1.2.3"}, Labels: map[string]string{"app": "web"}},
		Services: []approve.Service{{Namespace: "shop", Name: "web", Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.0.10"}}},
	}
	p := must(approve.New(approve.Options{}))
	return must(x509.ParseCertificateRequest(der)), p.Decide(csr, facts)
}

func TestSignedLeafVerifiesAgainstTheCAForTheRequestedName(t *testing.T) {
	root := selfSignedAt(t, t0, SelfSignedOptions{})
	// An intermediate signing CA under its own root, as an operator might
	// provide: tls.crt = intermediate, ca.crt = root.
	rootKey := newP256(t)
	rootCert, rootPEM := makeCert(t, caTemplate("root", t0.Add(-time.Hour), t0.Add(1000*time.Hour)), rootKey, nil, nil)
	interKey := newP256(t)
	_, interPEM := makeCert(t, caTemplate("intermediate", t0.Add(-time.Hour), t0.Add(500*time.Hour)), interKey, rootCert, rootKey)
	inter := must(ParseCA(PEMs{Cert: interPEM, Key: pkcs8PEM(interKey), CA: rootPEM}, t0))

	for name, ca := range map[string]*CA{"self-signed root": root, "intermediate": inter} {
		t.Run(name, func(t *testing.T) {
			_, d := approveCSR(t, &x509.CertificateRequest{DNSNames: []string{"web.shop.svc.cluster.local"}, IPAddresses: []net.IP{net.ParseIP("10.96.0.10")}}, newP256(t))
			if !d.Approve {
				t.Fatalf("policy denied: %s %s", d.Reason, d.Message)
			}
			issued, err := newIssuer(t, t0, Options{}).Issue(ca, *d.Grant)
			if err != nil {
				t.Fatal(err)
			}
			certs := must(pki.ParseCertificates(issued.PEM))
			if !certs[0].Equal(issued.Leaf) {
				t.Fatal("status.certificate does not start with the leaf")
			}
			opts := x509.VerifyOptions{
				DNSName:       "web.shop.svc.cluster.local",
				Roots:         x509.NewCertPool(),
				Intermediates: x509.NewCertPool(),
				CurrentTime:   t0.Add(time.Hour),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			opts.Roots.AppendCertsFromPEM(ca.TrustBundle())
			for _, c := range certs[1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := issued.Leaf.Verify(opts); err != nil {
				t.Errorf("leaf does not verify for its DNS name: %v", err)
			}
			if err := issued.Leaf.VerifyHostname("10.96.0.10"); err != nil {
				t.Errorf("leaf does not verify for its IP: %v", err)
			}
			opts.DNSName = "web.bank.svc.cluster.local"
			if _, err := issued.Leaf.Verify(opts); err == nil {
				t.Error("leaf verifies for a name it was not issued for")
			}
		})
	}
}

func TestExtensionsRequestedInTheCSRNeverReachTheLeaf(t *testing.T) {
	unknown := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7}
	key := newP256(t)
	req, d := approveCSR(t, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "web", Organization: []string{"system:masters"}},
		DNSNames:       []string{"web.shop.svc.cluster.local"},
		EmailAddresses: []string{"root@example.com"},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: must(asn1.Marshal(struct{ IsCA bool }{true}))},
			{Id: unknown, Value: []byte{0x05, 0x00}},
		},
	}, key)
	if d.Approve {
		t.Fatal("policy approved a CSR asking for a CA")
	}
	// Even a grant naming the same key (say, a controller bug) yields only
	// what the grant holds.
	g := grantFor(req.PublicKey)
	issued, err := newIssuer(t, t0, Options{}).Issue(selfSignedAt(t, t0, SelfSignedOptions{}), g)
	if err != nil {
		t.Fatal(err)
	}
	leaf := issued.Leaf
	if leaf.IsCA || len(leaf.Subject.Organization) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf IsCA=%v O=%q emails=%q, want none of them", leaf.IsCA, leaf.Subject.Organization, leaf.EmailAddresses)
	}
	allowed := []string{"2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.17", "2.5.29.35"} // KU, EKU, BC, SAN, AKI
	for _, e := range leaf.Extensions {
		if !slices.Contains(allowed, e.Id.String()) {
			t.Errorf("leaf has extension %s", e.Id)
		}
	}
}

func TestIssuerOptionsAreValidated(t *testing.T) {
	_, err := New(Options{MaxExpiration: time.Minute, Backdate: -time.Second, MinValidity: time.Hour})
	for _, want := range []string{"MaxExpiration", "Backdate", "MinValidity"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error = %v, want it to name %s", err, want)
		}
	}
}
