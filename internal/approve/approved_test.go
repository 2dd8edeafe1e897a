package approve

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"slices"
	"strings"
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

func TestApprovedRequestIsSignedForItsOwnOrExplicitlyGrantedNames(t *testing.T) {
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
		name:    "a pod's request for its own names",
		csr:     podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil)),
		facts:   testFacts(),
		wantDNS: []string{"web.shop.svc"},
	}, {
		name:    "a pod's request, names outside its Services granted by an approver",
		csr:     podCSR(csrPEM(t, &x509.CertificateRequest{DNSNames: []string{"web.shop.svc", "Web.Example.com"}, IPAddresses: ips("192.0.2.7")}, nil)),
		facts:   Facts{Pod: testPodFacts(), Services: testServices(), Extra: mustExtra(t, "web.example.com, 192.0.2.7")},
		wantDNS: []string{"web.shop.svc", "web.example.com"},
		wantIPs: []string{"192.0.2.7"},
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

// An approval by itself is not a grant: whoever clicked approve, a pod-bound
// request gets no name the pod does not own unless the extra-names
// annotation (reserved to approvers by admission) grants it.
func TestApprovalAloneDoesNotExtendAPodsNames(t *testing.T) {
	p := newTestPolicy(t, Options{})
	tests := []struct {
		name       string
		req        *x509.CertificateRequest
		facts      Facts
		wantReason string
		wantInMsg  string
	}{
		{"outside name, no annotation", dnsReq("web.example.com"), testFacts(), ReasonDNSNameNotAllowed, AnnotationExtraNames},
		{"another namespace's service", dnsReq("web.bank.svc"), testFacts(), ReasonDNSNameNotAllowed, "web.bank.svc"},
		{"an IP that is not the pod's", &x509.CertificateRequest{IPAddresses: ips("192.0.2.7")}, testFacts(), ReasonIPNotAllowed, AnnotationExtraNames},
		{"granted names do not cover the request", dnsReq("api.example.com"), func() Facts {
			f := testFacts()
			f.Extra = mustExtra(t, "web.example.com")
			return f
		}(), ReasonDNSNameNotAllowed, "api.example.com"},
		{"annotation present but not honoured", dnsReq("web.example.com"), func() Facts {
			f := testFacts()
			f.Extra = ExtraNames{Ignored: "policy csr-agent-extra-names is not installed"}
			return f
		}(), ReasonDNSNameNotAllowed, "is not installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.DecideApproved(podCSR(csrPEM(t, tt.req, nil)), tt.facts)
			if d.Approve || d.Reason != tt.wantReason || !strings.Contains(d.Message, tt.wantInMsg) {
				t.Errorf("DecideApproved = %v %s (%s), want %s mentioning %q", d.Approve, d.Reason, d.Message, tt.wantReason, tt.wantInMsg)
			}
		})
	}
}

func TestDecideIgnoresGrantedNames(t *testing.T) {
	f := testFacts()
	f.Extra = mustExtra(t, "web.example.com")
	if d := newTestPolicy(t, Options{}).Decide(podCSR(csrPEM(t, dnsReq("web.example.com"), nil)), f); d.Reason != ReasonDNSNameNotAllowed {
		t.Errorf("Decide = %s (%s), want %s: the controller's own approval never grants extra names", d.Reason, d.Message, ReasonDNSNameNotAllowed)
	}
}

func TestParseExtraNamesRefusesAnyBadEntry(t *testing.T) {
	for _, bad := range []string{"*.example.com", "example.com.", "a b", "0.0.0.0", "::", "fe80::1%eth0", "web.example.com,*"} {
		if _, err := ParseExtraNames(bad); err == nil || !strings.Contains(err.Error(), AnnotationExtraNames) {
			t.Errorf("ParseExtraNames(%q) error = %v, want one naming the annotation", bad, err)
		}
	}
	got, err := ParseExtraNames(" Web.Example.com ,, 192.0.2.7,::ffff:192.0.2.8 ")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.DNSNames, []string{"web.example.com"}) || len(got.IPs) != 2 || got.IPs[1].String() != "192.0.2.8" {
		t.Errorf("ParseExtraNames = %+v", got)
	}
}

func mustExtra(t *testing.T, value string) ExtraNames {
	t.Helper()
	e, err := ParseExtraNames(value)
	if err != nil {
		t.Fatal(err)
	}
	return e
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
