package approve

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DecideApproved decides whether a CSR that is already approved may be
// signed, and with what Grant. Approve false means the signer must set the
// Failed condition with the Reason and Message.
//
// The approval itself is the authority for what the request names, whoever
// gave it: the controller (Decide) or a person with the "approve" verb on the
// signer (`kubectl certificate approve`). A person may approve what the
// policy would not, such as a request from a plain user or for a name outside
// the pod's Services; that is what the RBAC verb delegates. What approval
// cannot override are the certificate template rules, so the request is
// checked as Decide checks it, except that names are judged by form instead
// of against a pod:
//
//   - the request parses and its signature verifies; key type and size,
//     usages, extensions, subject (at most a CN) and expirationSeconds are
//     within policy;
//   - every DNS name is a valid lowercase-comparable DNS-1123 name without
//     wildcard; every IP is a unicast-capable address (not unspecified);
//     no email SAN; a URI SAN only as the requester's SPIFFE ID; the CN is
//     empty or one of the DNS names; at least one name;
//   - when the requester is a pod (pod-bound token), that pod still exists
//     with that UID and service account and is neither terminating nor
//     finished: a key held by a pod that is gone must not get a certificate,
//     however it was approved. facts.Pod must be the live pod.
func (p *Policy) DecideApproved(csr *certificatesv1.CertificateSigningRequest, facts Facts) Decision {
	g, err := p.decideApproved(csr, facts)
	if err != nil {
		var d *Denial
		if !errors.As(err, &d) {
			d = deny(ReasonInvalidRequest, "%v", err)
		}
		return Decision{Reason: d.Reason, Message: d.Message}
	}
	return Decision{Approve: true, Reason: ReasonApproved, Message: "approved request within the certificate template rules", Grant: g}
}

func (p *Policy) decideApproved(csr *certificatesv1.CertificateSigningRequest, facts Facts) (*Grant, error) {
	if csr == nil {
		return nil, deny(ReasonInvalidRequest, "no CertificateSigningRequest")
	}
	if csr.Spec.SignerName != p.opts.SignerName {
		return nil, deny(ReasonSignerNameMismatch, "signerName %q is not %q", csr.Spec.SignerName, p.opts.SignerName)
	}
	req, err := p.parseRequest(csr)
	if err != nil {
		return nil, err
	}
	var who *Requester
	if r, err := RequesterOf(csr); err == nil {
		who = &r
		if err := checkPod(r, facts.Pod); err != nil {
			return nil, err
		}
	}
	allowed, err := p.requestedNames(req.csr, who)
	if err != nil {
		return nil, err
	}
	names, err := p.authorizeNames(req.csr, allowed)
	if err != nil {
		return nil, err
	}
	return &Grant{PublicKey: req.csr.PublicKey, Names: names, Usages: req.usages, ExpirationSeconds: req.expirationSeconds}, nil
}

// requestedNames is the Allowed set of an approved request: the names it
// asks for that are well formed, so authorizeNames judges the rest (wildcards,
// email, URI, CN) exactly as for a pod.
func (p *Policy) requestedNames(req *x509.CertificateRequest, who *Requester) (Allowed, error) {
	a := Allowed{dns: map[string]bool{}, ips: map[netip.Addr]bool{}}
	for _, n := range req.DNSNames {
		if strings.Contains(n, "*") {
			continue // denied as a wildcard by authorizeNames
		}
		c, ok := canonicalDNSName(n)
		if !ok || len(validation.IsDNS1123Subdomain(c)) != 0 {
			return a, deny(ReasonDNSNameNotAllowed, "DNS name %q is not a valid DNS name", n)
		}
		a.dns[c] = true
	}
	for _, ip := range req.IPAddresses {
		addr, ok := netip.AddrFromSlice(ip)
		if !ok || addr.Unmap().IsUnspecified() {
			return a, deny(ReasonIPNotAllowed, "IP %s names no host", ip)
		}
		a.ips[addr.Unmap()] = true
	}
	if who != nil && p.opts.TrustDomain != "" {
		a.uri = fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", p.opts.TrustDomain, who.Namespace, who.ServiceAccount)
	}
	return a, nil
}
