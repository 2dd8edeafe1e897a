package approve

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

const spiffeID = "spiffe://example.org/ns/shop/sa/web"

func TestApprovesRequestsForThePodsOwnNames(t *testing.T) {
	client := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	tests := []struct {
		name        string
		opts        Options
		tmpl        *x509.CertificateRequest
		key         crypto.Signer
		usages      []certificatesv1.KeyUsage
		exp         *int32
		facts       func(*Facts)
		wantDNS     []string
		wantIPs     []string
		wantURIs    []string
		wantCN      string
		wantUsages  []certificatesv1.KeyUsage
		wantExpires *int32
	}{{
		name:    "single service, every form",
		tmpl:    dnsReq("web.shop.svc", "web.shop.svc.cluster.local"),
		wantDNS: []string{"web.shop.svc", "web.shop.svc.cluster.local"},
	}, {
		name:    "single service, short forms too when configured",
		opts:    Options{ShortServiceNames: true},
		tmpl:    dnsReq("web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"),
		wantDNS: []string{"web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"},
	}, {
		name:    "several services selecting the pod",
		tmpl:    dnsReq("web.shop.svc.cluster.local", "front.shop.svc.cluster.local", "web-hl.shop.svc"),
		wantDNS: []string{"web.shop.svc.cluster.local", "front.shop.svc.cluster.local", "web-hl.shop.svc"},
	}, {
		name:    "headless service and stateful hostname",
		tmpl:    dnsReq("web-hl.shop.svc.cluster.local", "web-0.web-hl.shop.svc.cluster.local"),
		wantDNS: []string{"web-hl.shop.svc.cluster.local", "web-0.web-hl.shop.svc.cluster.local"},
	}, {
		name:    "pod IPs, dual-stack, and pod DNS form",
		tmpl:    &x509.CertificateRequest{DNSNames: []string{"10-1-2-3.shop.pod.cluster.local"}, IPAddresses: ips("10.1.2.3", "fd00:10::3")},
		wantDNS: []string{"10-1-2-3.shop.pod.cluster.local"},
		wantIPs: []string{"10.1.2.3", "fd00:10::3"},
	}, {
		name:    "cluster IPs of selecting services, dual-stack",
		tmpl:    &x509.CertificateRequest{IPAddresses: ips("10.96.0.10", "fd00:96::10", "10.96.0.20")},
		wantIPs: []string{"10.96.0.10", "fd00:96::10", "10.96.0.20"},
	}, {
		name:    "IPv4-mapped IPv6 form of a pod IP is canonicalized",
		tmpl:    &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("::ffff:10.1.2.3").To16()}},
		wantIPs: []string{"10.1.2.3"},
	}, {
		name:       "client only, with SPIFFE ID",
		opts:       Options{TrustDomain: "example.org"},
		tmpl:       &x509.CertificateRequest{URIs: []*url.URL{mustURL(spiffeID)}},
		usages:     client,
		wantURIs:   []string{spiffeID},
		wantUsages: client,
	}, {
		name:     "SPIFFE ID beside DNS names",
		opts:     Options{TrustDomain: "example.org"},
		tmpl:     &x509.CertificateRequest{DNSNames: []string{"web.shop.svc"}, URIs: []*url.URL{mustURL(spiffeID)}},
		wantDNS:  []string{"web.shop.svc"},
		wantURIs: []string{spiffeID},
	}, {
		name:    "common name that is one of the DNS names",
		tmpl:    &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web.shop.svc"}, DNSNames: []string{"web.shop.svc"}},
		wantCN:  "web.shop.svc",
		wantDNS: []string{"web.shop.svc"},
	}, {
		name:    "upper case and duplicates are canonicalized",
		tmpl:    &x509.CertificateRequest{Subject: pkix.Name{CommonName: "WEB.shop.svc"}, DNSNames: []string{"Web.Shop.Svc", "web.shop.svc"}},
		wantCN:  "web.shop.svc",
		wantDNS: []string{"web.shop.svc"},
	}, {
		name:    "other cluster domain",
		opts:    Options{ClusterDomain: "corp.internal"},
		tmpl:    dnsReq("web.shop.svc.corp.internal"),
		wantDNS: []string{"web.shop.svc.corp.internal"},
	}, {
		name:    "RSA 2048",
		tmpl:    dnsReq("web.shop.svc"),
		key:     keyRSA2048(),
		usages:  []certificatesv1.KeyUsage{certificatesv1.UsageKeyEncipherment, certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageServerAuth},
		wantDNS: []string{"web.shop.svc"},
		wantUsages: []certificatesv1.KeyUsage{
			certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth,
		},
	}, {
		name:    "P-384",
		tmpl:    dnsReq("web.shop.svc"),
		key:     keyP384(),
		wantDNS: []string{"web.shop.svc"},
	}, {
		name:    "Ed25519",
		tmpl:    dnsReq("web.shop.svc"),
		key:     keyEd25519(),
		wantDNS: []string{"web.shop.svc"},
	}, {
		name:        "expiration at the maximum",
		tmpl:        dnsReq("web.shop.svc"),
		exp:         int32p(int32(DefaultMaxExpiration / time.Second)),
		wantDNS:     []string{"web.shop.svc"},
		wantExpires: int32p(int32(DefaultMaxExpiration / time.Second)),
	}, {
		name:    "pod with one IP, no services",
		tmpl:    &x509.CertificateRequest{DNSNames: []string{"10-1-2-3.shop.pod.cluster.local"}, IPAddresses: ips("10.1.2.3")},
		facts:   func(f *Facts) { f.Services = nil; f.Pod.PodIPs = []string{"10.1.2.3"} },
		wantDNS: []string{"10-1-2-3.shop.pod.cluster.local"},
		wantIPs: []string{"10.1.2.3"},
	}, {
		name:    "pending pod",
		tmpl:    dnsReq("web.shop.svc"),
		facts:   func(f *Facts) { f.Pod.Phase = corev1.PodPending },
		wantDNS: []string{"web.shop.svc"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := podCSR(csrPEM(t, tt.tmpl, tt.key), tt.usages...)
			csr.Spec.ExpirationSeconds = tt.exp
			facts := testFacts()
			if tt.facts != nil {
				tt.facts(&facts)
			}
			d := newTestPolicy(t, tt.opts).Decide(csr, facts)
			if !d.Approve || d.Reason != ReasonApproved || d.Grant == nil {
				t.Fatalf("Decide = %+v, want approved", d)
			}
			g := d.Grant
			if got := g.Names.DNSNames; !slices.Equal(got, tt.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", got, tt.wantDNS)
			}
			var gotIPs []string
			for _, ip := range g.Names.IPAddresses {
				gotIPs = append(gotIPs, ip.String())
				if ip.To4() != nil && len(ip) != net.IPv4len {
					t.Errorf("IPv4 %s is %d bytes, want the 4-byte form", ip, len(ip))
				}
			}
			if !slices.Equal(gotIPs, tt.wantIPs) {
				t.Errorf("IPAddresses = %q, want %q", gotIPs, tt.wantIPs)
			}
			var gotURIs []string
			for _, u := range g.Names.URIs {
				gotURIs = append(gotURIs, u.String())
			}
			if !slices.Equal(gotURIs, tt.wantURIs) {
				t.Errorf("URIs = %q, want %q", gotURIs, tt.wantURIs)
			}
			if g.Names.CommonName != tt.wantCN {
				t.Errorf("CommonName = %q, want %q", g.Names.CommonName, tt.wantCN)
			}
			wantUsages := tt.wantUsages
			if wantUsages == nil {
				wantUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
			}
			if !slices.Equal(g.Usages, wantUsages) {
				t.Errorf("Usages = %q, want %q", g.Usages, wantUsages)
			}
			if (g.ExpirationSeconds == nil) != (tt.wantExpires == nil) || (g.ExpirationSeconds != nil && *g.ExpirationSeconds != *tt.wantExpires) {
				t.Errorf("ExpirationSeconds = %v, want %v", g.ExpirationSeconds, tt.wantExpires)
			}
			if g.PublicKey == nil {
				t.Error("PublicKey is nil")
			}
		})
	}
}

