// Package agent is what `agent init` and `agent sidecar` do: work out the
// pod's identity, reuse a still-good published certificate or obtain a new
// one (issue), publish it with the CA bundle (writer).
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/identity"
	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/kube"
	"github.com/csr-agent/csr-agent/internal/writer"
)

// API is what the agent needs of the Kubernetes API.
type API interface {
	issue.Client
	TrustBundle(ctx context.Context, signerName string, fromCache bool) ([]byte, error)
	GetPod(ctx context.Context, namespace, name string) (*kube.Pod, error)
	ListServices(ctx context.Context, namespace string) ([]kube.Service, error)
}

var _ API = (*kube.Client)(nil)

// Events posts Kubernetes Events about the pod: *kube.Recorder.
type Events interface {
	Event(ctx context.Context, eventType, reason, message string)
}

var _ Events = (*kube.Recorder)(nil)

// Options wire an Agent.
type Options struct {
	Config *config.Agent
	API    API
	Writer *writer.Writer
	Issuer *issue.Issuer
	Clock  clock.PassiveClock
	// Keys is the Issuer's store of the pending key. With
	// NEW_KEY_ON_RENEWAL=false a renewal puts the published key there, so
	// that the Issuer requests the certificate for it. Optional otherwise.
	Keys issue.KeyStore
	// Events, optional, tells the pod's events what happens.
	Events Events
}

// Agent obtains and publishes the pod's certificate.
type Agent struct {
	cfg    *config.Agent
	api    API
	writer *writer.Writer
	issuer *issue.Issuer
	clock  clock.PassiveClock
	keys   issue.KeyStore
	events Events
}

