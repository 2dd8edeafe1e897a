package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/writer"
)

var _ renew.Renewer = (*Agent)(nil)

// Started is the state `agent sidecar` starts its renewal loop from.
type Started struct {
	// Published is the pair on disk.
	Published *writer.Published
	// Issued is set when Start had to obtain it, Took how long that took,
	// Replaced when it replaced something the app may have read (damaged or
	// expired files, rather than an empty directory).
	Issued   bool
	Took     time.Duration
	Replaced bool
	// RenewNow is set when the pair on disk is valid but names an identity
	// or key type the pod no longer has: keep it, and renew at once.
	RenewNow bool
}

// Start is the sidecar's first step. A valid, unexpired pair on disk is
// kept, whatever it names: replacing it is the renewal loop's job, which
// never fails fatally. Without one, Start does what Init does, and fails
// as Init fails (denied, timed out...): a container that cannot get its
// first certificate should crash-loop where people look.
func (a *Agent) Start(ctx context.Context) (*Started, error) {
	logger := klog.FromContext(ctx)
	if err := a.writer.Recover(); err != nil {
		return nil, fmt.Errorf("repairing %s: %w", a.cfg.CertDir, err)
	}
	pub, err := a.writer.Load()
	switch {
	case err == nil && a.clock.Now().Before(pub.Leaf.NotAfter):
		return a.adopt(ctx, pub), nil
	case err == nil:
		logger.Info("Published certificate has expired, requesting a new one", "notAfter", pub.Leaf.NotAfter)
	case !errors.Is(err, writer.ErrNotFound):
		logger.Info("Published certificate is not usable, requesting a new one", "reason", err.Error())
	}
	replaced := !errors.Is(err, writer.ErrNotFound)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.IssueTimeout)
	defer cancel()
	id, err := a.Identity(ctx)
	if err != nil {
		return nil, err
	}
	start := a.clock.Now()
	if pub, err = a.Obtain(ctx, id); err != nil {
		return nil, err
	}
	return &Started{Published: pub, Issued: true, Took: a.clock.Since(start), Replaced: replaced}, nil
}

// adopt keeps a valid pair found on disk, asking for a renewal at once if
// it no longer fits the pod (or if that cannot be known now).
func (a *Agent) adopt(ctx context.Context, pub *writer.Published) *Started {
	logger := klog.FromContext(ctx)
	s := &Started{Published: pub}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.IssueTimeout)
	defer cancel()
	id, err := a.Identity(ctx)
	switch {
	case err != nil:
		logger.Error(err, "Keeping the published certificate; its names are checked at the first renewal")
		s.RenewNow = true
	case !sameIdentity(pub, id):
		logger.Info("Published certificate names another identity; keeping it until renewed",
			"published", pub.Leaf.DNSNames, "wanted", id.DNSNames)
		s.RenewNow = true
	case keyType(pub) != a.cfg.KeyType:
		logger.Info("Published key is of another type; keeping it until renewed", "published", keyType(pub), "wanted", a.cfg.KeyType)
		s.RenewNow = true
	default:
		logger.Info("Valid certificate already published", "notAfter", pub.Leaf.NotAfter, "serial", pub.Leaf.SerialNumber.Text(16))
	}
	return s
}

// Renew obtains a certificate for the pod's identity as it is now (Services
// selecting the pod come and go) without publishing it: the renewal loop
// publishes, then calls the Renewal's Done. It waits at most ISSUE_TIMEOUT.
func (a *Agent) Renew(ctx context.Context, current *writer.Published) (*renew.Renewal, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.IssueTimeout)
	defer cancel()
	start := a.clock.Now()
	id, err := a.Identity(ctx)
	if err != nil {
		return nil, err
	}
	if !a.cfg.DeleteCSR {
		a.removeSpentCSR(ctx, current.Leaf)
	}
	if !a.cfg.NewKeyOnRenewal && a.keys != nil {
		// The Issuer takes a pending key of the configured type; one already
		// pending belongs to a request that a restart interrupted.
		if pending, err := a.keys.Load(); err == nil && pending == nil {
			if err := a.keys.Save(current.Key); err != nil {
				return nil, err
			}
		}
	}
	res, ca, err := a.requestWithCA(ctx, id)
	if err != nil {
		return nil, err
	}
	return &renew.Renewal{
		Material: writer.Material{KeyPEM: res.KeyPEM, ChainPEM: res.ChainPEM, CAPEM: ca},
		Done: func(ctx context.Context, pub *writer.Published) {
			a.published(ctx, res, pub, "CertificateRenewed", a.clock.Since(start))
		},
	}, nil
}

// removeSpentCSR deletes the CSR kept (DELETE_CSR=false) from the issuance
// of the current certificate. CSRs are named per pod, and the Issuer would
// otherwise resume that one when the key is the same, getting the current
// certificate back instead of a new one.
func (a *Agent) removeSpentCSR(ctx context.Context, current *x509.Certificate) {
	name := issue.CSRName(a.cfg.PodNamespace, a.cfg.PodName, a.cfg.PodUID)
	csr, err := a.api.GetCSR(ctx, name)
	if err != nil || len(csr.Status.Certificate) == 0 {
		return // gone, or still pending: the Issuer knows what to do
	}
	block, _ := pem.Decode(csr.Status.Certificate)
	if block == nil {
		return
	}
	if leaf, err := x509.ParseCertificate(block.Bytes); err != nil || !leaf.Equal(current) {
		return
	}
	if err := a.api.DeleteCSR(ctx, name, csr.UID); err != nil {
		klog.FromContext(ctx).V(1).Info("Removing the CSR of the current certificate", "csr", name, "error", err.Error())
	}
}

func (a *Agent) policy() renew.Policy { return renew.Policy{Before: a.cfg.RenewBefore} }
