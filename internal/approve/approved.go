package approve

import (
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DecideApproved decides whether a CSR that is already approved may be
// signed, and with what Grant. Approve false means the signer must set the
// Failed condition with the Reason and Message.
//
// Who approved is not recorded in a CSR: the controller (Decide), a person
// with the "approve" verb on the signer (`kubectl certificate approve`), or
// a person clicking approve on a request the policy would deny. So an
// approval is never taken as a grant of names:
//
//   - a request from a pod (pod-bound token) is signed only for that pod's
//     own names (AllowedNames with the facts, as Decide), plus the names in
//     facts.Extra: a person who means to grant more says so explicitly in
//     AnnotationExtraNames, which only approvers may set. The pod must still
//     exist with that UID and service account and be neither terminating nor
//     finished: a key held by a pod that is gone must not get a certificate,
//     however it was approved. facts.Pod must be the live pod;
//   - a request from any other identity (a person, a node, a token not bound
//     to a pod) has no pod to check against: the approval is the approver's
//     authority, within the certificate template rules below.
//
// What approval can never override are the certificate template rules: the
// request parses and its signature verifies; key type and size, usages,
// extensions, subject (at most a CN) and lifetime are within policy; every
// DNS name is a valid lowercase-comparable DNS-1123 name without wildcard;
// every IP is a unicast-capable address (not unspecified); no email SAN; a
// URI SAN only as the requester's SPIFFE ID; the CN is empty or one of the
// DNS names; at least one name.
func (p *Policy) DecideApproved(csr *certificatesv1.CertificateSigningRequest, facts Facts) Decision {
	g, err := p.decideApproved(csr, facts)
	if err != nil {
		return denial(err)
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
	var allowed Allowed
	if who, err := RequesterOf(csr); err == nil {
		if err := checkPod(who, facts.Pod); err != nil {
			return nil, err
		}
		allowed = p.AllowedNames(facts.Pod, facts.Services).with(facts.Extra)
	} else if allowed, err = p.requestedNames(req.csr); err != nil {
		return nil, err
	}
	names, err := p.authorizeNames(req.csr, allowed)
	if d := (*Denial)(nil); errors.As(err, &d) && nameReasons[d.Reason] && facts.Pod != nil {
		d.Message += "; an approval does not extend a pod's names: an approver grants more with the annotation " + AnnotationExtraNames
		if facts.Extra.Ignored != "" {
			d.Message += " (" + facts.Extra.Ignored + ")"
		}
		return nil, truncate(d)
	}
	if err != nil {
		return nil, err
	}
	return &Grant{PublicKey: req.csr.PublicKey, Names: names, Usages: req.usages, ExpirationSeconds: req.expirationSeconds}, nil
}

// nameReasons are the denials of a name the pod does not own.
var nameReasons = map[string]bool{ReasonDNSNameNotAllowed: true, ReasonIPNotAllowed: true, ReasonCommonNameNotAllowed: true}

// requestedNames is the Allowed set of an approved request from an identity
// that is not a pod: the names it asks for that are well formed, so
// authorizeNames judges the rest (wildcards, email, CN) exactly as for a
// pod. Such a requester has no SPIFFE ID of a pod, so no URI is allowed.
func (p *Policy) requestedNames(req *x509.CertificateRequest) (Allowed, error) {
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
	return a, nil
}