// TestDeniesHostileRequests is the attacker's view: each case is one thing a
// compromised pod (or another identity) might try.
func TestDeniesHostileRequests(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		csr        func(t *testing.T) *certificatesv1.CertificateSigningRequest
		facts      func(*Facts)
		wantReason string
		wantInMsg  string
	}{
		{name: "another namespace's service name", csr: dns("web.bank.svc.cluster.local"), wantReason: ReasonDNSNameNotAllowed, wantInMsg: "web.bank.svc.cluster.local"},
		{name: "a service that does not select the pod", csr: dns("db.shop.svc"), wantReason: ReasonDNSNameNotAllowed, wantInMsg: "db.shop.svc"},
		{name: "a service with an empty selector", csr: dns("manual.shop.svc.cluster.local"), wantReason: ReasonDNSNameNotAllowed, wantInMsg: "manual"},
		{name: "an ExternalName service", csr: dns("ext.shop.svc.cluster.local"), wantReason: ReasonDNSNameNotAllowed, wantInMsg: "ext.shop"},
		{name: "an IP not the pod's", csr: ip("10.1.2.4"), wantReason: ReasonIPNotAllowed, wantInMsg: "10.1.2.4"},
		{name: "the cluster IP of a service not selecting the pod", csr: ip("10.96.0.30"), wantReason: ReasonIPNotAllowed, wantInMsg: "10.96.0.30"},
		{name: "wildcard", csr: dns("*.shop.svc.cluster.local"), wantReason: ReasonWildcardNotAllowed, wantInMsg: "*.shop.svc.cluster.local"},
		{name: "CA requested", csr: withTmpl(&x509.CertificateRequest{DNSNames: []string{"web.shop.svc"}, ExtraExtensions: []pkix.Extension{basicConstraintsCA()}}), wantReason: ReasonCARequested},
		{name: "email SAN", csr: withTmpl(&x509.CertificateRequest{DNSNames: []string{"web.shop.svc"}, EmailAddresses: []string{"root@shop"}}), wantReason: ReasonEmailSANNotAllowed, wantInMsg: "root@shop"},
		{name: "URI SAN not matching", opts: Options{TrustDomain: "example.org"}, csr: uri("spiffe://example.org/ns/kube-system/sa/admin"), wantReason: ReasonURISANNotAllowed, wantInMsg: "kube-system"},
		{name: "RSA-1024", csr: withKey(keyRSA1024()), wantReason: ReasonWeakKey, wantInMsg: "1024"},
		{name: "P-521", csr: withKey(keyP521()), wantReason: ReasonKeyTypeNotAllowed, wantInMsg: "P-521"},
		{name: "plain user", csr: func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			c := dns("web.shop.svc")(t)
			c.Spec.Username, c.Spec.Extra = "alice", nil
			return c
		}, wantReason: ReasonNotPodBound, wantInMsg: "alice"},
		{name: "SA token without pod extra", csr: func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			c := dns("web.shop.svc")(t)
			c.Spec.Extra = nil
			return c
		}, wantReason: ReasonNotPodBound, wantInMsg: ExtraPodName},
		{name: "pod UID mismatch", facts: func(f *Facts) { f.Pod.UID = "recreated" }, csr: dns("web.shop.svc"), wantReason: ReasonPodUIDMismatch, wantInMsg: "recreated"},
		{name: "SA mismatch", facts: func(f *Facts) { f.Pod.ServiceAccountName = "other" }, csr: dns("web.shop.svc"), wantReason: ReasonServiceAccountMismatch, wantInMsg: "other"},
		{name: "terminating pod", facts: func(f *Facts) { f.Pod.Terminating = true }, csr: dns("web.shop.svc"), wantReason: ReasonPodTerminating, wantInMsg: "shop/web-0"},
		{name: "finished pod", facts: func(f *Facts) { f.Pod.Phase = corev1.PodSucceeded }, csr: dns("web.shop.svc"), wantReason: ReasonPodFinished, wantInMsg: "Succeeded"},
		{name: "unknown usage", csr: func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			return podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil), certificatesv1.UsageServerAuth, certificatesv1.UsageCodeSigning)
		}, wantReason: ReasonUsageNotAllowed, wantInMsg: "code signing"},
		{name: "signature not matching", csr: func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			return podCSR(tamper(t, csrPEM(t, dnsReq("web.shop.svc"), nil), func(c *rawCSR, _ *rawTBS) { c.Sig.Bytes[len(c.Sig.Bytes)-1] ^= 0xff }))
		}, wantReason: ReasonSignatureInvalid},
		{name: "Organization in subject", csr: withTmpl(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "web", Organization: []string{"system:masters"}}, DNSNames: []string{"web.shop.svc"}}), wantReason: ReasonSubjectNotAllowed, wantInMsg: "O=system:masters"},
		{name: "another signer's CSR", csr: func(t *testing.T) *certificatesv1.CertificateSigningRequest {
			c := dns("web.shop.svc")(t)
			c.Spec.SignerName = "kubernetes.io/kube-apiserver-client"
			return c
		}, wantReason: ReasonSignerNameMismatch},
		{name: "pod gone", facts: func(f *Facts) { f.Pod = nil }, csr: dns("web.shop.svc"), wantReason: ReasonPodNotFound, wantInMsg: "shop/web-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := testFacts()
			if tt.facts != nil {
				tt.facts(&facts)
			}
			d := newTestPolicy(t, tt.opts).Decide(tt.csr(t), facts)
			assertDenied(t, d, tt.wantReason, tt.wantInMsg)
		})
	}
}

