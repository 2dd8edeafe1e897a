package approve

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Reasons of a Denied PodCertificateRequest beyond the CSR path's. The first
// two are the API's own (certificatesv1 constants): the kubelet and tooling
// match on them.
const (
	ReasonUnsupportedKeyType     = certificatesv1.PodCertificateRequestConditionUnsupportedKeyType
	ReasonInvalidUserAnnotations = certificatesv1.PodCertificateRequestConditionInvalidUserConfig
	ReasonNodeMismatch           = "NodeMismatch"
)

// AnnotationPrefix starts every key of spec.unverifiedUserAnnotations (the
// podCertificate projection's userAnnotations) the policy understands.
const AnnotationPrefix = "csr-agent.io/"

// Keys of spec.unverifiedUserAnnotations. The pod author writes them, so
// they can only narrow what the pod is owed, never widen it.
const (
	// AnnotationServices is a comma-separated list of the pod's own Services
	// whose names the certificate carries; "" means none. Unset: every
	// Service selecting the pod. Naming a Service that does not select the
	// pod is denied, not ignored.
	AnnotationServices = AnnotationPrefix + "services"
	// AnnotationUsage is "server" (server auth only) or "client" (client
	// auth only). Unset: both.
	AnnotationUsage = AnnotationPrefix + "usage"
)

// Values of AnnotationUsage.
const (
	UsageServer = "server"
	UsageClient = "client"
)

// podCertificateUsages are the usages of a pod certificate without a usage
// hint: both, since pods use these certificates to serve and to call each
// other (mutual TLS). A hint picks one.
var podCertificateUsages = map[string][]certificatesv1.KeyUsage{
	"":          AllowedUsages,
	UsageServer: {certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth},
	UsageClient: {certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
}

// PodCertificateFacts are Facts plus what a PodCertificateRequest names
// besides the pod.
type PodCertificateFacts struct {
	Facts
	// ServiceAccountUID is the UID of the live service account named by
	// spec.serviceAccountName, empty when it does not exist.
	ServiceAccountUID types.UID
}

// DecidePodCertificate decides a PodCertificateRequest (the kubelet's
// request for a podCertificate projected volume) with the CSR path's rules:
//
//   - the key: parsed from spec.stubPKCS10Request, whose self-signature is
//     the proof of possession, and allowed by the same key rules as a CSR's
//     (checkKey); a key the API accepts but the policy does not (P-521) is
//     denied UnsupportedKeyType, the API's reason;
//   - the pod: the same checkPod as a CSR's requester (exists with
//     spec.podUID, runs as spec.serviceAccountName, neither terminating nor
//     finished), plus the service account's UID and the pod's node, which a
//     PodCertificateRequest names and a token does not;
//   - the names: a PodCertificateRequest asks for none; the certificate
//     carries exactly AllowedNames of the pod, narrowed by the hints of
//     spec.unverifiedUserAnnotations (AnnotationServices, AnnotationUsage).
//     A hint that would add anything, a malformed one or an unknown key is
//     denied InvalidUnverifiedUserAnnotations, never ignored: the API asks
//     signers to deny keys they do not recognize, and a pod author who
//     misspells a hint must learn it from the denial.
//
// The stub request's subject and extensions are ignored, as the API intends
// (the kubelet sends none): nothing of the request but its key reaches the
// Grant. Grant.ExpirationSeconds is spec.maxExpirationSeconds; the signer
// shortens it to its own maximum and the CA's expiry.
func (p *Policy) DecidePodCertificate(pcr *certificatesv1.PodCertificateRequest, facts PodCertificateFacts) Decision {
	g, err := p.decidePodCertificate(pcr, facts)
	if err != nil {
		return denial(err)
	}
	return Decision{
		Approve: true,
		Reason:  ReasonApproved,
		Message: fmt.Sprintf("csr-agent issues a certificate for pod %s/%s", facts.Pod.Namespace, facts.Pod.Name),
		Grant:   g,
	}
}

func (p *Policy) decidePodCertificate(pcr *certificatesv1.PodCertificateRequest, facts PodCertificateFacts) (*Grant, error) {
	if pcr == nil {
		return nil, deny(ReasonInvalidRequest, "no PodCertificateRequest")
	}
	spec := &pcr.Spec
	if spec.SignerName != p.opts.SignerName {
		return nil, deny(ReasonSignerNameMismatch, "signerName %q is not %q", spec.SignerName, p.opts.SignerName)
	}
	req, err := parseStubRequest(spec.StubPKCS10Request)
	if err != nil {
		return nil, err
	}
	hints, err := parseHints(spec.UnverifiedUserAnnotations)
	if err != nil {
		return nil, err
	}
	who := Requester{Namespace: pcr.Namespace, ServiceAccount: spec.ServiceAccountName, PodName: spec.PodName, PodUID: spec.PodUID}
	if err := checkPod(who, facts.Pod); err != nil {
		return nil, err
	}
	if facts.ServiceAccountUID != spec.ServiceAccountUID {
		return nil, deny(ReasonServiceAccountMismatch, "service account %s/%s has UID %q, the request names UID %q",
			pcr.Namespace, spec.ServiceAccountName, facts.ServiceAccountUID, spec.ServiceAccountUID)
	}
	if facts.Pod.NodeName != string(spec.NodeName) {
		return nil, deny(ReasonNodeMismatch, "pod %s/%s is bound to node %q, the request names node %q",
			facts.Pod.Namespace, facts.Pod.Name, facts.Pod.NodeName, spec.NodeName)
	}
	services, err := hints.narrowServices(facts.Pod, facts.Services)
	if err != nil {
		return nil, err
	}
	names, err := grantedNames(p.AllowedNames(facts.Pod, services))
	if err != nil {
		return nil, err
	}
	var exp *int32
	if spec.MaxExpirationSeconds != nil {
		v := *spec.MaxExpirationSeconds
		exp = &v
	}
	return &Grant{
		PublicKey:         req.PublicKey,
		Names:             names,
		Usages:            slices.Clone(podCertificateUsages[hints.usage]),
		ExpirationSeconds: exp,
	}, nil
}

// parseStubRequest reads the DER PKCS#10 request and applies the CSR path's
// key and signature rules. The API server verified the signature at create;
// it is checked again so the policy does not depend on that.
func parseStubRequest(der []byte) (*x509.CertificateRequest, error) {
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, deny(ReasonInvalidRequest, "parsing spec.stubPKCS10Request: %v", err)
	}
	if err := checkKey(req); err != nil {
		var d *Denial
		if errors.As(err, &d) {
			return nil, deny(ReasonUnsupportedKeyType, "%s; use ECDSAP256, ECDSAP384, RSA3072, RSA4096 or ED25519", d.Message)
		}
		return nil, err
	}
	if err := checkSignature(req); err != nil {
		return nil, err
	}
	return req, nil
}

