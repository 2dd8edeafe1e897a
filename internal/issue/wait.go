package issue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
)

// wait watches the one CSR until it is issued, denied, failed or deleted.
// UntilWithSync lists then watches and re-lists whenever the watch breaks
// (an API server restart, a watch timeout), so no update is missed and the
// API is never polled.
func (i *Issuer) wait(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (*certificatesv1.CertificateSigningRequest, error) {
	logger := klog.FromContext(ctx)
	var approved atomic.Bool
	remindCtx, stopReminder := context.WithCancel(ctx)
	defer stopReminder()
	go i.remind(remindCtx, csr, &approved)

	fail := func(err error, c certificatesv1.CertificateSigningRequestCondition) error {
		return &RequestError{Err: err, CSR: csr.Name, Signer: csr.Spec.SignerName, Reason: c.Reason, Message: c.Message}
	}
	precondition := func(store cache.Store) (bool, error) {
		if _, exists, err := store.Get(&metav1.ObjectMeta{Name: csr.Name}); err != nil || !exists {
			return false, &RequestError{Err: ErrDeleted, CSR: csr.Name, Signer: csr.Spec.SignerName}
		}
		return false, nil
	}
	ev, err := watchtools.UntilWithSync(ctx, i.opts.Client.WatchCSR(csr.Name), &certificatesv1.CertificateSigningRequest{}, precondition,
		func(ev watch.Event) (bool, error) {
			c, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok {
				return false, nil
			}
			if ev.Type == watch.Deleted || c.UID != csr.UID {
				return false, &RequestError{Err: ErrDeleted, CSR: csr.Name, Signer: csr.Spec.SignerName}
			}
			for _, cond := range c.Status.Conditions {
				switch cond.Type {
				case certificatesv1.CertificateDenied:
					return false, fail(ErrDenied, cond)
				case certificatesv1.CertificateFailed:
					return false, fail(ErrFailed, cond)
				case certificatesv1.CertificateApproved:
					if !approved.Swap(true) {
						logger.Info("Certificate request approved", "reason", cond.Reason, "message", cond.Message)
					}
				}
			}
			return len(c.Status.Certificate) > 0, nil
		})
	if err != nil {
		if reqErr := (*RequestError)(nil); errors.As(err, &reqErr) {
			return nil, err
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &RequestError{Err: ErrTimeout, CSR: csr.Name, Signer: csr.Spec.SignerName}
		}
		if ctx.Err() != nil { // shutting down: not the signer's fault
			return nil, fmt.Errorf("waiting for csr %s: %w", csr.Name, context.Cause(ctx))
		}
		return nil, err
	}
	issued := ev.Object.(*certificatesv1.CertificateSigningRequest)
	logger.Info("Certificate issued")
	return issued, nil
}

// remind logs, every ReminderInterval while the request waits, what it waits
// for and the command a person could run.
func (i *Issuer) remind(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, approved *atomic.Bool) {
	logger := klog.FromContext(ctx)
	ticker := i.opts.Clock.NewTicker(i.opts.ReminderInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
			if approved.Load() {
				logger.Info("Certificate request approved, waiting for the signer", "signer", csr.Spec.SignerName)
			} else {
				logger.Info("Certificate request pending approval", "approveWith", "kubectl certificate approve "+csr.Name)
			}
		}
	}
}