func assertDenied(t *testing.T, d Decision, reason, inMsg string) {
	t.Helper()
	if d.Approve || d.Grant != nil {
		t.Fatalf("Decide = %+v, want denied with %s", d, reason)
	}
	if d.Reason != reason {
		t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, reason)
	}
	if !strings.Contains(d.Message, inMsg) {
		t.Errorf("Message = %q, want it to name %q", d.Message, inMsg)
	}
}

func withTmpl(tmpl *x509.CertificateRequest) func(*testing.T) *certificatesv1.CertificateSigningRequest {
	return func(t *testing.T) *certificatesv1.CertificateSigningRequest { return podCSR(csrPEM(t, tmpl, nil)) }
}

func dns(names ...string) func(*testing.T) *certificatesv1.CertificateSigningRequest {
	return withTmpl(dnsReq(names...))
}

func ip(s string) func(*testing.T) *certificatesv1.CertificateSigningRequest {
	return withTmpl(&x509.CertificateRequest{IPAddresses: ips(s)})
}

func uri(s string) func(*testing.T) *certificatesv1.CertificateSigningRequest {
	return withTmpl(&x509.CertificateRequest{URIs: []*url.URL{mustURL(s)}})
}

func withKey(key crypto.Signer) func(*testing.T) *certificatesv1.CertificateSigningRequest {
	return func(t *testing.T) *certificatesv1.CertificateSigningRequest {
		return podCSR(csrPEM(t, dnsReq("web.shop.svc"), key))
	}
}

func TestNewRejectsBadOptionsNamingEachProblem(t *testing.T) {
	_, err := New(Options{ClusterDomain: "Cluster.Local.", MaxExpiration: time.Minute, TrustDomain: "spiffe://x"})
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{"ClusterDomain", "MaxExpiration", "TrustDomain"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestNewDefaultsOptions(t *testing.T) {
	got := newTestPolicy(t, Options{}).Options()
	want := Options{SignerName: SignerName, ClusterDomain: DefaultClusterDomain, MaxExpiration: DefaultMaxExpiration}
	if got != want {
		t.Errorf("Options() = %+v, want %+v", got, want)
	}
}
