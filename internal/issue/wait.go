package issue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
)

// errHistoryGone: the API server no longer has the changes after the
// resourceVersion the watch resumes from (410 Gone, e.g. after a long outage).
var errHistoryGone = errors.New("watch history expired")

// wait watches the one CSR until it is issued, denied, failed or deleted.
//
// The watch starts at the resourceVersion of the object in hand (the answer
// to the create, or the pending request read back on resume), so it sees
// every change after it with no list and no cache to sync first: the answer
// is acted on the moment it arrives. A broken watch (an API server restart, a
// watch timeout) resumes where it left off; only if the API server no longer
// has that history is the CSR read again, once, and watched from there. The
// API is never polled.
func (i *Issuer) wait(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (*certificatesv1.CertificateSigningRequest, error) {
	w := &waiter{csr: csr, logger: klog.FromContext(ctx)}
	remindCtx, stopReminder := context.WithCancel(ctx)
	defer stopReminder()
	go i.remind(remindCtx, csr, &w.approved)

	current := csr
	backoff := watchRetry
	for {
		if done, err := w.evaluate(current); err != nil || done {
			return w.result(ctx, current, err)
		}
		issued, err := i.watchFrom(ctx, current, w)
		switch {
		case errors.Is(err, errHistoryGone):
			w.logger.V(2).Info("Watch history expired, reading the request again")
			current, err = i.opts.Client.GetCSR(ctx, csr.Name)
			if apierrors.IsNotFound(err) {
				return w.result(ctx, nil, w.deleted())
			}
			if err != nil {
				return w.result(ctx, nil, fmt.Errorf("reading csr %s: %w", csr.Name, err))
			}
		case (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)) && ctx.Err() == nil:
			// A restarted API server may refuse for a moment, until its
			// authorizer's caches are filled; a missing permission never
			// heals, so keep saying so, and let ISSUE_TIMEOUT end it.
			w.watchErr = err
			delay := backoff.Step()
			w.logger.Error(err, "Cannot watch the certificate request, retrying (does the agent's role grant watch on certificatesigningrequests?)", "in", delay.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return w.result(ctx, nil, ctx.Err())
			case <-i.opts.Clock.After(delay):
			}
			current = w.last
		default:
			return w.result(ctx, issued, err)
		}
	}
}

// watchRetry spaces the watches retried after the API server refused one.
var watchRetry = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 1 << 30, Cap: 15 * time.Second}

// watchFrom watches from the resourceVersion of from until w.evaluate says
// the certificate is there or the request ended.
func (i *Issuer) watchFrom(ctx context.Context, from *certificatesv1.CertificateSigningRequest, w *waiter) (*certificatesv1.CertificateSigningRequest, error) {
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, from.ResourceVersion, watchFunc(func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
		return i.opts.Client.WatchCSR(ctx, from.Name, opts)
	}))
	if err != nil {
		return nil, fmt.Errorf("watching csr %s: %w", from.Name, err)
	}
	defer rw.Stop()
	ev, err := watchtools.UntilWithoutRetry(ctx, rw, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Error:
			if err := apierrors.FromObject(ev.Object); apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				return false, errHistoryGone
			} else {
				return false, fmt.Errorf("watching csr %s: %w", from.Name, err)
			}
		case watch.Deleted:
			return false, w.deleted()
		}
		c, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
		if !ok {
			return false, nil
		}
		return w.evaluate(c)
	})
	if err != nil {
		return nil, err
	}
	return ev.Object.(*certificatesv1.CertificateSigningRequest), nil
}

// waiter judges each state of the CSR it waits on.
type waiter struct {
	csr      *certificatesv1.CertificateSigningRequest
	logger   klog.Logger
	approved atomic.Bool
	// last is the newest state seen, where a retried watch resumes.
	last *certificatesv1.CertificateSigningRequest
	// watchErr is why the API server last refused a watch, if it did.
	watchErr error
}

// evaluate tells whether c carries the certificate, or why it never will.
func (w *waiter) evaluate(c *certificatesv1.CertificateSigningRequest) (bool, error) {
	if c.UID != w.csr.UID {
		return false, w.deleted()
	}
	w.last = c
	for _, cond := range c.Status.Conditions {
		switch cond.Type {
		case certificatesv1.CertificateDenied:
			return false, w.fail(ErrDenied, cond)
		case certificatesv1.CertificateFailed:
			return false, w.fail(ErrFailed, cond)
		case certificatesv1.CertificateApproved:
			if !w.approved.Swap(true) {
				w.logger.Info("Certificate request approved", "reason", cond.Reason, "message", cond.Message)
			}
		}
	}
	return len(c.Status.Certificate) > 0, nil
}

func (w *waiter) fail(err error, c certificatesv1.CertificateSigningRequestCondition) error {
	return &RequestError{Err: err, CSR: w.csr.Name, Signer: w.csr.Spec.SignerName, Reason: c.Reason, Message: c.Message}
}

func (w *waiter) deleted() error {
	return &RequestError{Err: ErrDeleted, CSR: w.csr.Name, Signer: w.csr.Spec.SignerName}
}

// result turns the end of the wait into the issued CSR or one error: the
// request's own outcome, a timeout (ctx's deadline), or a shutdown.
func (w *waiter) result(ctx context.Context, issued *certificatesv1.CertificateSigningRequest, err error) (*certificatesv1.CertificateSigningRequest, error) {
	if reqErr := (*RequestError)(nil); errors.As(err, &reqErr) {
		return nil, err
	}
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			timeout := &RequestError{Err: ErrTimeout, CSR: w.csr.Name, Signer: w.csr.Spec.SignerName,
				Hint: hintFor(w.csr.Spec.SignerName, w.csr.Name, w.csr.Labels)}
			if w.watchErr != nil {
				timeout.Reason, timeout.Message = ReasonWatchRefused, w.watchErr.Error()
			}
			return nil, timeout
		}
		// Shutting down: not the signer's fault.
		return nil, fmt.Errorf("waiting for csr %s: %w", w.csr.Name, context.Cause(ctx))
	}
	if err != nil {
		return nil, err
	}
	w.logger.Info("Certificate issued")
	return issued, nil
}

// watchFunc adapts a function to the watcher RetryWatcher restarts.
type watchFunc func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)

func (f watchFunc) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return f(ctx, opts)
}

// remind logs, every ReminderInterval while the request waits, what it waits
// for and what a person can look at (Hint).
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
				logger.Info("Certificate request pending approval", "hint", hintFor(csr.Spec.SignerName, csr.Name, csr.Labels))
			}
		}
	}
}
