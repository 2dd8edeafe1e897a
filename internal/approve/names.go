package approve

import (
	"crypto/x509"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Allowed is the set of identities one pod may have in its certificate.
type Allowed struct {
	dns map[string]bool
	ips map[netip.Addr]bool
	uri string
}

// AllowedNames computes the names pod may ask for. nil pod: nothing.
//
// DNS names, each one that the cluster's DNS (the Kubernetes DNS-Based
// Service Discovery spec) resolves to this pod, and no name that another
// namespace could own:
//   - for every Service of the pod's namespace whose non-empty selector
//     selects the pod (ExternalName Services excluded): <svc>.<ns>.svc and
//     <svc>.<ns>.svc.<cluster domain>. The short forms <svc>.<ns> and <svc>,
//     which clients type thanks to the pod resolv.conf search list, only
//     with Options.ShortServiceNames: they are names outside the cluster's
//     namespace of names. A namespace "com" with a Service "google" would
//     own "google.com"; "vault.corp", "localhost" or "kubernetes" are as easy
//     to make, and the bare <svc> is the same name in every namespace at
//     once (the collision refused below for headless short names too);
//   - for a pod with spec.hostname and spec.subdomain, only the fully
//     qualified <hostname>.<subdomain>.<ns>.svc.<cluster domain>, and only
//     when a headless Service named <subdomain> selects the pod: DNS serves
//     the record under exactly that condition. The short forms are NOT
//     allowed because they collide with other namespaces' Service names:
//     a pod in namespace "x" with hostname "kubernetes" and subdomain
//     "default" would get "kubernetes.default" (the API server's Service
//     name as seen from every namespace), and in a namespace named "svc" the
//     form <hostname>.<subdomain>.<ns> would yield "kubernetes.default.svc";
//   - for each IPv4 pod IP, <a-b-c-d>.<ns>.pod.<cluster domain>.
//
// IPs: status.podIPs, and the cluster IPs of selecting non-headless Services.
// A hostNetwork pod gets neither its pod IPs nor their DNS form: its "pod IP"
// is the node's, shared with every other hostNetwork pod on that node.
//
// URI: spiffe://<trust domain>/ns/<ns>/sa/<service account> when a trust
// domain is configured.
//
// Anyone allowed to create pods in a namespace can label a pod into any of
// the namespace's Services or choose any hostname: the namespace is the trust
// boundary, as it is for Service routing itself.
func (p *Policy) AllowedNames(pod *Pod, services []Service) Allowed {
	a := Allowed{dns: map[string]bool{}, ips: map[netip.Addr]bool{}}
	if pod == nil {
		return a
	}
	ns, domain := pod.Namespace, p.opts.ClusterDomain
	for _, s := range services {
		if !s.Selects(pod) {
			continue
		}
		a.addDNS(s.Name+"."+ns+".svc", s.Name+"."+ns+".svc."+domain)
		if p.opts.ShortServiceNames {
			a.addDNS(s.Name, s.Name+"."+ns)
		}
		if s.headless() {
			continue
		}
		for _, ip := range s.ClusterIPs {
			a.addIP(ip)
		}
	}
	if pod.Hostname != "" && pod.Subdomain != "" && slices.ContainsFunc(services, func(s Service) bool {
		return s.Name == pod.Subdomain && s.headless() && s.Selects(pod)
	}) {
		a.addDNS(pod.Hostname + "." + pod.Subdomain + "." + ns + ".svc." + domain)
	}
	if !pod.HostNetwork {
		for _, ip := range pod.PodIPs {
			addr, ok := a.addIP(ip)
			if ok && addr.Is4() {
				a.addDNS(strings.ReplaceAll(addr.String(), ".", "-") + "." + ns + ".pod." + domain)
			}
		}
	}
	if p.opts.TrustDomain != "" {
		a.uri = "spiffe://" + p.opts.TrustDomain + "/ns/" + ns + "/sa/" + pod.ServiceAccountName
	}
	return a
}

// NamedIn reports whether any of dns or ips could be one of the names
// AllowedNames derives from s: <svc> and every form starting <svc>.<ns>,
// the headless <host>.<svc>.<ns>..., a cluster IP. It errs towards true: a
// controller reads live only the Services a request could name, and a
// Service wrongly left out could only be missing from the grant.
func (s Service) NamedIn(dns []string, ips []net.IP) bool {
	prefix, inner := s.Name+"."+s.Namespace, "."+s.Name+"."+s.Namespace+"."
	for _, n := range dns {
		n = asciiLower(n)
		if n == s.Name || strings.HasPrefix(n, prefix) || strings.Contains(n, inner) {
			return true
		}
	}
	for _, ip := range ips {
		for _, c := range s.ClusterIPs {
			if cip := net.ParseIP(c); cip != nil && cip.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// RequestedNames are the DNS names and IPs csr asks for; none when its
// request does not parse (the policy denies it then).
func RequestedNames(csr *certificatesv1.CertificateSigningRequest) ([]string, []net.IP) {
	req, err := parseCSR(csr.Spec.Request)
	if err != nil {
		return nil, nil
	}
	return req.DNSNames, req.IPAddresses
}

// NameConstraints are the X.509 permitted subtrees that cover every name
// AllowedNames can ever allow, for a CA that issues only under this policy:
// DNS names under the cluster domain (Service, headless and pod-IP names)
// and under "svc" (<svc>.<ns>.svc), and URIs in the SPIFFE trust domain.
// With a CA carrying them, a certificate wrongly issued for an outside name
// such as google.com does not verify for it. dns is nil when
// ShortServiceNames is on: <svc> and <svc>.<ns> can be any name, so no DNS
// subtree covers them. IPs are left unconstrained: the pod and Service
// ranges are not the policy's to know.
func (p *Policy) NameConstraints() (dns, uri []string) {
	if !p.opts.ShortServiceNames {
		dns = []string{p.opts.ClusterDomain, "svc"}
	}
	if p.opts.TrustDomain != "" {
		uri = []string{p.opts.TrustDomain}
	}
	return dns, uri
}

func (a Allowed) addDNS(names ...string) {
	for _, n := range names {
		a.dns[asciiLower(n)] = true
	}
}

func (a Allowed) addIP(s string) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	a.ips[addr] = true
	return addr, true
}

// DNSNames returns the allowed DNS names, sorted.
func (a Allowed) DNSNames() []string {
	out := make([]string, 0, len(a.dns))
	for n := range a.dns {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// IPs returns the allowed IP addresses, sorted.
func (a Allowed) IPs() []netip.Addr {
	out := make([]netip.Addr, 0, len(a.ips))
	for ip := range a.ips {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// URI returns the allowed URI SAN, "" when none is.
func (a Allowed) URI() string { return a.uri }

// AllowsDNSName reports whether name, compared as canonicalDNSName does, is
// allowed.
func (a Allowed) AllowsDNSName(name string) bool {
	c, ok := canonicalDNSName(name)
	return ok && a.dns[c]
}

// canonicalDNSName lowercases name for comparison and rejects what is not a
// plain dNSName. DNS names compare case-insensitively (RFC 4343), but only
// ASCII letters fold: strings.ToLower would fold U+212A KELVIN SIGN into "k".
// A trailing dot is refused rather than trimmed: RFC 5280 requires the
// "preferred name syntax", which has none, and verifiers disagree on
// matching it. Wildcards never reach here (checked first).
func canonicalDNSName(name string) (string, bool) {
	if name == "" || strings.HasSuffix(name, ".") {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f {
			return "", false
		}
	}
	return asciiLower(name), true
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// authorizeNames checks every identity in req against allowed and returns
// them in canonical form.
func (p *Policy) authorizeNames(req *x509.CertificateRequest, allowed Allowed) (Names, error) {
	var out Names
	if len(req.EmailAddresses) > 0 {
		return out, deny(ReasonEmailSANNotAllowed, "email SAN %q not allowed", req.EmailAddresses[0])
	}
	for _, n := range req.DNSNames {
		if strings.Contains(n, "*") {
			return out, deny(ReasonWildcardNotAllowed, "wildcard DNS name %q not allowed", n)
		}
		c, ok := canonicalDNSName(n)
		if !ok || !allowed.dns[c] {
			return out, deny(ReasonDNSNameNotAllowed, "DNS name %q is not a name of this pod (allowed: %s)", n, inList(allowed.DNSNames()))
		}
		if !slices.Contains(out.DNSNames, c) {
			out.DNSNames = append(out.DNSNames, c)
		}
	}
	for _, ip := range req.IPAddresses {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok || !allowed.ips[addr.Unmap()] {
			return out, deny(ReasonIPNotAllowed, "IP %s is not an address of this pod (allowed: %s)", ip, inList(ipStrings(allowed.IPs())))
		}
		addr = addr.Unmap()
		if !slices.ContainsFunc(out.IPAddresses, func(have net.IP) bool { return have.Equal(addr.AsSlice()) }) {
			out.IPAddresses = append(out.IPAddresses, net.IP(addr.AsSlice()))
		}
	}
	if err := p.authorizeURIs(req.URIs, allowed); err != nil {
		return out, err
	}
	if len(req.URIs) == 1 {
		u, err := url.Parse(allowed.uri)
		if err != nil {
			return out, deny(ReasonURISANNotAllowed, "allowed URI %q does not parse: %v", allowed.uri, err)
		}
		out.URIs = []*url.URL{u}
	}
	if cn := req.Subject.CommonName; cn != "" {
		if strings.Contains(cn, "*") {
			return out, deny(ReasonWildcardNotAllowed, "wildcard common name %q not allowed", cn)
		}
		c, ok := canonicalDNSName(cn)
		if !ok || !allowed.dns[c] {
			return out, deny(ReasonCommonNameNotAllowed, "common name %q must be empty or one of the pod's DNS names (allowed: %s)", cn, inList(allowed.DNSNames()))
		}
		out.CommonName = c
	}
	if out.CommonName == "" && len(out.DNSNames) == 0 && len(out.IPAddresses) == 0 && len(out.URIs) == 0 {
		// A certificate naming nobody would pass any check that only asks
		// "was it issued by our CA".
		return out, deny(ReasonNoNames, "request names no DNS name, IP, URI or common name")
	}
	return out, nil
}

// authorizeURIs allows at most one URI SAN, the pod's SPIFFE ID, compared
// exactly as serialized: no case folding, no percent-decoding, no query or
// fragment. A SPIFFE X.509-SVID carries exactly one URI SAN.
func (p *Policy) authorizeURIs(uris []*url.URL, allowed Allowed) error {
	if len(uris) == 0 {
		return nil
	}
	if allowed.uri == "" {
		return deny(ReasonURISANNotAllowed, "URI SAN %q not allowed: no SPIFFE trust domain is configured", uris[0])
	}
	if len(uris) > 1 {
		return deny(ReasonURISANNotAllowed, "%d URI SANs requested, at most one (%s) allowed", len(uris), allowed.uri)
	}
	if got := uris[0].String(); got != allowed.uri {
		return deny(ReasonURISANNotAllowed, "URI SAN %q is not this pod's SPIFFE ID %q", got, allowed.uri)
	}
	return nil
}

func ipStrings(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
