package approve

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"slices"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	testSAUID = "6f1c0a4e-0000-4000-8000-0000000000aa"
	testNode  = "node-a"
)

// stubRequest is what the kubelet sends: an empty PKCS#10 request signed
// with the new key.
func stubRequest(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func testPCR(t testing.TB, key crypto.Signer, annotations map[string]string) *certificatesv1.PodCertificateRequest {
	return &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "req-1"},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName:                SignerName,
			PodName:                   testPod,
			PodUID:                    testUID,
			ServiceAccountName:        testSA,
			ServiceAccountUID:         testSAUID,
			NodeName:                  testNode,
			NodeUID:                   "node-uid",
			MaxExpirationSeconds:      int32p(86400),
			StubPKCS10Request:         stubRequest(t, key, nil),
			UnverifiedUserAnnotations: annotations,
		},
	}
}

func testPCRFacts() PodCertificateFacts {
	f := testFacts()
	f.Pod.NodeName = testNode
	return PodCertificateFacts{Facts: f, ServiceAccountUID: testSAUID}
}

func webNames(svcs ...string) []string {
	var out []string
	for _, s := range svcs {
		out = append(out, s+"."+testNS+".svc."+testDomain)
	}
	return out
}

func TestDecidePodCertificateGrantsExactlyThePodsNamesNarrowedOnlyByHints(t *testing.T) {
	p := newTestPolicy(t, Options{})
	podIPName := "10-1-2-3." + testNS + ".pod." + testDomain
	headless := "web-0.web-hl." + testNS + ".svc." + testDomain
	cases := []struct {
		name        string
		annotations map[string]string
		wantDNS     []string // checked as a subset, plus absent ones below
		absentDNS   []string
		wantIPs     []string
		absentIPs   []string
		wantUsages  []certificatesv1.KeyUsage
	}{
		{
			name:      "no hint: every Service selecting the pod, headless name, pod IPs",
			wantDNS:   append(webNames("web", "web-hl", "front"), headless, podIPName),
			absentDNS: webNames("db", "manual", "ext"),
			wantIPs:   []string{"10.1.2.3", "fd00:10::3", "10.96.0.10", "fd00:96::10", "10.96.0.20"},
			absentIPs: []string{"10.96.0.30", "10.96.1.10"},
			wantUsages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment,
				certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth},
		},
		{
			name:        "services hint keeps only the listed Services",
			annotations: map[string]string{AnnotationServices: "web"},
			wantDNS:     append(webNames("web"), podIPName),
			absentDNS:   append(webNames("front", "web-hl"), headless),
			wantIPs:     []string{"10.1.2.3", "10.96.0.10"},
			absentIPs:   []string{"10.96.0.20"},
		},
		{
			name:        "empty services hint: no Service name at all",
			annotations: map[string]string{AnnotationServices: ""},
			wantDNS:     []string{podIPName},
			absentDNS:   webNames("web", "front", "web-hl"),
		},
		{
			name:        "client usage hint",
			annotations: map[string]string{AnnotationUsage: UsageClient},
			wantDNS:     webNames("web"),
			wantUsages:  []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
		{
			name:        "server usage hint",
			annotations: map[string]string{AnnotationUsage: UsageServer},
			wantUsages:  []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := p.DecidePodCertificate(testPCR(t, keyP256(), tc.annotations), testPCRFacts())
			if !d.Approve {
				t.Fatalf("denied %s: %s", d.Reason, d.Message)
			}
			g := d.Grant
			for _, n := range tc.wantDNS {
				if !slices.Contains(g.Names.DNSNames, n) {
					t.Errorf("DNS names %q lack %q", g.Names.DNSNames, n)
				}
			}
			for _, n := range tc.absentDNS {
				if slices.Contains(g.Names.DNSNames, n) {
					t.Errorf("DNS names %q include %q", g.Names.DNSNames, n)
				}
			}
			hasIP := func(s string) bool {
				return slices.ContainsFunc(g.Names.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP(s)) })
			}
			for _, ip := range tc.wantIPs {
				if !hasIP(ip) {
					t.Errorf("IPs %v lack %s", g.Names.IPAddresses, ip)
				}
			}
			for _, ip := range tc.absentIPs {
				if hasIP(ip) {
					t.Errorf("IPs %v include %s", g.Names.IPAddresses, ip)
				}
			}
			if tc.wantUsages != nil && !slices.Equal(g.Usages, tc.wantUsages) {
				t.Errorf("usages %q, want %q", g.Usages, tc.wantUsages)
			}
			if g.Names.CommonName != "" {
				t.Errorf("common name %q, want none", g.Names.CommonName)
			}
			if g.ExpirationSeconds == nil || *g.ExpirationSeconds != 86400 {
				t.Errorf("expirationSeconds %v, want spec.maxExpirationSeconds", g.ExpirationSeconds)
			}
		})
	}
}

