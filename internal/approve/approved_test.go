package approve

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"slices"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// userCSR is a CSR created by a person, not by a pod.
func userCSR(request []byte) *certificatesv1.CertificateSigningRequest {
	c := podCSR(request)
	c.Spec.Username, c.Spec.Groups, c.Spec.Extra = "alice", []string{"system:authenticated"}, nil
	return c
}

func TestApprovedRequestIsSignedForTheNamesItAsksWhenWellFormed(t *testing.T) {
	p := newTestPolicy(t, Options{TrustDomain: "example.org"})
	tests := []struct {
		name    string
		csr     *certificatesv1.CertificateSigningRequest
		facts   Facts
		wantDNS []string
		wantIPs []string
		wantURI string
		wantCN  string
	}{{
		name:    "a person's request for names no pod owns",
		csr:     userCSR(csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "Legacy.Example.com"}, DNSNames: []string{"legacy.example.com"}, IPAddresses: ips("192.0.2.7")}, nil)),
		wantDNS: []string{"legacy.example.com"},
		wantIPs: []string{"192.0.2.7"},
		wantCN:  "legacy.example.com",
	}, {
		name:    "a pod's request, pod alive, name outside its Services",
		csr:     podCSR(csrPEM(t, dnsReq("web.example.com"), nil)),
		facts:   Facts{Pod: testPodFacts()},
		wantDNS: []string{"web.example.com"},
	}, {
		name:    "a pod's SPIFFE ID",
		csr:     podCSR(csrPEM(t, &x509.CertificateRequest{URIs: []*url.URL{mustURL(spiffeID)}}, nil)),
		facts:   Facts{Pod: testPodFacts()},
		wantURI: spiffeID,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.DecideApproved(tt.csr, tt.facts)
			if !d.Approve {
				t.Fatalf("DecideApproved = %s: %s", d.Reason, d.Message)
			}
			n := d.Grant.Names
			var gotIPs, gotURIs []string
			for _, ip := range n.IPAddresses {
				gotIPs = append(gotIPs, ip.String())
			}
			for _, u := range n.URIs {
				gotURIs = append(gotURIs, u.String())
			}
			if !slices.Equal(n.DNSNames, tt.wantDNS) || !slices.Equal(gotIPs, tt.wantIPs) || n.CommonName != tt.wantCN {
				t.Errorf("names = %+v, want DNS %q IPs %q CN %q", n, tt.wantDNS, tt.wantIPs, tt.wantCN)
			}
			if (tt.wantURI == "") != (len(gotURIs) == 0) || (tt.wantURI != "" && gotURIs[0] != tt.wantURI) {
				t.Errorf("URIs = %q, want %q", gotURIs, tt.wantURI)
			}
		})
	}
}

func TestApprovedRequestStillObeysTheTemplateRules(t *testing.T) {
	p := newTestPolicy(t, Options{TrustDomain: "example.org"})
	gone := testPodFacts()
	gone.UID = "another-uid"
	finished := testPodFacts()
	finished.Phase = corev1.PodSucceeded
	tests := []struct {
		name  string
		csr   *certificatesv1.CertificateSigningRequest
		facts Facts
		want  string
	}{
		{"wildcard", userCSR(csrPEM(t, dnsReq("*.example.com"), nil)), Facts{}, ReasonWildcardNotAllowed},
		{"not a DNS name", userCSR(csrPEM(t, dnsReq("under_score.example.com"), nil)), Facts{}, ReasonDNSNameNotAllowed},
		{"trailing dot", userCSR(csrPEM(t, dnsReq("example.com."), nil)), Facts{}, ReasonDNSNameNotAllowed},
		{"unspecified IP", userCSR(csrPEM(t, &x509.CertificateRequest{IPAddresses: ips("0.0.0.0")}, nil)), Facts{}, ReasonIPNotAllowed},
		{"email", userCSR(csrPEM(t, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, EmailAddresses: []string{"a@example.com"}}, nil)), Facts{}, ReasonEmailSANNotAllowed},
		{"URI from a plain user", userCSR(csrPEM(t, &x509.CertificateRequest{URIs: []*url.URL{mustURL(spiffeID)}}, nil)), Facts{}, ReasonURISANNotAllowed},
		{"another service account's SPIFFE ID", podCSR(csrPEM(t, &x509.CertificateRequest{URIs: []*url.URL{mustURL("spiffe://example.org/ns/shop/sa/admin")}}, nil)), Facts{Pod: testPodFacts()}, ReasonURISANNotAllowed},
		{"CN not among the DNS names", userCSR(csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "other.example.com"}, DNSNames: []string{"a.example.com"}}, nil)), Facts{}, ReasonCommonNameNotAllowed},
		{"no names", userCSR(csrPEM(t, &x509.CertificateRequest{}, nil)), Facts{}, ReasonNoNames},
		{"organization", userCSR(csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"system:masters"}}, DNSNames: []string{"a.example.com"}}, nil)), Facts{}, ReasonSubjectNotAllowed},
		{"CA", userCSR(csrPEM(t, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, ExtraExtensions: []pkix.Extension{ext(oidBasicConstraints, struct{ IsCA bool }{true})}}, nil)), Facts{}, ReasonCARequested},
		{"unknown extension", userCSR(csrPEM(t, &x509.CertificateRequest{DNSNames: []string{"a.example.com"}, ExtraExtensions: []pkix.Extension{ext(asn1.ObjectIdentifier{1, 2, 3, 4}, 1)}}, nil)), Facts{}, ReasonExtensionNotAllowed},
		{"weak key", userCSR(csrPEM(t, dnsReq("a.example.com"), keyRSA1024())), Facts{}, ReasonWeakKey},
		{"too long", func() *certificatesv1.CertificateSigningRequest {
			c := userCSR(csrPEM(t, dnsReq("a.example.com"), nil))
			c.Spec.ExpirationSeconds = int32p(7 * 24 * 3600)
			return c
		}(), Facts{}, ReasonExpirationTooLong},
		{"pod gone", podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil)), Facts{}, ReasonPodNotFound},
		{"pod re-created under the same name", podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil)), Facts{Pod: gone}, ReasonPodUIDMismatch},
		{"pod finished", podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil)), Facts{Pod: finished}, ReasonPodFinished},
		{"another signer", func() *certificatesv1.CertificateSigningRequest {
			c := userCSR(csrPEM(t, dnsReq("a.example.com"), nil))
			c.Spec.SignerName = "example.com/other"
			return c
		}(), Facts{}, ReasonSignerNameMismatch},
		{"nil", nil, Facts{}, ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.DecideApproved(tt.csr, tt.facts)
			if d.Approve || d.Reason != tt.want || d.Grant != nil {
				t.Errorf("DecideApproved = %v %s: %s; want %s", d.Approve, d.Reason, d.Message, tt.want)
			}
		})
	}
}

