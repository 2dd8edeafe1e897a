package approve

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// AnnotationExtraNames is the CSR annotation in which a person who may
// approve for the signer grants a pod-bound request names beyond the pod's
// own: a comma-separated list of DNS names and IP addresses. An approval
// alone never extends a pod's names (DecideApproved).
const AnnotationExtraNames = "csr-agent.io/extra-names"

// ExtraNamesPolicy is the ValidatingAdmissionPolicy (and its binding, of the
// same name) that lets only users allowed to approve for the signer set or
// change AnnotationExtraNames. The controller honours the annotation only
// while that policy is in force: without it anyone who may create or update
// a CSR could write it, the requesting pod included.
const ExtraNamesPolicy = "csr-agent-extra-names"

// ExtraNames are names granted by AnnotationExtraNames.
type ExtraNames struct {
	DNSNames []string // canonical (lowercase)
	IPs      []netip.Addr
	// Ignored, when set, says why an annotation present on the CSR was not
	// honoured; it is added to the message of a names denial.
	Ignored string
}

// ParseExtraNames reads the value of AnnotationExtraNames. Every entry must
// be an IP address or a DNS-1123 subdomain without wildcard; one bad entry
// refuses the whole value, so a typo never grants half of what was meant.
func ParseExtraNames(value string) (ExtraNames, error) {
	var out ExtraNames
	for entry := range strings.SplitSeq(value, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if addr, err := netip.ParseAddr(entry); err == nil {
			if addr.Zone() != "" || addr.Unmap().IsUnspecified() {
				return ExtraNames{}, fmt.Errorf("annotation %s: %q names no host", AnnotationExtraNames, entry)
			}
			out.IPs = append(out.IPs, addr.Unmap())
			continue
		}
		c, ok := canonicalDNSName(entry)
		if !ok || strings.Contains(c, "*") || len(validation.IsDNS1123Subdomain(c)) != 0 {
			return ExtraNames{}, fmt.Errorf("annotation %s: %q is neither an IP address nor a DNS name without wildcard", AnnotationExtraNames, entry)
		}
		out.DNSNames = append(out.DNSNames, c)
	}
	return out, nil
}

// with returns a copy of a that also allows the extra names.
func (a Allowed) with(extra ExtraNames) Allowed {
	out := Allowed{dns: make(map[string]bool, len(a.dns)+len(extra.DNSNames)), ips: make(map[netip.Addr]bool, len(a.ips)+len(extra.IPs)), uri: a.uri}
	for n := range a.dns {
		out.dns[n] = true
	}
	for ip := range a.ips {
		out.ips[ip] = true
	}
	out.addDNS(extra.DNSNames...)
	for _, ip := range extra.IPs {
		out.ips[ip] = true
	}
	return out
}