// New checks opts.
func New(opts Options) (*Agent, error) {
	var errs []error
	if opts.Config == nil {
		errs = append(errs, errors.New("config must be set"))
	}
	if opts.API == nil {
		errs = append(errs, errors.New("API must be set"))
	}
	if opts.Writer == nil {
		errs = append(errs, errors.New("writer must be set"))
	}
	if opts.Issuer == nil {
		errs = append(errs, errors.New("issuer must be set"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Events == nil {
		opts.Events = noEvents{}
	}
	return &Agent{
		cfg: opts.Config, api: opts.API, writer: opts.Writer, issuer: opts.Issuer, clock: opts.Clock,
		keys: opts.Keys, events: opts.Events,
	}, nil
}

type noEvents struct{}

func (noEvents) Event(context.Context, string, string, string) {}

// Init makes sure a valid certificate for the pod's current identity is
// published: the job of `agent init`.
func (a *Agent) Init(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	if err := a.writer.Recover(); err != nil {
		return fmt.Errorf("repairing %s: %w", a.cfg.CertDir, err)
	}
	id, err := a.Identity(ctx)
	if err != nil {
		return err
	}
	if pub, ok := a.reusable(ctx, id); ok {
		logger.Info("Valid certificate already published", "notAfter", pub.Leaf.NotAfter, "serial", pub.Leaf.SerialNumber.Text(16))
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.IssueTimeout)
	defer cancel()
	_, err = a.Obtain(ctx, id)
	return err
}

// Obtain requests a certificate for id and publishes it.
func (a *Agent) Obtain(ctx context.Context, id identity.Identity) (*writer.Published, error) {
	start := a.clock.Now()
	res, ca, err := a.requestWithCA(ctx, id)
	if err != nil {
		return nil, err
	}
	pub, err := a.writer.Publish(writer.Material{KeyPEM: res.KeyPEM, ChainPEM: res.ChainPEM, CAPEM: ca})
	if err != nil {
		return nil, fmt.Errorf("publishing certificate to %s: %w", a.cfg.CertDir, err)
	}
	a.published(ctx, res, pub, "CertificateIssued", a.clock.Since(start))
	return pub, nil
}

// requestWithCA asks for a certificate for id and, while the signer works,
// reads the CA bundle for ca.crt from the API server's cache: it does not
// depend on the answer, and reading it afterwards, consistently, would add
// a round trip and a wait for the cache to every issuance.
func (a *Agent) requestWithCA(ctx context.Context, id identity.Identity) (*issue.Result, []byte, error) {
	fetched := make(chan []byte, 1)
	go func() { fetched <- a.caBundle(ctx, true) }()
	res, err := a.request(ctx, id)
	ca := <-fetched
	if err != nil {
		return nil, nil, err
	}
	return res, a.caFor(ctx, res, ca), nil
}

// request asks for a certificate for id, and tells the pod's events that it
// did and, loudly, if it was denied.
func (a *Agent) request(ctx context.Context, id identity.Identity) (*issue.Result, error) {
	req := issue.Request{
		Name:       issue.CSRName(a.cfg.PodNamespace, a.cfg.PodName, a.cfg.PodUID),
		SignerName: a.cfg.SignerName,
		Identity:   id,
		Usages:     a.cfg.Usages,
		KeyType:    a.cfg.KeyType,
		Duration:   a.cfg.CertDuration,
		Labels: map[string]string{
			issue.LabelPodName:      a.cfg.PodName,
			issue.LabelPodNamespace: a.cfg.PodNamespace,
		},
	}
	if a.cfg.PodUID != "" {
		req.Labels[issue.LabelPodUID] = a.cfg.PodUID
	}
	a.events.Event(ctx, kube.EventNormal, "CertificateRequested", fmt.Sprintf(
		"waiting for %s to approve and sign CSR %s (if it does not: %s)", a.cfg.SignerName, req.Name,
		issue.Hint(a.cfg.SignerName, req.Name, a.cfg.PodNamespace, a.cfg.PodName)))
	res, err := a.issuer.Issue(ctx, req)
	if reqErr := (*issue.RequestError)(nil); errors.As(err, &reqErr) && errors.Is(err, issue.ErrDenied) {
		a.events.Event(ctx, kube.EventWarning, "CertificateDenied", fmt.Sprintf("CSR %s was denied: %s: %s", reqErr.CSR, reqErr.Reason, reqErr.Message))
	}
	return res, err
}

// published logs and tells the pod's events about a stored certificate, and
// cleans up after its request: the CSR, unless DELETE_CSR=false, and the
// pending key.
func (a *Agent) published(ctx context.Context, res *issue.Result, pub *writer.Published, reason string, took time.Duration) {
	logger := klog.FromContext(ctx)
	logger.Info("Certificate published", "dir", a.cfg.CertDir, "csr", res.CSR.Name,
		"subject", pub.Leaf.Subject.String(), "dnsNames", pub.Leaf.DNSNames, "ips", pub.Leaf.IPAddresses,
		"issuer", pub.Leaf.Issuer.String(), "notAfter", pub.Leaf.NotAfter, "caBundle", len(pub.CAPEM) > 0,
		"took", took.Round(time.Millisecond))
	a.events.Event(ctx, kube.EventNormal, reason, fmt.Sprintf("certificate for %s from %s published to %s, valid until %s",
		pub.Leaf.Subject.CommonName, a.cfg.SignerName, a.cfg.CertDir, pub.Leaf.NotAfter.UTC().Format(time.RFC3339)))
	if err := a.issuer.Done(ctx, res, a.cfg.DeleteCSR); err != nil {
		// The certificate is stored; a CSR left behind is clutter, not failure.
		logger.Error(err, "Cleaning up after issuance")
	}
}

// reusable returns the published pair if it names exactly id, with a key of
// the configured type, and is not yet due for renewal at the earliest point
// the sidecar could renew it (70% of its lifetime, or RENEW_BEFORE).
func (a *Agent) reusable(ctx context.Context, id identity.Identity) (*writer.Published, bool) {
	logger := klog.FromContext(ctx)
	pub, err := a.writer.Load()
	if err != nil {
		if !errors.Is(err, writer.ErrNotFound) {
			logger.Info("Published certificate is not usable, requesting a new one", "reason", err.Error())
		}
		return nil, false
	}
	now := a.clock.Now()
	switch {
	case now.After(a.policy().Earliest(pub.Leaf.NotBefore, pub.Leaf.NotAfter)):
		logger.Info("Published certificate is due for renewal, requesting a new one", "notAfter", pub.Leaf.NotAfter)
	case !sameIdentity(pub, id):
		logger.Info("Published certificate names another identity, requesting a new one",
			"published", pub.Leaf.DNSNames, "wanted", id.DNSNames)
	case keyType(pub) != a.cfg.KeyType:
		logger.Info("Published key is of another type, requesting a new one", "published", keyType(pub), "wanted", a.cfg.KeyType)
	default:
		return pub, true
	}
	return nil, false
}

func keyType(pub *writer.Published) config.KeyType {
	kt, _ := issue.KeyTypeOf(pub.Key)
	return kt
}

func sameIdentity(pub *writer.Published, id identity.Identity) bool {
	if pub.Leaf.Subject.CommonName != id.CommonName {
		return false
	}
	if !slices.Equal(sorted(pub.Leaf.DNSNames), sorted(id.DNSNames)) {
		return false
	}
	return slices.Equal(sortedIPs(pub.Leaf.IPAddresses), sortedIPs(id.IPs))
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func sortedIPs(ips []net.IP) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	slices.Sort(s)
	return s
}