// hints are the parsed spec.unverifiedUserAnnotations.
type hints struct {
	services    []string // nil: no narrowing
	hasServices bool
	usage       string // "", UsageServer or UsageClient
}

func parseHints(annotations map[string]string) (hints, error) {
	var h hints
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same request always gets the same message
	for _, k := range keys {
		v := annotations[k]
		switch k {
		case AnnotationServices:
			h.hasServices = true
			for name := range strings.SplitSeq(v, ",") {
				name = strings.TrimSpace(name)
				if name == "" {
					continue
				}
				if msgs := validation.IsDNS1035Label(name); len(msgs) != 0 {
					return h, deny(ReasonInvalidUserAnnotations, "%s: %q is not a Service name: %s", k, name, msgs[0])
				}
				h.services = append(h.services, name)
			}
		case AnnotationUsage:
			if _, ok := podCertificateUsages[v]; !ok || v == "" {
				return h, deny(ReasonInvalidUserAnnotations, "%s: %q is not %q or %q", k, v, UsageServer, UsageClient)
			}
			h.usage = v
		default:
			return h, deny(ReasonInvalidUserAnnotations, "unknown key %q (known: %s, %s)", k, AnnotationServices, AnnotationUsage)
		}
	}
	return h, nil
}

// narrowServices returns the Services whose names the certificate may
// carry: all of them without the hint, else those it lists, each of which
// must select the pod (naming any other would ask for a name the pod does
// not own).
func (h hints) narrowServices(pod *Pod, services []Service) ([]Service, error) {
	if !h.hasServices {
		return services, nil
	}
	var out []Service
	for _, name := range h.services {
		i := slices.IndexFunc(services, func(s Service) bool { return s.Name == name && s.Selects(pod) })
		if i < 0 {
			return nil, deny(ReasonInvalidUserAnnotations, "%s: Service %s/%s does not select pod %s", AnnotationServices, pod.Namespace, name, pod.Name)
		}
		out = append(out, services[i])
	}
	return out, nil
}

// grantedNames turns the allowed set into the certificate's names: all of
// them, sorted, so the same pod always gets the same certificate.
func grantedNames(a Allowed) (Names, error) {
	var n Names
	n.DNSNames = a.DNSNames()
	for _, ip := range a.IPs() {
		n.IPAddresses = append(n.IPAddresses, net.IP(ip.AsSlice()))
	}
	if a.URI() != "" {
		u, err := url.Parse(a.URI())
		if err != nil {
			return n, deny(ReasonURISANNotAllowed, "allowed URI %q does not parse: %v", a.URI(), err)
		}
		n.URIs = []*url.URL{u}
	}
	if len(n.DNSNames) == 0 && len(n.IPAddresses) == 0 && len(n.URIs) == 0 {
		// As for a CSR: a certificate naming nobody would pass any check
		// that only asks "was it issued by our CA".
		return n, deny(ReasonNoNames, "the pod has no name to certify: no Service selects it, it has no pod IP yet and no SPIFFE trust domain is configured")
	}
	return n, nil
}
