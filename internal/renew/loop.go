package renew

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/writer"
)

type attempt struct {
	renewal *Renewal
	err     error
	took    time.Duration
}

// Run keeps the certificate valid until ctx ends, and returns nil then. At
// most one renewal runs at a time, in a goroutine of its own so that files
// are repaired while a request waits for approval; Run waits for it before
// returning, and publishes nothing of it after ctx ends.
func (l *Loop) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	now := l.opts.Clock.Now()
	l.next = now
	if !l.opts.RenewNow {
		l.next = l.deadline()
	}
	l.opts.Observer.Due(l.next)
	logger.Info("Renewal scheduled", "at", l.next, "notAfter", l.current.Leaf.NotAfter)

	attempts := make(chan attempt, 1)
	inFlight := false
	for {
		if ctx.Err() != nil {
			if inFlight {
				<-attempts // the request sees ctx too; nothing of it is published
			}
			return nil
		}
		now = l.opts.Clock.Now()
		l.repairIfDue(ctx, now)
		if !inFlight {
			l.refreshCAIfAsked(ctx)
			if !now.Before(l.next) {
				inFlight = true
				go l.attempt(ctx, l.current, attempts)
			}
		}

		var timer clock.Timer
		var wake <-chan time.Time
		if at := l.wakeAt(inFlight); !at.IsZero() {
			timer = l.opts.Clock.NewTimer(at.Sub(now))
			wake = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-l.opts.FilesChanged:
			l.repairAt = l.opts.Clock.Now()
		case <-l.opts.CAChanged:
			l.checkCA = true
		case a := <-attempts:
			inFlight = false
			l.finish(ctx, a)
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// wakeAt is the earliest time something is due, zero if nothing is.
func (l *Loop) wakeAt(inFlight bool) time.Time {
	at := l.repairAt
	if !inFlight && (at.IsZero() || l.next.Before(at)) {
		at = l.next
	}
	return at
}

func (l *Loop) attempt(ctx context.Context, current *writer.Published, out chan<- attempt) {
	end := l.opts.Health.Begin("renewing", l.opts.RenewLimit)
	defer end()
	start := l.opts.Clock.Now()
	r, err := l.opts.Renewer.Renew(ctx, current)
	out <- attempt{renewal: r, err: err, took: l.opts.Clock.Since(start)}
}

// finish publishes a renewal, or schedules the retry of a failed one.
func (l *Loop) finish(ctx context.Context, a attempt) {
	if ctx.Err() != nil {
		return // shutting down: abandon, the next start resumes the request
	}
	if a.err != nil {
		l.failed(ctx, a.err, a.took)
		return
	}
	end := l.opts.Health.Begin("publishing", time.Minute)
	pub, err := l.opts.Files.Publish(a.renewal.Material)
	end()
	if err != nil {
		l.failed(ctx, fmt.Errorf("publishing the renewed certificate: %w", err), a.took)
		return
	}
	l.current = pub
	l.opts.Observer.Attempted(ResultSuccess, a.took)
	if a.renewal.Done != nil {
		a.renewal.Done(ctx, pub)
	}
	deadline := l.deadline()
	l.opts.Observer.Due(deadline)
	l.opts.Observer.Published(ctx, pub, ReasonRenewed)
	logger := klog.FromContext(ctx)
	now := l.opts.Clock.Now()
	if deadline.After(now) {
		l.failures, l.next = 0, deadline
		logger.Info("Renewal scheduled", "at", deadline, "notAfter", pub.Leaf.NotAfter)
		return
	}
	// Renewing at once would loop as fast as the signer answers; treat it
	// like a failure so that the backoff spaces the attempts.
	l.failures++
	delay := l.opts.Backoff.Delay(l.failures, l.opts.Rand())
	l.next = now.Add(delay)
	logger.Info("The signer issued a certificate already due for renewal; renewing again after a backoff",
		"notBefore", pub.Leaf.NotBefore, "notAfter", pub.Leaf.NotAfter, "retryIn", delay)
}

// failed logs a failed attempt and schedules the next. The published pair
// is left as it is, even expired: something is better than nothing.
func (l *Loop) failed(ctx context.Context, err error, took time.Duration) {
	logger := klog.FromContext(ctx)
	now := l.opts.Clock.Now()
	l.failures++
	result := classify(err)
	delay := l.opts.Backoff.Delay(l.failures, l.opts.Rand())
	left := l.current.Leaf.NotAfter.Sub(now)
	if result == ResultDenied {
		delay = deniedDelay(left, delay, l.opts.DeniedRetryMax)
		logger.Error(err, "CERTIFICATE RENEWAL DENIED; keeping the current certificate and asking again later",
			"attempt", l.failures, "retryIn", delay, "notAfter", l.current.Leaf.NotAfter, "expired", left <= 0)
	} else {
		logger.Error(err, "Certificate renewal failed; keeping the current certificate",
			"attempt", l.failures, "retryIn", delay, "notAfter", l.current.Leaf.NotAfter, "expired", left <= 0)
		// Attempts 1, 2, 4, 8...: the pod's events show a failure that
		// lasts without one event per retry.
		if l.failures&(l.failures-1) == 0 {
			l.opts.Events.Event(ctx, "Warning", "CertificateRenewalFailing", fmt.Sprintf(
				"renewal attempt %d failed, retrying in %s; the current certificate expires at %s: %v",
				l.failures, delay.Round(time.Second), l.current.Leaf.NotAfter.UTC().Format(time.RFC3339), err))
		}
	}
	l.opts.Observer.Attempted(result, took)
	l.next = now.Add(delay)
}

func classify(err error) Result {
	switch {
	case errors.Is(err, issue.ErrDenied):
		return ResultDenied
	case errors.Is(err, issue.ErrFailed):
		return ResultFailed
	}
	return ResultError
}

func (l *Loop) deadline() time.Time {
	return l.opts.Policy.Deadline(l.current.Leaf.NotBefore, l.current.Leaf.NotAfter, l.opts.Rand())
}

// repairIfDue republishes the current pair if the files no longer are
// exactly what was published: deleted, truncated, replaced, re-moded.
func (l *Loop) repairIfDue(ctx context.Context, now time.Time) {
	if l.repairAt.IsZero() || now.Before(l.repairAt) {
		return
	}
	l.repairAt = time.Time{}
	drift := l.opts.Files.Verify(l.current)
	if drift == nil {
		return
	}
	logger := klog.FromContext(ctx)
	logger.Info("Published files changed; restoring them", "change", drift.Error())
	end := l.opts.Health.Begin("repairing", time.Minute)
	pub, err := l.opts.Files.Publish(l.current.Material())
	end()
	if err != nil {
		delay := l.opts.Backoff.Delay(1, l.opts.Rand())
		logger.Error(err, "Restoring the published files failed", "retryIn", delay)
		l.repairAt = now.Add(delay)
		return
	}
	l.current = pub
	l.opts.Observer.Published(ctx, pub, ReasonRepaired)
}

// refreshCAIfAsked republishes the current pair with the CA bundle its
// source holds now, if that differs from ca.crt.
func (l *Loop) refreshCAIfAsked(ctx context.Context) {
	if !l.checkCA {
		return
	}
	l.checkCA = false
	ca := l.opts.Renewer.CABundle(ctx)
	if len(bytes.TrimSpace(ca)) == 0 || bytes.Equal(ca, l.current.CAPEM) {
		return
	}
	logger := klog.FromContext(ctx)
	m := l.current.Material()
	m.CAPEM = ca
	pub, err := l.opts.Files.Publish(m)
	if err != nil {
		logger.Error(err, "Publishing the changed CA bundle failed; keeping the current ca.crt")
		return
	}
	logger.Info("CA bundle changed; ca.crt rewritten", "certificates", len(pub.CAs))
	l.current = pub
	l.opts.Observer.Published(ctx, pub, ReasonCAChanged)
}
