package approve

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"slices"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestAllowedNamesAreExactlyThePodsOwn(t *testing.T) {
	a := newTestPolicy(t, Options{TrustDomain: "example.org"}).AllowedNames(testPodFacts(), testServices())
	wantDNS := []string{
		"10-1-2-3.shop.pod.cluster.local",
		"front.shop.svc", "front.shop.svc.cluster.local",
		"web-0.web-hl.shop.svc.cluster.local",
		"web-hl.shop.svc", "web-hl.shop.svc.cluster.local",
		"web.shop.svc", "web.shop.svc.cluster.local",
	}
	if got := a.DNSNames(); !slices.Equal(got, wantDNS) {
		t.Errorf("DNSNames =\n%q\nwant\n%q", got, wantDNS)
	}
	wantIPs := []string{"10.1.2.3", "10.96.0.10", "10.96.0.20", "fd00:10::3", "fd00:96::10"}
	if got := ipStrings(a.IPs()); !slices.Equal(got, wantIPs) {
		t.Errorf("IPs = %q, want %q", got, wantIPs)
	}
	if got := a.URI(); got != spiffeID {
		t.Errorf("URI = %q, want %q", got, spiffeID)
	}
	if !a.AllowsDNSName("WEB.Shop.svc") || a.AllowsDNSName("web.shop.svc.") {
		t.Error("AllowsDNSName does not compare as documented")
	}
}

func TestShortServiceNamesAreAllowedOnlyWhenConfigured(t *testing.T) {
	short := []string{"web", "web.shop", "front", "front.shop", "web-hl", "web-hl.shop"}
	for _, on := range []bool{false, true} {
		a := newTestPolicy(t, Options{ShortServiceNames: on}).AllowedNames(testPodFacts(), testServices())
		for _, n := range short {
			if got := a.AllowsDNSName(n); got != on {
				t.Errorf("ShortServiceNames=%v: AllowsDNSName(%q) = %v, want %v", on, n, got, on)
			}
		}
		// The headless short forms stay refused either way (they collide
		// with other namespaces' Services).
		if a.AllowsDNSName("web-0.web-hl") || a.AllowsDNSName("web-0.web-hl.shop") {
			t.Errorf("ShortServiceNames=%v: a headless short form is allowed", on)
		}
	}
}

