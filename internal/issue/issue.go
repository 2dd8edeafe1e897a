// Package issue gets the pod a certificate: it builds the request from the
// pod's identity, creates a certificates.k8s.io/v1 CSR with the pod's own
// credentials, and waits on a watch of that one CSR until the signer answers.
//
// Mechanics only: where the result is stored and when to ask again belong to
// the writer and renew packages.
package issue

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/identity"
)

// Labels put on every CSR, so a request can be traced to its pod
// (`kubectl get csr -l csr-agent.io/pod-name=web-0`).
const (
	LabelPodName      = "csr-agent.io/pod-name"
	LabelPodNamespace = "csr-agent.io/pod-namespace"
	LabelPodUID       = "csr-agent.io/pod-uid"
)

// Client is what the issuer needs of the API.
type Client interface {
	CreateCSR(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (*certificatesv1.CertificateSigningRequest, error)
	GetCSR(ctx context.Context, name string) (*certificatesv1.CertificateSigningRequest, error)
	DeleteCSR(ctx context.Context, name string, uid types.UID) error
	// WatchCSR watches the one CSR called name, from opts.ResourceVersion.
	WatchCSR(ctx context.Context, name string, opts metav1.ListOptions) (watch.Interface, error)
}

// Options configure an Issuer.
type Options struct {
	Client Client
	// Keys keeps the key of a pending request across restarts; default: memory.
	Keys KeyStore
	// Clock drives the pending reminders; default: the real clock.
	Clock clock.WithTicker
	// Rand is the source for keys; default: crypto/rand.
	Rand io.Reader
	// ReminderInterval is how often a pending request is logged with the
	// command that approves it; default 30s.
	ReminderInterval time.Duration
}

// Issuer requests certificates.
type Issuer struct{ opts Options }

// New checks and defaults opts.
func New(opts Options) (*Issuer, error) {
	if opts.Client == nil {
		return nil, errors.New("issue: client must be set")
	}
	if opts.Keys == nil {
		opts.Keys = &MemoryKeyStore{}
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.ReminderInterval <= 0 {
		opts.ReminderInterval = 30 * time.Second
	}
	return &Issuer{opts: opts}, nil
}

// Request describes the certificate to ask for.
type Request struct {
	// Name of the CSR; see CSRName.
	Name       string
	SignerName string
	Identity   identity.Identity
	Usages     config.Usages
	KeyType    config.KeyType
	// Duration is sent as spec.expirationSeconds; the signer may shorten it.
	Duration time.Duration
	Labels   map[string]string
}

// Result is an issued certificate and its key.
type Result struct {
	CSR      *certificatesv1.CertificateSigningRequest
	Key      crypto.Signer
	KeyPEM   []byte
	ChainPEM []byte
}

// Issue gets a certificate for req, resuming this agent's own pending CSR if
// there is one. The caller bounds the wait with ctx; when it expires the error
// is ErrTimeout. The CSR is left in place: the caller deletes it once the
// result is stored (see Delete).
func (i *Issuer) Issue(ctx context.Context, req Request) (*Result, error) {
	logger := klog.FromContext(ctx).WithValues("csr", req.Name, "signer", req.SignerName)
	key, err := i.key(req.KeyType)
	if err != nil {
		return nil, err
	}
	csr, err := i.ensureCSR(klog.NewContext(ctx, logger), req, key)
	if err != nil {
		return nil, err
	}
	csr, err = i.wait(klog.NewContext(ctx, logger), csr)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := checkIssued(csr.Status.Certificate, key); err != nil {
		// Resuming this CSR would only bring the same bad answer back.
		_ = i.opts.Keys.Clear()
		return nil, &RequestError{Err: ErrFailed, CSR: csr.Name, Signer: req.SignerName, Reason: "InvalidCertificate", Message: err.Error()}
	}
	return &Result{CSR: csr, Key: key, KeyPEM: keyPEM, ChainPEM: csr.Status.Certificate}, nil
}

// Done forgets the pending key once the result is stored, and deletes the
// CSR if asked to (it is cluster-scoped clutter once the certificate is
// stored; kube-controller-manager would only collect it after an hour).
func (i *Issuer) Done(ctx context.Context, res *Result, deleteCSR bool) error {
	if err := i.opts.Keys.Clear(); err != nil {
		return err
	}
	if !deleteCSR {
		return nil
	}
	err := i.opts.Client.DeleteCSR(ctx, res.CSR.Name, res.CSR.UID)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting csr %s: %w", res.CSR.Name, err)
	}
	return nil
}

// key returns the pending key if one of the right type is kept, else a new
// one, saved before any CSR is created for it.
func (i *Issuer) key(kt config.KeyType) (crypto.Signer, error) {
	key, err := i.opts.Keys.Load()
	if err != nil {
		return nil, err
	}
	if key != nil && keyMatchesType(key, kt) {
		return key, nil
	}
	if key, err = GenerateKey(kt, i.opts.Rand); err != nil {
		return nil, fmt.Errorf("generating %s key: %w", kt, err)
	}
	if err := i.opts.Keys.Save(key); err != nil {
		return nil, err
	}
	return key, nil
}

// ensureCSR creates the CSR, or adopts the one already there if it is this
// agent's own (same key) and still usable; any other CSR of that name is a
// leftover of an earlier container whose key is gone, and is removed.
func (i *Issuer) ensureCSR(ctx context.Context, req Request, key crypto.Signer) (*certificatesv1.CertificateSigningRequest, error) {
	logger := klog.FromContext(ctx)
	request, err := CertificateRequest(key, req.Identity)
	if err != nil {
		return nil, err
	}
	want := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           request,
			SignerName:        req.SignerName,
			Usages:            KeyUsages(key, req.Usages),
			ExpirationSeconds: ptr.To(int32(req.Duration / time.Second)),
		},
	}
	// Create first: a fresh request (the usual case) costs one round trip.
	for attempt := 0; attempt < 3; attempt++ {
		created, err := i.opts.Client.CreateCSR(ctx, want)
		if err == nil {
			logger.Info("Certificate requested", "dnsNames", req.Identity.DNSNames, "ips", req.Identity.IPs)
			return created, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating csr %s: %w", req.Name, err)
		}
		existing, err := i.opts.Client.GetCSR(ctx, req.Name)
		switch {
		case apierrors.IsNotFound(err):
			continue // removed in between; create again
		case err != nil:
			return nil, fmt.Errorf("reading csr %s: %w", req.Name, err)
		}
		if ours(existing, key) && sameAsk(existing, want) {
			logger.Info("Resuming pending certificate request")
			return existing, nil
		}
		logger.Info("Removing leftover certificate request of an earlier container", "uid", existing.UID)
		if err := i.opts.Client.DeleteCSR(ctx, existing.Name, existing.UID); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, fmt.Errorf("removing leftover csr %s: %w", existing.Name, err)
		}
	}
	return nil, fmt.Errorf("creating csr %s: it keeps being re-created by someone else", req.Name)
}