func TestPolicyActsForItsConfiguredSignerName(t *testing.T) {
	p := newTestPolicy(t, Options{SignerName: "example.com/pods"})
	csr := podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil))
	if got := p.Classify(csr); got != StateIgnored {
		t.Errorf("Classify of a %s CSR = %s, want Ignored", SignerName, got)
	}
	if d := p.Decide(csr, testFacts()); d.Reason != ReasonSignerNameMismatch {
		t.Errorf("Decide of a %s CSR = %s, want %s", SignerName, d.Reason, ReasonSignerNameMismatch)
	}
	csr.Spec.SignerName = "example.com/pods"
	if got := p.Classify(csr); got != StatePending {
		t.Errorf("Classify = %s, want Pending", got)
	}
	if d := p.Decide(csr, testFacts()); !d.Approve {
		t.Errorf("Decide = %s: %s, want approval", d.Reason, d.Message)
	}
	if _, err := New(Options{SignerName: "no-slash"}); err == nil {
		t.Error("New accepted a signer name without a path")
	}
}

func TestOnlyDenialsAboutThePodOrItsServicesDependOnFacts(t *testing.T) {
	p := newTestPolicy(t, Options{})
	// A reason that claims not to depend on facts must deny whatever the
	// facts: with the pod alive, gone, or re-created.
	recreated := testPodFacts()
	recreated.UID = "other"
	facts := []Facts{testFacts(), {}, {Pod: recreated, Services: testServices()}}
	requests := map[string]*certificatesv1.CertificateSigningRequest{
		"wildcard": podCSR(csrPEM(t, dnsReq("*.shop.svc"), nil)),
		"weak key": podCSR(csrPEM(t, dnsReq("web.shop.svc"), keyRSA1024())),
		"email":    podCSR(csrPEM(t, &x509.CertificateRequest{DNSNames: []string{"web.shop.svc"}, EmailAddresses: []string{"a@b.c"}}, nil)),
		"no names": podCSR(csrPEM(t, &x509.CertificateRequest{}, nil)),
	}
	for name, csr := range requests {
		for _, f := range facts {
			if d := p.Decide(csr, f); d.Approve || DependsOnFacts(d.Reason) && f.Pod != nil && f.Pod.UID == testUID {
				t.Errorf("%s with pod %+v: %v %s", name, f.Pod, d.Approve, d.Reason)
			}
		}
	}
	for _, r := range []string{ReasonPodNotFound, ReasonPodUIDMismatch, ReasonServiceAccountMismatch, ReasonPodTerminating,
		ReasonPodFinished, ReasonDNSNameNotAllowed, ReasonIPNotAllowed, ReasonCommonNameNotAllowed, ReasonURISANNotAllowed, "SomethingNew"} {
		if !DependsOnFacts(r) {
			t.Errorf("DependsOnFacts(%s) = false", r)
		}
	}
	for _, r := range []string{ReasonWildcardNotAllowed, ReasonWeakKey, ReasonNotPodBound, ReasonCARequested, ReasonEmailSANNotAllowed, ReasonNoNames} {
		if DependsOnFacts(r) {
			t.Errorf("DependsOnFacts(%s) = true", r)
		}
	}
}
