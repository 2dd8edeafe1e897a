// Package identity derives what a pod's certificate names: its DNS names, IP
// addresses and common name, from plain facts about the pod and its
// configuration. It is pure and takes no Kubernetes API types, so that the
// agent binary does not link k8s.io/api for it.
//
// The names, in order, de-duplicated:
//
//  1. the extra DNS names (DNS_NAMES), as given;
//  2. for each Service, most qualified first: <svc>.<ns>.svc.<domain> and
//     <svc>.<ns>.svc; with ShortServiceNames also <svc>.<ns> and <svc>,
//     the forms a resolver with the cluster's search path completes, which
//     are off by default because they are not the cluster's to give: <svc>
//     is the same name in every namespace, and <svc>.<ns> is a name outside
//     the cluster when the namespace is a top-level domain (a Service
//     "google" in a namespace "com");
//  3. the headless name <host>.<subdomain>.<ns>.svc.<domain>, when the pod
//     sets spec.hostname and spec.subdomain;
//  4. for a serving certificate that includes pod IPs, <a-b-c-d>.<ns>.pod.<domain>
//     for each IPv4 pod IP: the pod A record of the Kubernetes DNS
//     specification, which defines no IPv6 form.
//
// The IPs are the extra IPs, then, for a serving certificate that includes
// them, the pod IPs. The common name is the one given, else the first DNS
// name that fits in a CN, else the pod name.
package identity

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

// maxCommonName is ub-common-name from RFC 5280: a longer CN cannot be
// encoded, so a long DNS name is skipped rather than truncated.
const maxCommonName = 64

var (
	// ErrInvalid is matched by errors about a malformed input.
	ErrInvalid = errors.New("invalid identity input")
	// ErrEmpty is returned when the certificate would name nothing: a serving
	// certificate with no DNS name and no IP, or one with no common name
	// and no DNS name (a client certificate).
	ErrEmpty = errors.New("certificate would name nothing")
)

// Input is what a certificate is derived from.
type Input struct {
	PodName       string   // for validation and messages
	Namespace     string   // the pod's namespace
	ClusterDomain string   // e.g. cluster.local
	ServiceNames  []string // Services selecting the pod, configured or discovered
	// ShortServiceNames adds <svc>.<ns> and <svc> for each Service.
	ShortServiceNames bool
	Hostname          string   // spec.hostname; set with Subdomain or not at all
	Subdomain         string   // spec.subdomain, the headless Service
	DNSNames          []string // extra DNS names, listed first
	IPs               []net.IP // extra IPs, listed first
	PodIPs            []net.IP
	IncludePodIPs     bool   // add PodIPs (and their pod DNS names) to a serving certificate
	Serving           bool   // the certificate is for server auth
	CommonName        string // "" for the default
}

// Identity is what the certificate request carries.
type Identity struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP // IPv4 addresses in their 4-byte form
}