// A namespace named like a top-level domain turns <svc>.<ns> into a public
// name: with the default rules no name outside the cluster's own forms is
// allowed, whatever the namespace and Service are called.
func TestNamespaceNamedLikeADomainGetsNoNameOutsideTheCluster(t *testing.T) {
	tests := []struct{ ns, svc, asked string }{
		{"com", "google", "google.com"},
		{"corp", "vault", "vault.corp"},
		{"xn--p1ai", "xn--80ak6aa92e", "xn--80ak6aa92e.xn--p1ai"},
		{"shop", "localhost", "localhost"},
		{"shop", "kubernetes", "kubernetes"},
	}
	for _, tt := range tests {
		t.Run(tt.asked, func(t *testing.T) {
			facts := testFacts()
			facts.Pod.Namespace = tt.ns
			facts.Services = []Service{{Namespace: tt.ns, Name: tt.svc, Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.0.10"}}}
			csr := podCSR(csrPEM(t, dnsReq(tt.asked), nil))
			csr.Spec.Username = "system:serviceaccount:" + tt.ns + ":" + testSA
			d := newTestPolicy(t, Options{}).Decide(csr, facts)
			if d.Reason != ReasonDNSNameNotAllowed {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, ReasonDNSNameNotAllowed)
			}
			inCluster := tt.svc + "." + tt.ns + ".svc.cluster.local"
			if d := newTestPolicy(t, Options{}).Decide(func() *certificatesv1.CertificateSigningRequest {
				c := podCSR(csrPEM(t, dnsReq(inCluster), nil))
				c.Spec.Username = csr.Spec.Username
				return c
			}(), facts); !d.Approve {
				t.Errorf("the in-cluster name %s is denied: %s %s", inCluster, d.Reason, d.Message)
			}
		})
	}
}

func TestAllowedNamesOfNoPodAreEmpty(t *testing.T) {
	a := newTestPolicy(t, Options{TrustDomain: "example.org"}).AllowedNames(nil, testServices())
	if len(a.DNSNames()) != 0 || len(a.IPs()) != 0 || a.URI() != "" {
		t.Errorf("AllowedNames(nil) = %v %v %q, want nothing", a.DNSNames(), a.IPs(), a.URI())
	}
}

func TestDNSNamesMustResolveToThePod(t *testing.T) {
	tests := []struct {
		name       string
		dns        string
		edit       func(*Facts)
		wantReason string
	}{
		{"service FQDN", "web.shop.svc.cluster.local", nil, ReasonApproved},
		{"stateful hostname FQDN", "web-0.web-hl.shop.svc.cluster.local", nil, ReasonApproved},
		{"another namespace's service", "web.bank.svc.cluster.local", nil, ReasonDNSNameNotAllowed},
		{"another namespace's service, short", "web.bank", nil, ReasonDNSNameNotAllowed},
		{"own service, short form (off by default)", "web.shop", nil, ReasonDNSNameNotAllowed},
		{"own service, bare name (off by default)", "web", nil, ReasonDNSNameNotAllowed},
		{"service not selecting the pod", "db.shop.svc.cluster.local", nil, ReasonDNSNameNotAllowed},
		{"service with empty selector", "manual.shop.svc.cluster.local", nil, ReasonDNSNameNotAllowed},
		{"ExternalName service", "ext.shop", nil, ReasonDNSNameNotAllowed},
		{"other cluster domain", "web.shop.svc.evil.example", nil, ReasonDNSNameNotAllowed},
		{"hostname short form, 2 labels", "web-0.web-hl", nil, ReasonDNSNameNotAllowed},
		{"hostname short form, 3 labels", "web-0.web-hl.shop", nil, ReasonDNSNameNotAllowed},
		{"hostname short form, 4 labels", "web-0.web-hl.shop.svc", nil, ReasonDNSNameNotAllowed},
		{"hostname without the subdomain service", "web-0.web-hl.shop.svc.cluster.local", func(f *Facts) { f.Services = f.Services[:1] }, ReasonDNSNameNotAllowed},
		{"hostname whose subdomain service is not headless", "web-0.web.shop.svc.cluster.local", func(f *Facts) { f.Pod.Subdomain = "web" }, ReasonDNSNameNotAllowed},
		{"hostname whose subdomain service does not select it", "web-0.web-hl.shop.svc.cluster.local", func(f *Facts) { f.Services[1].Selector = map[string]string{"app": "db"} }, ReasonDNSNameNotAllowed},
		{"hostname squatting on kubernetes.default", "kubernetes.default", func(f *Facts) {
			f.Pod.Hostname, f.Pod.Subdomain = "kubernetes", "default"
			f.Services = append(f.Services, Service{Namespace: testNS, Name: "default", Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"None"}})
		}, ReasonDNSNameNotAllowed},
		{"pod DNS form of its IP", "10-1-2-3.shop.pod.cluster.local", nil, ReasonApproved},
		{"pod DNS form of another IP", "10-1-2-4.shop.pod.cluster.local", nil, ReasonDNSNameNotAllowed},
		{"pod DNS form in another namespace", "10-1-2-3.bank.pod.cluster.local", nil, ReasonDNSNameNotAllowed},
		{"pod DNS form of a hostNetwork pod", "10-1-2-3.shop.pod.cluster.local", func(f *Facts) { f.Pod.HostNetwork = true }, ReasonDNSNameNotAllowed},
		{"trailing dot", "web.shop.svc.cluster.local.", nil, ReasonDNSNameNotAllowed},
		{"wildcard", "*.web.shop.svc.cluster.local", nil, ReasonWildcardNotAllowed},
		{"bare wildcard", "*", nil, ReasonWildcardNotAllowed},
		{"partial wildcard", "we*.shop.svc", nil, ReasonWildcardNotAllowed},
		{"external name", "example.com", nil, ReasonDNSNameNotAllowed},
		{"kubernetes API name", "kubernetes.default.svc", nil, ReasonDNSNameNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := testFacts()
			if tt.edit != nil {
				tt.edit(&facts)
			}
			d := newTestPolicy(t, Options{}).Decide(podCSR(csrPEM(t, dnsReq(tt.dns), nil)), facts)
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestCanonicalDNSNameFoldsOnlyASCII(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Web.Shop.SVC", "web.shop.svc", true},
		{"web.shop.svc.", "", false},
		{"", "", false},
		{"\u212aube", "", false}, // KELVIN SIGN lowercases to "k" with strings.ToLower
		{"web shop", "", false},
	}
	for _, tt := range tests {
		got, ok := canonicalDNSName(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("canonicalDNSName(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIPsMustBeThePods(t *testing.T) {
	tests := []struct {
		name       string
		ip         string
		edit       func(*Facts)
		wantReason string
	}{
		{"pod IPv4", "10.1.2.3", nil, ReasonApproved},
		{"pod IPv6", "fd00:10::3", nil, ReasonApproved},
		{"cluster IP of a selecting service", "10.96.0.10", nil, ReasonApproved},
		{"cluster IPv6 of a selecting service", "fd00:96::10", nil, ReasonApproved},
		{"another address", "10.1.2.4", nil, ReasonIPNotAllowed},
		{"cluster IP of a service not selecting the pod", "10.96.0.30", nil, ReasonIPNotAllowed},
		{"cluster IP of a service without selector", "10.96.0.40", nil, ReasonIPNotAllowed},
		{"cluster IP of another namespace's service", "10.96.1.10", nil, ReasonIPNotAllowed},
		{"loopback", "127.0.0.1", nil, ReasonIPNotAllowed},
		{"unspecified", "0.0.0.0", nil, ReasonIPNotAllowed},
		{"the node's IP of a hostNetwork pod", "10.1.2.3", func(f *Facts) { f.Pod.HostNetwork = true }, ReasonIPNotAllowed},
		{"headless service has no IP to give", "10.1.2.3", func(f *Facts) { f.Pod.PodIPs = nil }, ReasonIPNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := testFacts()
			if tt.edit != nil {
				tt.edit(&facts)
			}
			d := newTestPolicy(t, Options{}).Decide(podCSR(csrPEM(t, &x509.CertificateRequest{IPAddresses: ips(tt.ip)}, nil)), facts)
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestURISANIsOnlyThePodsSPIFFEID(t *testing.T) {
	tests := []struct {
		name        string
		trustDomain string
		uris        []string
		wantReason  string
	}{
		{"SPIFFE ID", "example.org", []string{spiffeID}, ReasonApproved},
		{"no trust domain configured", "", []string{spiffeID}, ReasonURISANNotAllowed},
		{"other trust domain", "example.org", []string{"spiffe://evil.example/ns/shop/sa/web"}, ReasonURISANNotAllowed},
		{"other service account", "example.org", []string{"spiffe://example.org/ns/shop/sa/admin"}, ReasonURISANNotAllowed},
		{"other namespace", "example.org", []string{"spiffe://example.org/ns/kube-system/sa/web"}, ReasonURISANNotAllowed},
		{"percent-encoded path", "example.org", []string{"spiffe://example.org/ns/%73hop/sa/web"}, ReasonURISANNotAllowed},
		{"upper-case trust domain", "example.org", []string{"spiffe://EXAMPLE.org/ns/shop/sa/web"}, ReasonURISANNotAllowed},
		{"query", "example.org", []string{spiffeID + "?x=1"}, ReasonURISANNotAllowed},
		{"fragment", "example.org", []string{spiffeID + "#x"}, ReasonURISANNotAllowed},
		{"trailing slash", "example.org", []string{spiffeID + "/"}, ReasonURISANNotAllowed},
		{"https", "example.org", []string{"https://example.org/ns/shop/sa/web"}, ReasonURISANNotAllowed},
		{"twice", "example.org", []string{spiffeID, spiffeID}, ReasonURISANNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := &x509.CertificateRequest{DNSNames: []string{"web.shop.svc"}}
			for _, u := range tt.uris {
				tmpl.URIs = append(tmpl.URIs, mustURL(u))
			}
			d := newTestPolicy(t, Options{TrustDomain: tt.trustDomain}).Decide(podCSR(csrPEM(t, tmpl, nil)), testFacts())
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestCommonNameIsEmptyOrAnAllowedDNSName(t *testing.T) {
	tests := []struct {
		name       string
		cn         string
		dns        []string
		wantReason string
	}{
		{"empty", "", []string{"web.shop.svc"}, ReasonApproved},
		{"one of the SANs", "web.shop.svc", []string{"web.shop.svc"}, ReasonApproved},
		{"allowed but not among the SANs", "web.shop.svc.cluster.local", nil, ReasonApproved},
		{"another namespace's name", "web.bank.svc", []string{"web.shop.svc"}, ReasonCommonNameNotAllowed},
		{"a user name", "system:admin", []string{"web.shop.svc"}, ReasonCommonNameNotAllowed},
		{"wildcard", "*.shop.svc", []string{"web.shop.svc"}, ReasonWildcardNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: tt.cn}, DNSNames: tt.dns}
			d := decide(t, podCSR(csrPEM(t, tmpl, nil)))
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestDeniesARequestNamingNobody(t *testing.T) {
	d := decide(t, podCSR(csrPEM(t, &x509.CertificateRequest{}, nil)))
	assertDenied(t, d, ReasonNoNames, "")
}

func TestServiceRulesFollowKubernetes(t *testing.T) {
	pod := testPodFacts()
	tests := []struct {
		name string
		svc  Service
		want bool
	}{
		{"matching selector", Service{Namespace: testNS, Selector: map[string]string{"app": "web"}}, true},
		{"subset of labels", Service{Namespace: testNS, Selector: map[string]string{"app": "web", "tier": "front"}}, true},
		{"label value differs", Service{Namespace: testNS, Selector: map[string]string{"app": "webx"}}, false},
		{"label missing", Service{Namespace: testNS, Selector: map[string]string{"app": "web", "track": "canary"}}, false},
		{"empty selector", Service{Namespace: testNS, Selector: map[string]string{}}, false},
		{"other namespace", Service{Namespace: "bank", Selector: map[string]string{"app": "web"}}, false},
		{"ExternalName", Service{Namespace: testNS, Type: corev1.ServiceTypeExternalName, Selector: map[string]string{"app": "web"}}, false},
	}
	for _, tt := range tests {
		if got := tt.svc.Selects(pod); got != tt.want {
			t.Errorf("%s: selects = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestDenialMessagesAreBounded(t *testing.T) {
	long := strings.Repeat("a", 63) + "."
	name := strings.Repeat(long, 60) + "example"
	d := decide(t, podCSR(csrPEM(t, dnsReq(name), nil)))
	if d.Reason != ReasonDNSNameNotAllowed || len(d.Message) > maxMessage {
		t.Errorf("Decide = %s with a %d-byte message, want %s within %d bytes", d.Reason, len(d.Message), ReasonDNSNameNotAllowed, maxMessage)
	}
}

func TestServiceIsNamedByEveryFormOfItsNamesAndNothingElse(t *testing.T) {
	svc := Service{Namespace: "shop", Name: "web", ClusterIPs: []string{"10.96.0.10", "fd00:96::10"}}
	tests := []struct {
		dns  string
		ip   string
		want bool
	}{
		{dns: "web", want: true},
		{dns: "web.shop", want: true},
		{dns: "WEB.shop.svc", want: true},
		{dns: "web.shop.svc.cluster.local", want: true},
		{dns: "web-0.web.shop.svc.cluster.local", want: true},
		{ip: "10.96.0.10", want: true},
		{ip: "fd00:96::10", want: true},
		{dns: "10-1-2-3.shop.pod.cluster.local", want: false},
		{dns: "db.shop.svc", want: false},
		{dns: "web.bank.svc", want: false},
		{ip: "10.1.2.3", want: false},
	}
	for _, tt := range tests {
		var dns []string
		var ips []net.IP
		if tt.dns != "" {
			dns = []string{tt.dns}
		}
		if tt.ip != "" {
			ips = []net.IP{net.ParseIP(tt.ip)}
		}
		if got := svc.NamedIn(dns, ips); got != tt.want {
			t.Errorf("NamedIn(%q, %q) = %v, want %v", tt.dns, tt.ip, got, tt.want)
		}
	}
}
