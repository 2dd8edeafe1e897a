// Package renew decides when the pod's certificate is renewed, and runs the
// sidecar's loop: sleep until the deadline, renew, retry with backoff, and
// restore the published files or refresh the CA bundle when told they
// changed. The loop is the only writer of the directory once it runs.
package renew

import (
	"time"
)

// The default renewal window, as fractions of the certificate's lifetime.
//
// Pods are created in bursts: a rollout, a scale-up or a drained node starts
// hundreds at once. Renewing at a fixed point (say 80%) would send that whole
// burst to the approver, the signer and the API server again in the same
// minute of every lifetime, forever. A point drawn uniformly from 70–90%
// spreads a burst over a fifth of the lifetime (about 4.8h for 24h
// certificates), and since every renewal draws again the spread widens with
// each generation instead of staying aligned. 70% is late enough not to waste
// certificates; 90% still leaves a tenth of the lifetime (2.4h of 24h) to
// retry through an outage of the API server or the signer before expiry. The
// kubelet rotates its own certificates the same way (client-go's
// util/certificate).
const (
	minTenths = 7
	maxTenths = 9
)

// Policy says when a certificate is due for renewal.
type Policy struct {
	// Before, when above zero, renews this long before notAfter instead of
	// in the jittered window (RENEW_BEFORE). It is ignored for a certificate
	// whose whole lifetime is not longer (the signer issued less than was
	// asked): its deadline would come before it was even valid, and every
	// renewal would be due again on arrival.
	Before time.Duration
}

// Deadline returns when a certificate valid from notBefore to notAfter is
// due for renewal. jitter, in [0, 1), picks the point in the window: 0 is
// 70% of the lifetime, towards 1 is 90%. Measuring from notBefore, as the
// kubelet does, counts a signer's backdating as lifetime already used.
func (p Policy) Deadline(notBefore, notAfter time.Time, jitter float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	if p.Before > 0 && p.Before < life {
		return notAfter.Add(-p.Before)
	}
	jitter = min(max(jitter, 0), 1)
	// In integer nanoseconds where possible: 0.7 has no exact float.
	start := life / 10 * minTenths
	window := life / 10 * (maxTenths - minTenths)
	return notBefore.Add(start + time.Duration(float64(window)*jitter))
}

// Earliest is the earliest the certificate can be due, whatever the jitter:
// until then it is worth keeping, e.g. by `agent init` after a restart.
func (p Policy) Earliest(notBefore, notAfter time.Time) time.Time {
	return p.Deadline(notBefore, notAfter, 0)
}

// Backoff spaces the retries of a failing renewal: capped exponential, with
// jitter.
type Backoff struct {
	// Initial is the delay before the first retry; Max caps the doubling.
	Initial, Max time.Duration
}

// DefaultBackoff doubles from 2s to a 2m cap. The cap is what "renews as
// soon as the API server is back" means: at most two minutes after it
// returns. Every agent of the cluster failed during the same outage, so the
// cap is also the period of their retries; jitter spreads them over it.
var DefaultBackoff = Backoff{Initial: 2 * time.Second, Max: 2 * time.Minute}

// Delay returns the wait before retry number attempt (1 for the first
// retry): Initial doubled attempt-1 times, capped at Max, of which jitter in
// [0, 1) takes up to half off. Keeping at least half ("equal jitter") keeps
// the backoff a backoff; the random half stops agents that failed together
// from retrying in lockstep.
func (b Backoff) Delay(attempt int, jitter float64) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	jitter = min(max(jitter, 0), 1)
	return d - time.Duration(float64(d/2)*jitter)
}

// deniedDelay is how long to wait after a denied renewal. A denial is a
// policy decision that a person or a policy change must revisit, so asking
// again within seconds only fills the approver's log; but the pod still
// needs a certificate before this one expires. So: a quarter of the time
// left, so that several attempts fit before expiry, at most limit, and never
// less than the backoff.
func deniedDelay(left, backoff, limit time.Duration) time.Duration {
	return max(backoff, min(left/4, limit))
}
