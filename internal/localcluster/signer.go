package localcluster

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
)

// Verdict is what a test signer does with a pending request.
type Verdict int

const (
	Approve Verdict = iota // approve and sign
	Deny                   // set Denied
	Fail                   // approve, then set Failed instead of signing
	Ignore                 // leave it pending (a person, or nobody, decides)
)

// SignerOptions configure StartSigner.
type SignerOptions struct {
	// SignerName to act for; default "csr-agent.io/pod".
	SignerName string
	// Decide picks the verdict for each new request; default: Approve all.
	Decide func(*certificatesv1.CertificateSigningRequest) Verdict
	// Lifetime of issued certificates, shorter than requested if set: the
	// CSR API lets a signer issue shorter than spec.expirationSeconds.
	Lifetime time.Duration
	// PublishTrustBundle creates a ClusterTrustBundle for the signer with
	// the test CA, as the project's controller does.
	PublishTrustBundle bool
	// Logf reports requests the signer could not handle; default: discard.
	Logf func(format string, args ...any)
}

// Signer plays approver and signer for one signer name, so tests of the agent
// do not depend on the project's controller.
type Signer struct {
	CA       *clusterCA
	CAPEM    []byte
	opts     SignerOptions
	cluster  *Cluster
	mu       sync.Mutex
	issued   map[string]int // CSR name → certificates issued
	stop     func()
	stopOnce sync.Once
}

// StartSigner runs a test signer until ctx is done or Stop is called.
func (c *Cluster) StartSigner(ctx context.Context, opts SignerOptions) (*Signer, error) {
	if opts.SignerName == "" {
		opts.SignerName = "csr-agent.io/pod"
	}
	if opts.Decide == nil {
		opts.Decide = func(*certificatesv1.CertificateSigningRequest) Verdict { return Approve }
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	ca, err := newClusterCA()
	if err != nil {
		return nil, err
	}
	s := &Signer{CA: ca, CAPEM: ca.certPEM, opts: opts, cluster: c, issued: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	var cleanups []func()
	s.stop = func() {
		cancel()
		for _, f := range cleanups {
			f()
		}
	}
	if opts.PublishTrustBundle {
		ctb := &certificatesv1.ClusterTrustBundle{
			// generateName cannot be used: its prefix must itself be a valid
			// name, and a signer-linked bundle's name has colons.
			ObjectMeta: metav1.ObjectMeta{Name: signerPrefix(opts.SignerName) + strings.ToLower(rand.Text()[:8])},
			Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: opts.SignerName, TrustBundle: string(ca.certPEM)},
		}
		ctb, err := c.Client.CertificatesV1().ClusterTrustBundles().Create(ctx, ctb, metav1.CreateOptions{})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("publishing trust bundle: %w", err)
		}
		cleanups = append(cleanups, func() {
			_ = c.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), ctb.Name, metav1.DeleteOptions{})
		})
	}
	lw := cache.NewFilteredListWatchFromClient(c.Client.CertificatesV1().RESTClient(), "certificatesigningrequests", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", opts.SignerName).String()
	})
	informer := cache.NewSharedIndexInformer(lw, &certificatesv1.CertificateSigningRequest{}, 0, cache.Indexers{})
	handle := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			if err := s.handle(ctx, csr); err != nil && ctx.Err() == nil {
				opts.Logf("test signer: %v", err)
			}
		}
	}
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	})
	done := make(chan struct{})
	go func() { informer.RunWithContext(ctx); close(done) }()
	// The informer stops before the bundle goes, so nothing is signed
	// against a CA whose bundle was already removed.
	cleanups = append([]func(){func() { <-done }}, cleanups...)
	return s, nil
}

// Stop stops the signer and removes its trust bundle. It waits for the
// signer's goroutine to end.
func (s *Signer) Stop() { s.stopOnce.Do(s.stop) }

// Issued reports how many certificates the signer issued for the CSR name.
func (s *Signer) Issued(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[name]
}

func (s *Signer) handle(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	csrs := s.cluster.Client.CertificatesV1().CertificateSigningRequests()
	approved, decided := false, false
	for _, c := range csr.Status.Conditions {
		decided = decided || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed
		approved = approved || c.Type == certificatesv1.CertificateApproved
	}
	if decided || len(csr.Status.Certificate) > 0 {
		return nil
	}
	if !approved {
		switch s.opts.Decide(csr) {
		case Ignore:
			return nil
		case Deny:
			csr.Status.Conditions = append(csr.Status.Conditions, condition(certificatesv1.CertificateDenied, "TestDenied", "denied by the test signer"))
		default:
			csr.Status.Conditions = append(csr.Status.Conditions, condition(certificatesv1.CertificateApproved, "TestApproved", "approved by the test signer"))
		}
		_, err := csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
		return err // the update brings the approved object back through the informer
	}
	if s.opts.Decide(csr) == Fail {
		csr.Status.Conditions = append(csr.Status.Conditions, condition(certificatesv1.CertificateFailed, "TestFailed", "failed by the test signer"))
		_, err := csrs.UpdateStatus(ctx, csr, metav1.UpdateOptions{})
		return err
	}
	certPEM, err := s.sign(csr)
	if err != nil {
		return err
	}
	csr.Status.Certificate = certPEM
	if _, err := csrs.UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return err
	}
	s.mu.Lock()
	s.issued[csr.Name]++
	s.mu.Unlock()
	return nil
}

// sign issues what the request asks for: a test signer checks nothing.
func (s *Signer) sign(csr *certificatesv1.CertificateSigningRequest) ([]byte, error) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		return nil, fmt.Errorf("csr %s: no PEM request", csr.Name)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr %s: %w", csr.Name, err)
	}
	lifetime := time.Hour
	if csr.Spec.ExpirationSeconds != nil {
		lifetime = time.Duration(*csr.Spec.ExpirationSeconds) * time.Second
	}
	if s.opts.Lifetime > 0 && s.opts.Lifetime < lifetime {
		lifetime = s.opts.Lifetime
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Subject.CommonName},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPAddresses,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case certificatesv1.UsageClientAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		case certificatesv1.UsageKeyEncipherment:
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.CA.cert, req.PublicKey, s.CA.key)
	if err != nil {
		return nil, fmt.Errorf("csr %s: signing: %w", csr.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func condition(t certificatesv1.RequestConditionType, reason, msg string) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{
		Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastUpdateTime: metav1.Now(),
	}
}

// signerPrefix makes a ClusterTrustBundle name prefix for a signer:
// "<signer with / as :>:" is what the API requires.
func signerPrefix(signer string) string {
	out := []byte(signer)
	for i, c := range out {
		if c == '/' {
			out[i] = ':'
		}
	}
	return string(out) + ":"
}
