package approve

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"strings"
	"testing"
)

// FuzzDecideNeverApprovesArbitraryRequests feeds arbitrary bytes as
// spec.request of an otherwise legitimate pod CSR. The seeds are well-signed
// requests that must be denied; a mutation can only keep a valid signature
// by leaving the signed part unchanged, so nothing the fuzzer makes may be
// approved, and nothing may panic.
func FuzzDecideNeverApprovesArbitraryRequests(f *testing.F) {
	p := newTestPolicy(f, Options{TrustDomain: "example.org"})
	for _, tmpl := range []*x509.CertificateRequest{
		{DNSNames: []string{"web.bank.svc.cluster.local"}},
		{DNSNames: []string{"*.shop.svc.cluster.local"}},
		{Subject: pkix.Name{CommonName: "web", Organization: []string{"system:masters"}}, DNSNames: []string{"web.shop.svc"}},
		{IPAddresses: ips("10.1.2.4")},
		{URIs: []*url.URL{mustURL("spiffe://example.org/ns/kube-system/sa/admin")}},
		{DNSNames: []string{"web.shop.svc"}, ExtraExtensions: []pkix.Extension{basicConstraintsCA()}},
	} {
		f.Add(csrPEM(f, tmpl, nil))
	}
	f.Add(csrPEM(f, dnsReq("web.shop.svc"), keyRSA1024()))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, request []byte) {
		d := p.Decide(podCSR(request), testFacts())
		if d.Approve || d.Grant != nil {
			t.Fatalf("approved arbitrary request %q: %+v", request, d)
		}
		if d.Reason == "" || d.Message == "" {
			t.Fatalf("denial without reason or message: %+v", d)
		}
	})
}

// FuzzDecideApprovedNeverGrantsWhatTheTemplateForbids: a person's approval
// lets any well-formed name through, but whatever the request, a grant
// never holds a wildcard, an email address or a CA's usage, and nothing
// panics.
func FuzzDecideApprovedNeverGrantsWhatTheTemplateForbids(f *testing.F) {
	p := newTestPolicy(f, Options{TrustDomain: "example.org"})
	for _, tmpl := range []*x509.CertificateRequest{
		{DNSNames: []string{"legacy.example.com"}},
		{DNSNames: []string{"*.example.com"}},
		{Subject: pkix.Name{CommonName: "a.example.com"}, DNSNames: []string{"a.example.com"}, EmailAddresses: []string{"a@example.com"}},
		{DNSNames: []string{"a"}, ExtraExtensions: []pkix.Extension{basicConstraintsCA()}},
	} {
		f.Add(csrPEM(f, tmpl, nil))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, request []byte) {
		csr := userCSR(request)
		d := p.DecideApproved(csr, Facts{})
		if !d.Approve {
			if d.Reason == "" || d.Message == "" || d.Grant != nil {
				t.Fatalf("refusal without reason or message, or with a grant: %+v", d)
			}
			return
		}
		for _, n := range append([]string{d.Grant.Names.CommonName}, d.Grant.Names.DNSNames...) {
			if strings.Contains(n, "*") || strings.Contains(n, "@") {
				t.Fatalf("granted %q", n)
			}
		}
		for _, u := range d.Grant.Usages {
			if u == "cert sign" || u == "crl sign" {
				t.Fatalf("granted usage %q", u)
			}
		}
	})
}
