package identity

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func ipList(s string) []net.IP {
	var out []net.IP
	for _, v := range list(s) {
		out = append(out, net.ParseIP(v)) // nil for garbage: a malformed input
	}
	return out
}

// FuzzDerive: whatever the input, Derive does not panic, and what it returns
// is a certificate a signer can issue: no wildcard, only valid DNS names, no
// duplicates, and something to name.
func FuzzDerive(f *testing.F) {
	f.Add("web-0", "shop", "cluster.local", "web,api", "web-0", "web", "a.example.com", "192.0.2.1", "10.1.2.3,fd00::3", "", uint8(3))
	f.Add("p", "ns", "cluster.local", "", "", "", "*.example.com", "::ffff:10.0.0.1", "10.0.0.1", "*", uint8(1))
	f.Add("p", "ns", "d", "a,a", "", "", "a.ns,a", "0.0.0.0", "", "", uint8(2))
	f.Fuzz(func(t *testing.T, podName, ns, domain, services, host, sub, dnsNames, extraIPs, podIPs, cn string, flags uint8) {
		in := Input{
			PodName: podName, Namespace: ns, ClusterDomain: domain, ServiceNames: list(services),
			Hostname: host, Subdomain: sub, DNSNames: list(dnsNames), IPs: ipList(extraIPs), PodIPs: ipList(podIPs),
			IncludePodIPs: flags&1 != 0, Serving: flags&2 != 0, CommonName: cn,
		}
		id, err := Derive(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrEmpty) {
				t.Fatalf("error %v matches neither ErrInvalid nor ErrEmpty", err)
			}
			return
		}
		if strings.Contains(id.CommonName, "*") || len(id.CommonName) > maxCommonName {
			t.Fatalf("CN %q", id.CommonName)
		}
		seen := make(map[string]bool)
		for _, n := range id.DNSNames {
			if strings.Contains(n, "*") || len(validation.IsDNS1123Subdomain(n)) > 0 || seen[n] {
				t.Fatalf("DNS name %q is a wildcard, invalid or a duplicate in %q", n, id.DNSNames)
			}
			seen[n] = true
		}
		seenIP := make(map[netip.Addr]bool)
		for _, ip := range id.IPs {
			a, ok := netip.AddrFromSlice(ip)
			if !ok || a.Is4In6() || a.IsUnspecified() || seenIP[a] {
				t.Fatalf("IP %v is malformed, mapped, unspecified or a duplicate in %v", ip, id.IPs)
			}
			seenIP[a] = true
		}
		if in.Serving && len(id.DNSNames)+len(id.IPs) == 0 {
			t.Fatal("a serving certificate names nothing")
		}
		if !in.Serving && len(id.IPs) > len(in.IPs) {
			t.Fatal("a client certificate carries pod IPs")
		}
	})
}