func TestDecidePodCertificateDeniesWhatThePodDoesNotOwnOrIsNotAnymore(t *testing.T) {
	p := newTestPolicy(t, Options{})
	cases := []struct {
		name string
		edit func(*certificatesv1.PodCertificateRequest, *PodCertificateFacts)
		want string
	}{
		{"another signer", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.SignerName = "example.com/x"
		}, ReasonSignerNameMismatch},
		{"hint naming a Service that does not select the pod", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.UnverifiedUserAnnotations = map[string]string{AnnotationServices: "web,db"}
		}, ReasonInvalidUserAnnotations},
		{"hint naming another namespace's Service", func(r *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) {
			r.Spec.UnverifiedUserAnnotations = map[string]string{AnnotationServices: "web"}
			f.Services = slices.DeleteFunc(f.Services, func(s Service) bool { return s.Namespace == testNS && s.Name == "web" })
		}, ReasonInvalidUserAnnotations},
		{"hint that is not a Service name", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.UnverifiedUserAnnotations = map[string]string{AnnotationServices: "web.bank"}
		}, ReasonInvalidUserAnnotations},
		{"unknown key of our prefix", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.UnverifiedUserAnnotations = map[string]string{AnnotationPrefix + "dns-names": "bank.example.com"}
		}, ReasonInvalidUserAnnotations},
		{"unknown key of another prefix", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.UnverifiedUserAnnotations = map[string]string{"example.com/sans": "x"}
		}, ReasonInvalidUserAnnotations},
		{"usage hint asking for both", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.UnverifiedUserAnnotations = map[string]string{AnnotationUsage: "server,client"}
		}, ReasonInvalidUserAnnotations},
		{"P-521 key", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.StubPKCS10Request = stubRequest(t, keyP521(), nil)
		}, ReasonUnsupportedKeyType},
		{"RSA 1024 key", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.StubPKCS10Request = stubRequest(t, keyRSA1024(), nil)
		}, ReasonUnsupportedKeyType},
		{"signature over another key", func(r *certificatesv1.PodCertificateRequest, _ *PodCertificateFacts) {
			r.Spec.StubPKCS10Request = stubRequest(t, keyP256(), nil)
			r.Spec.StubPKCS10Request[len(r.Spec.StubPKCS10Request)-3] ^= 0xff
		}, ""}, // InvalidRequest or SignatureInvalid: the bytes decide
		{"pod gone", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) { f.Pod = nil }, ReasonPodNotFound},
		{"pod re-created under the same name", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) {
			f.Pod.UID = "6f1c0a4e-0000-4000-8000-000000000099"
		}, ReasonPodUIDMismatch},
		{"pod runs as another service account", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) {
			f.Pod.ServiceAccountName = "admin"
		}, ReasonServiceAccountMismatch},
		{"service account re-created", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) {
			f.ServiceAccountUID = types.UID("other")
		}, ReasonServiceAccountMismatch},
		{"pod on another node", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) { f.Pod.NodeName = "node-b" }, ReasonNodeMismatch},
		{"terminating pod", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) { f.Pod.Terminating = true }, ReasonPodTerminating},
		{"finished pod", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) { f.Pod.Phase = "Succeeded" }, ReasonPodFinished},
		{"nothing to certify", func(_ *certificatesv1.PodCertificateRequest, f *PodCertificateFacts) {
			f.Pod.PodIPs, f.Services = nil, nil
		}, ReasonNoNames},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pcr, facts := testPCR(t, keyP256(), nil), testPCRFacts()
			tc.edit(pcr, &facts)
			d := p.DecidePodCertificate(pcr, facts)
			if d.Approve || d.Grant != nil {
				t.Fatalf("approved, want %s", tc.want)
			}
			if tc.want != "" && d.Reason != tc.want {
				t.Errorf("reason %s (%s), want %s", d.Reason, d.Message, tc.want)
			}
			if d.Message == "" {
				t.Error("no message")
			}
		})
	}
}

func TestDecidePodCertificateIgnoresTheStubRequestsNamesAndSubject(t *testing.T) {
	p := newTestPolicy(t, Options{})
	pcr := testPCR(t, keyP256(), nil)
	pcr.Spec.StubPKCS10Request = stubRequest(t, keyP256(), &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "kubernetes", Organization: []string{"system:masters"}},
		DNSNames: []string{"kubernetes.default.svc"},
	})
	d := p.DecidePodCertificate(pcr, testPCRFacts())
	if !d.Approve {
		t.Fatalf("denied %s: %s", d.Reason, d.Message)
	}
	if slices.Contains(d.Grant.Names.DNSNames, "kubernetes.default.svc") || d.Grant.Names.CommonName != "" {
		t.Errorf("grant took names from the stub request: %+v", d.Grant.Names)
	}
}

func TestDecidePodCertificateAddsTheSPIFFEIDWhenConfigured(t *testing.T) {
	p := newTestPolicy(t, Options{TrustDomain: "example.org"})
	d := p.DecidePodCertificate(testPCR(t, keyEd25519(), nil), testPCRFacts())
	if !d.Approve {
		t.Fatalf("denied %s: %s", d.Reason, d.Message)
	}
	if len(d.Grant.Names.URIs) != 1 || d.Grant.Names.URIs[0].String() != "spiffe://example.org/ns/shop/sa/web" {
		t.Errorf("URIs %v", d.Grant.Names.URIs)
	}
}