// Derive returns the names for in. Every error, all joined, matches
// ErrInvalid or ErrEmpty.
func Derive(in Input) (Identity, error) {
	if err := check(in); err != nil {
		return Identity{}, err
	}
	var id Identity
	var errs []error
	seen := make(map[string]bool)
	addName := func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		// Parts are checked above, but joined they may pass 253 characters.
		if msgs := validation.IsDNS1123Subdomain(n); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%w: derived name %q: %s", ErrInvalid, n, strings.Join(msgs, "; ")))
			return
		}
		id.DNSNames = append(id.DNSNames, n)
	}
	for _, n := range in.DNSNames {
		addName(n)
	}
	svcSuffix := in.Namespace + ".svc." + in.ClusterDomain
	for _, svc := range in.ServiceNames {
		addName(svc + "." + svcSuffix)
		addName(svc + "." + in.Namespace + ".svc")
		if in.ShortServiceNames {
			addName(svc + "." + in.Namespace)
			addName(svc)
		}
	}
	if in.Hostname != "" {
		addName(in.Hostname + "." + in.Subdomain + "." + svcSuffix)
	}
	podIPs := in.Serving && in.IncludePodIPs
	if podIPs {
		for _, ip := range in.PodIPs {
			if a := addr(ip); a.Is4() {
				addName(strings.ReplaceAll(a.String(), ".", "-") + "." + in.Namespace + ".pod." + in.ClusterDomain)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Identity{}, err
	}

	seenIP := make(map[netip.Addr]bool)
	addIP := func(ip net.IP) {
		if a := addr(ip); !seenIP[a] {
			seenIP[a] = true
			id.IPs = append(id.IPs, net.IP(a.AsSlice()))
		}
	}
	for _, ip := range in.IPs {
		addIP(ip)
	}
	if podIPs {
		for _, ip := range in.PodIPs {
			addIP(ip)
		}
	}

	id.CommonName = commonName(in, id.DNSNames)
	switch {
	case in.Serving && len(id.DNSNames) == 0 && len(id.IPs) == 0:
		return Identity{}, fmt.Errorf("%w: a serving certificate needs a DNS name or an IP address", ErrEmpty)
	case id.CommonName == "" && len(id.DNSNames) == 0 && len(id.IPs) == 0:
		return Identity{}, fmt.Errorf("%w: no common name, DNS name or IP address", ErrEmpty)
	}
	return id, nil
}

func commonName(in Input, names []string) string {
	if in.CommonName != "" {
		return in.CommonName
	}
	for _, n := range names {
		if len(n) <= maxCommonName {
			return n
		}
	}
	// Certificates are matched on their SANs (RFC 6125), so an empty CN is
	// better than a truncated one; and the csr-agent controller allows only
	// a CN that is one of the pod's DNS names, so nothing else is invented.
	return ""
}

// addr converts an IP checked by check; IPv4-mapped IPv6 addresses are
// unmapped so that ::ffff:10.0.0.1 and 10.0.0.1 are one SAN.
func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// check reports every malformed input, so that Derive only composes valid
// parts.
func check(in Input) error {
	var errs []error
	bad := func(what, value string, msgs []string) {
		if len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%w: %s %q: %s", ErrInvalid, what, value, strings.Join(msgs, "; ")))
		}
	}
	bad("namespace", in.Namespace, validation.IsDNS1123Label(in.Namespace))
	bad("cluster domain", in.ClusterDomain, validation.IsDNS1123Subdomain(in.ClusterDomain))
	if in.PodName != "" {
		bad("pod name", in.PodName, validation.IsDNS1123Subdomain(in.PodName))
	}
	for _, s := range in.ServiceNames {
		bad("service name", s, validation.IsDNS1035Label(s))
	}
	if (in.Hostname == "") != (in.Subdomain == "") {
		errs = append(errs, fmt.Errorf("%w: hostname %q and subdomain %q must be set together", ErrInvalid, in.Hostname, in.Subdomain))
	} else if in.Hostname != "" {
		bad("hostname", in.Hostname, validation.IsDNS1123Label(in.Hostname))
		bad("subdomain", in.Subdomain, validation.IsDNS1123Label(in.Subdomain))
	}
	for _, n := range in.DNSNames {
		if strings.Contains(n, "*") {
			bad("DNS name", n, []string{"wildcards are not issued"})
			continue
		}
		bad("DNS name", n, validation.IsDNS1123Subdomain(n))
	}
	for _, ip := range append(append([]net.IP(nil), in.IPs...), in.PodIPs...) {
		if a, ok := netip.AddrFromSlice(ip); !ok || a.Unmap().IsUnspecified() {
			errs = append(errs, fmt.Errorf("%w: IP address %v names no host", ErrInvalid, ip))
		}
	}
	switch cn := in.CommonName; {
	case len(cn) > maxCommonName:
		bad("common name", cn, []string{fmt.Sprintf("longer than %d characters", maxCommonName)})
	case strings.Contains(cn, "*"):
		bad("common name", cn, []string{"wildcards are not issued"})
	case strings.ContainsFunc(cn, func(r rune) bool { return !unicode.IsPrint(r) }):
		bad("common name", cn, []string{"contains unprintable characters"})
	}
	return errors.Join(errs...)
}

// Selects reports whether a Service with this selector selects a pod with
// these labels: every selector pair must be among the labels. An empty or
// nil selector selects nothing, as for Services: a Service without a
// selector has its endpoints managed by hand and says nothing about pods,
// unlike an empty label selector elsewhere in the API, which selects all.
func Selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}