// ours tells whether an existing CSR was made for key and can still succeed.
func ours(csr *certificatesv1.CertificateSigningRequest, key crypto.Signer) bool {
	pub, err := requestPublicKey(csr.Spec.Request)
	if err != nil || !samePublicKey(key.Public(), pub) {
		return false
	}
	denied, failed := false, false
	for _, c := range csr.Status.Conditions {
		denied = denied || c.Type == certificatesv1.CertificateDenied
		failed = failed || c.Type == certificatesv1.CertificateFailed
	}
	return !denied && !failed
}

// sameAsk tells whether an existing CSR asks for what want asks: a pending
// request from before a Service was added, or from another SIGNER_NAME, must
// not be resumed.
func sameAsk(existing, want *certificatesv1.CertificateSigningRequest) bool {
	if existing.Spec.SignerName != want.Spec.SignerName || !slices.Equal(existing.Spec.Usages, want.Spec.Usages) {
		return false
	}
	a, errA := parseRequest(existing.Spec.Request)
	b, errB := parseRequest(want.Spec.Request)
	if errA != nil || errB != nil {
		return false
	}
	return a.Subject.CommonName == b.Subject.CommonName &&
		slices.Equal(a.DNSNames, b.DNSNames) &&
		slices.EqualFunc(a.IPAddresses, b.IPAddresses, func(x, y net.IP) bool { return x.Equal(y) })
}

var (
	unsafeNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)
	// A dot must sit between two alphanumerics: each dot-separated label
	// of a DNS subdomain starts and ends with one, so "..", ".-" and "-."
	// would make the name invalid.
	dotRuns = regexp.MustCompile(`[.-]*\.[.-]*`)
)

// PodCSRNamePrefix starts the name of every pod's CSR: the name is the
// prefix and the pod's UID, e.g. csr-agent-0f4e5b0c-1111-2222-3333-444455556666.
const PodCSRNamePrefix = "csr-agent-"

// podUIDPattern is a UID as the API server writes it: a lowercase UUID.
var podUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// CSRName is the name of the CSR of one pod, the same every time the pod's
// container restarts, so that a restarted agent finds its own request.
//
// With the pod's UID it is PodCSRNamePrefix + UID: the admission policy
// shipped with the agent's RBAC (manifests/admission) computes that name
// from the pod-uid the API server records for a pod-bound token, and lets a
// pod create a request for csr-agent.io/pod under that name only, and no
// one else create a request under it, so that no pod can squat another
// one's request. A hash of namespace and name would be readable but CEL
// cannot compute it. People find a pod's request by its labels
// (`kubectl get csr -l csr-agent.io/pod-name=web-0`).
//
// Without a UID (POD_UID unset) it is csr-agent-<namespace>-<pod>-<hash>,
// which the admission policy refuses for a pod-bound request for
// csr-agent.io/pod; other signers accept it.
func CSRName(namespace, pod, uid string) string {
	if podUIDPattern.MatchString(uid) {
		return PodCSRNamePrefix + uid
	}
	sum := sha256.Sum256([]byte(namespace + "/" + pod + "/" + uid))
	readable := unsafeNameChars.ReplaceAllString(strings.ToLower(namespace+"-"+pod), "-")
	// Valid namespace and pod names pass unchanged; this only matters for
	// names the API would not have accepted, which must still not yield an
	// invalid CSR name.
	readable = dotRuns.ReplaceAllString(readable, ".")
	// CSR names are DNS subdomains (at most 253 characters).
	if len(readable) > 200 {
		readable = readable[:200]
	}
	return PodCSRNamePrefix + strings.Trim(readable, "-.") + "-" + hex.EncodeToString(sum[:5])
}

func keyMatchesType(key crypto.Signer, kt config.KeyType) bool {
	got, err := KeyTypeOf(key)
	return err == nil && got == kt
}
