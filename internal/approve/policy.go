// Package approve is the approval policy of csr-agent's controller: a pure
// function that decides whether a CertificateSigningRequest for signerName
// csr-agent.io/pod is approved or denied, given facts the controller read
// from its informers. It makes no API calls.
//
// It makes concrete the two rules the Kubernetes TLS guide gives approvers
// ("Manage TLS Certificates in a Cluster", approval):
//
//  1. The subject controls the private key: spec.request is one PEM
//     "CERTIFICATE REQUEST" whose self-signature verifies. kube-apiserver
//     checked it at create; it is checked again because the policy must not
//     depend on another component's validation.
//  2. The subject is authorized for what it asks: the requester is a pod (a
//     pod-bound service-account token), the pod is alive and is the one the
//     token was bound to, and every name, IP, usage, extension, key and
//     lifetime requested belongs to that pod or is within policy.
//
// Everything not explicitly allowed is denied (fail closed). The checks run in
// a fixed order (identity, request, pod, names) so a request breaking several
// rules always gets the same Reason.
//
// The allowed names of a pod (AllowedNames) are documented on that function.
// On approval the Decision carries a Grant: the validated view of the request
// that the signer builds the certificate from, so nothing from the raw request
// reaches the certificate without having passed these checks.
package approve

import (
	"crypto"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// SignerName is the signerName csr-agent approves and signs for.
const SignerName = "csr-agent.io/pod"

// Reasons, set as the Reason of the Approved or Denied condition. They are
// machine-readable and stable: tooling and tests match on them.
const (
	ReasonApproved               = "AutoApproved"
	ReasonSignerNameMismatch     = "SignerNameMismatch"
	ReasonNotPodBound            = "NotPodBound"
	ReasonPodNotFound            = "PodNotFound"
	ReasonPodUIDMismatch         = "PodUIDMismatch"
	ReasonServiceAccountMismatch = "ServiceAccountMismatch"
	ReasonPodTerminating         = "PodTerminating"
	ReasonPodFinished            = "PodFinished"
	ReasonDNSNameNotAllowed      = "DNSNameNotAllowed"
	ReasonWildcardNotAllowed     = "WildcardNotAllowed"
	ReasonIPNotAllowed           = "IPNotAllowed"
	ReasonEmailSANNotAllowed     = "EmailSANNotAllowed"
	ReasonURISANNotAllowed       = "URISANNotAllowed"
	ReasonCommonNameNotAllowed   = "CommonNameNotAllowed"
	ReasonSubjectNotAllowed      = "SubjectNotAllowed"
	ReasonNoNames                = "NoNamesRequested"
	ReasonUsageNotAllowed        = "UsageNotAllowed"
	ReasonCARequested            = "CARequested"
	ReasonExtensionNotAllowed    = "ExtensionNotAllowed"
	ReasonKeyTypeNotAllowed      = "KeyTypeNotAllowed"
	ReasonWeakKey                = "WeakKey"
	ReasonInvalidRequest         = "InvalidRequest"
	ReasonSignatureInvalid       = "SignatureInvalid"
)

// requestOnly are the reasons decided from the CSR alone.
var requestOnly = map[string]bool{
	ReasonSignerNameMismatch: true, ReasonNotPodBound: true, ReasonInvalidRequest: true,
	ReasonSignatureInvalid: true, ReasonKeyTypeNotAllowed: true, ReasonWeakKey: true,
	ReasonUsageNotAllowed: true, ReasonCARequested: true, ReasonExtensionNotAllowed: true,
	ReasonSubjectNotAllowed: true, ReasonWildcardNotAllowed: true,
	ReasonEmailSANNotAllowed: true, ReasonNoNames: true,
}

// DependsOnFacts reports whether a request denied with this reason might
// be approved with other Facts (the pod's existence, UID, service account,
// phase, IPs and labels, or the Services): a controller reading Facts from a
// cache confirms such a denial with fresh Facts before writing it. A reason
// decided from the request alone (a wildcard, a weak key...) denies whatever
// the Facts. Unknown reasons count as depending on facts.
func DependsOnFacts(reason string) bool { return !requestOnly[reason] }

// Defaults for Options.
const (
	DefaultClusterDomain = "cluster.local"
	// DefaultMaxExpiration keeps pod certificates short-lived: the agent renews
	// well before expiry, and a leaked key is useful for a day at most.
	DefaultMaxExpiration = 24 * time.Hour
	// MinMaxExpiration is kube-apiserver's lower bound on spec.expirationSeconds
	// (600s, certificates validation). A smaller maximum would deny every
	// request that sets the field.
	MinMaxExpiration = 10 * time.Minute
)

// Options configure the policy. Zero fields take the defaults above.
type Options struct {
	// SignerName is the spec.signerName the policy acts for; default
	// SignerName.
	SignerName string
	// ClusterDomain is the cluster's DNS domain (kubelet --cluster-domain),
	// lowercase, without a trailing dot.
	ClusterDomain string
	// MaxExpiration caps the lifetime granted. A longer
	// spec.expirationSeconds is granted MaxExpiration, as the CSR API lets
	// a signer do (kube-controller-manager clamps the same way); a request
	// without the field gets MaxExpiration too.
	MaxExpiration time.Duration
	// ShortServiceNames also allows <svc>.<ns> and <svc> for the pod's
	// Services (see AllowedNames for the risk). Default false.
	ShortServiceNames bool
	// TrustDomain, when set, allows the one URI SAN
	// spiffe://<TrustDomain>/ns/<namespace>/sa/<service account>.
	// Empty: no URI SAN is allowed.
	TrustDomain string
}

// spiffeTrustDomain is the character set the SPIFFE ID spec allows in a
// trust domain name (lowercase letters, digits, '.', '-', '_').
var spiffeTrustDomain = regexp.MustCompile(`^[a-z0-9._-]+$`)

func (o *Options) defaults() {
	if o.SignerName == "" {
		o.SignerName = SignerName
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.MaxExpiration == 0 {
		o.MaxExpiration = DefaultMaxExpiration
	}
}

// validate returns every problem, joined.
func (o *Options) validate() error {
	var errs []error
	if domain, path, ok := strings.Cut(o.SignerName, "/"); !ok || domain == "" || path == "" {
		errs = append(errs, fmt.Errorf("Options.SignerName %q: want domain/path such as %q", o.SignerName, SignerName))
	}
	for _, msg := range validation.IsDNS1123Subdomain(o.ClusterDomain) {
		errs = append(errs, fmt.Errorf("Options.ClusterDomain %q: want a lowercase DNS name without trailing dot such as %q: %s",
			o.ClusterDomain, DefaultClusterDomain, msg))
	}
	if o.MaxExpiration < MinMaxExpiration {
		errs = append(errs, fmt.Errorf("Options.MaxExpiration %s: want at least %s (kube-apiserver's minimum expirationSeconds)",
			o.MaxExpiration, MinMaxExpiration))
	}
	if o.TrustDomain != "" && (!spiffeTrustDomain.MatchString(o.TrustDomain) || len(o.TrustDomain) > 255) {
		errs = append(errs, fmt.Errorf("Options.TrustDomain %q: want a SPIFFE trust domain such as %q (lowercase letters, digits, '.', '-', '_'; no scheme or port)",
			o.TrustDomain, "example.org"))
	}
	return errors.Join(errs...)
}

// Policy decides on CSRs. It is immutable and safe for concurrent use.
type Policy struct {
	opts Options
}

// New defaults and validates opts.
func New(opts Options) (*Policy, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("approve options: %w", err)
	}
	return &Policy{opts: opts}, nil
}

// Options returns the defaulted options in use.
func (p *Policy) Options() Options { return p.opts }

// Decision is the outcome for one CSR.
type Decision struct {
	Approve bool
	// Reason is one of the Reason constants.
	Reason string
	// Message is for humans and names the offending value.
	Message string
	// Grant is the validated view of the request. It is set only when Approve
	// is true.
	Grant *Grant
}

// Grant is what an approved request may receive: the only data the signer
// builds a certificate from.
type Grant struct {
	// PublicKey is the request's key, whose possession the request proved.
	PublicKey crypto.PublicKey
	Names     Names
	// Usages are the requested usages, deduplicated, in a fixed order.
	Usages []certificatesv1.KeyUsage
	// ExpirationSeconds is spec.expirationSeconds clamped to
	// Options.MaxExpiration (nil: the signer's maximum).
	ExpirationSeconds *int32
}

// Names are the identities an approved request asked for, each of which was
// allowed, in canonical form (DNS names lowercase, IPv4 as 4 bytes).
type Names struct {
	CommonName  string
	DNSNames    []string
	IPAddresses []net.IP
	URIs        []*url.URL
}

// Facts are what the controller knows about the requesting pod.
type Facts struct {
	// Pod is the live pod named by the token, nil when it does not exist.
	Pod *Pod
	// Services are the Services in the pod's namespace. Services of other
	// namespaces are ignored.
	Services []Service
	// Extra are names a person granted an approved pod-bound request
	// (AnnotationExtraNames), read by the controller only while the
	// admission policy reserving the annotation to approvers is in force.
	// Decide ignores them: the controller's own approval never grants more
	// than the pod's names.
	Extra ExtraNames
}

// Denial is a decision to deny, as an error, so the checks can return early.
type Denial struct {
	Reason  string
	Message string
}

func (d *Denial) Error() string { return d.Reason + ": " + d.Message }

// maxMessage bounds a denial message, which quotes requester-chosen values:
// it is written into the CSR's status, and an object grown past etcd's size
// limit could never be updated again.
const maxMessage = 1024

func deny(reason, format string, args ...any) *Denial {
	return truncate(&Denial{Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// truncate bounds d.Message to maxMessage bytes.
func truncate(d *Denial) *Denial {
	if len(d.Message) > maxMessage {
		d.Message = strings.ToValidUTF8(d.Message[:maxMessage-3], "") + "..."
	}
	return d
}

// Decide applies the policy to csr. Call it only for a CSR that
// (*Policy).Classify reports StatePending (or StateApproved, to re-check before signing): for
// another signer's CSR it returns a SignerNameMismatch denial that must not
// be written, since other approvers may be waiting on that CSR.
func (p *Policy) Decide(csr *certificatesv1.CertificateSigningRequest, facts Facts) Decision {
	g, err := p.decide(csr, facts)
	if err != nil {
		return denial(err)
	}
	return Decision{
		Approve: true,
		Reason:  ReasonApproved,
		Message: fmt.Sprintf("csr-agent approved certificate for pod %s/%s", facts.Pod.Namespace, facts.Pod.Name),
		Grant:   g,
	}
}

func (p *Policy) decide(csr *certificatesv1.CertificateSigningRequest, facts Facts) (*Grant, error) {
	if csr == nil {
		return nil, deny(ReasonInvalidRequest, "no CertificateSigningRequest")
	}
	if csr.Spec.SignerName != p.opts.SignerName {
		return nil, deny(ReasonSignerNameMismatch, "signerName %q is not %q", csr.Spec.SignerName, p.opts.SignerName)
	}
	who, err := RequesterOf(csr)
	if err != nil {
		return nil, err
	}
	req, err := p.parseRequest(csr)
	if err != nil {
		return nil, err
	}
	if err := checkPod(who, facts.Pod); err != nil {
		return nil, err
	}
	names, err := p.authorizeNames(req.csr, p.AllowedNames(facts.Pod, facts.Services))
	if err != nil {
		return nil, err
	}
	return &Grant{
		PublicKey:         req.csr.PublicKey,
		Names:             names,
		Usages:            req.usages,
		ExpirationSeconds: req.expirationSeconds,
	}, nil
}

// denial is the Decision for a failed check: its Denial, or InvalidRequest
// for any other error.
func denial(err error) Decision {
	var d *Denial
	if !errors.As(err, &d) {
		d = deny(ReasonInvalidRequest, "%v", err)
	}
	return Decision{Reason: d.Reason, Message: d.Message}
}

// inList formats up to a few allowed values for a denial message, so a user
// can see what the request could have asked for.
func inList(values []string) string {
	const shown = 8
	if len(values) == 0 {
		return "none"
	}
	if len(values) > shown {
		return strings.Join(values[:shown], ", ") + fmt.Sprintf(" and %d more", len(values)-shown)
	}
	return strings.Join(values, ", ")
}
