package renew

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/writer"
)

// Renewal is a certificate obtained for the pod but not yet published. The
// loop publishes it itself, so that the loop is the one writer of the
// directory: a repair can then never put back a pair older than a renewal
// that was just published.
type Renewal struct {
	Material writer.Material
	// Done, if set, is called once Material is published, before the app
	// is told, to log and clean up after the request (the CSR, the pending
	// key). It is not called when publishing fails: the issued request is
	// kept and the next attempt resumes it.
	Done func(ctx context.Context, pub *writer.Published)
}

// Renewer obtains certificates: *agent.Agent.
type Renewer interface {
	// Renew requests a certificate for the pod's identity as it is now,
	// bounded by its own timeout.
	Renew(ctx context.Context, current *writer.Published) (*Renewal, error)
	// CABundle returns what the CA bundle's source holds now, nil when it
	// has nothing to offer.
	CABundle(ctx context.Context) []byte
}

// Files is the published directory: *writer.Writer.
type Files interface {
	Publish(m writer.Material) (*writer.Published, error)
	Verify(expected *writer.Published) error
}

var _ Files = (*writer.Writer)(nil)

// Observer is told what the loop does, from the loop's goroutine; it must
// not block for long.
type Observer interface {
	// Attempted reports a renewal attempt's result and how long it took.
	Attempted(result Result, took time.Duration)
	// Published follows every complete publish: the app may reload now.
	Published(ctx context.Context, pub *writer.Published, why Reason)
	// Due reports when the published certificate is due for renewal, each
	// time a certificate is taken on: at start and after every renewal. It
	// is not moved by retries, so a due time in the past means a renewal
	// that has not succeeded yet (what an overdue alert watches).
	Due(at time.Time)
}

// Health learns that the loop makes progress: Begin marks a step that
// should end within limit and returns the function that ends it.
type Health interface {
	Begin(step string, limit time.Duration) (end func())
}

// Events posts Kubernetes Events about the pod.
type Events interface {
	Event(ctx context.Context, eventType, reason, message string)
}

// Result is the outcome of a renewal attempt, a metrics label.
type Result string

// The results.
const (
	ResultSuccess Result = "success"
	ResultDenied  Result = "denied" // the request was denied
	ResultFailed  Result = "failed" // the signer could not sign it
	ResultError   Result = "error"  // anything else: API unreachable, timeout, disk
)

// Reason says why the loop published.
type Reason string

// The reasons.
const (
	ReasonRenewed   Reason = "renewed"
	ReasonRepaired  Reason = "repaired"   // the files had changed
	ReasonCAChanged Reason = "ca-changed" // the CA bundle's source had changed
)

// Options configure a Loop.
type Options struct {
	Renewer Renewer
	Files   Files
	// Current is the published pair the loop starts from. Required.
	Current *writer.Published
	// RenewNow renews at once instead of at Current's deadline, e.g. when
	// Current names an identity the pod no longer has.
	RenewNow bool
	Policy   Policy
	// Backoff spaces retries; zero: DefaultBackoff.
	Backoff Backoff
	// DeniedRetryMax bounds the wait after a denial; zero: 10m.
	DeniedRetryMax time.Duration
	// RenewLimit is how long one renewal may take before Health hears of
	// it (the request's own timeout plus a margin); zero: 10m.
	RenewLimit time.Duration
	// FilesChanged and CAChanged say that the published files, or the CA
	// bundle's source, may have changed. Either may be nil.
	FilesChanged <-chan struct{}
	CAChanged    <-chan struct{}
	// Observer, Health and Events are optional.
	Observer Observer
	Health   Health
	Events   Events
	// Clock defaults to the real clock, Rand (uniform in [0, 1)) to
	// math/rand/v2.
	Clock clock.Clock
	Rand  func() float64
}

// Loop keeps the published certificate valid. It is not safe for concurrent
// use: one goroutine calls Run.
type Loop struct {
	opts Options

	current  *writer.Published
	next     time.Time // when to start the next renewal attempt
	failures int       // renewal attempts failed in a row
	repairAt time.Time // when to check the files; zero: not asked
	checkCA  bool      // the CA bundle's source may have changed
}

// New checks and defaults opts.
func New(opts Options) (*Loop, error) {
	var errs []error
	if opts.Renewer == nil {
		errs = append(errs, errors.New("renewer must be set"))
	}
	if opts.Files == nil {
		errs = append(errs, errors.New("files must be set"))
	}
	if opts.Current == nil || opts.Current.Leaf == nil {
		errs = append(errs, errors.New("current certificate must be set"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.DeniedRetryMax <= 0 {
		opts.DeniedRetryMax = 10 * time.Minute
	}
	if opts.RenewLimit <= 0 {
		opts.RenewLimit = 10 * time.Minute
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Health == nil {
		opts.Health = nopHealth{}
	}
	if opts.Events == nil {
		opts.Events = nopEvents{}
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	return &Loop{opts: opts, current: opts.Current}, nil
}

type (
	nopObserver struct{}
	nopHealth   struct{}
	nopEvents   struct{}
)

func (nopObserver) Attempted(Result, time.Duration)                      {}
func (nopObserver) Published(context.Context, *writer.Published, Reason) {}
func (nopObserver) Due(time.Time)                                        {}
func (nopHealth) Begin(string, time.Duration) func()                     { return func() {} }
func (nopEvents) Event(context.Context, string, string, string)          {}
