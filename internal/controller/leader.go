package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// LeaderElection configures the Lease that elects the one replica that
// writes.
type LeaderElection struct {
	Namespace, Name string
	// Identity names this replica in the Lease; the pod name.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's
	// leaderelection timings: a standby takes over at most LeaseDuration
	// after the leader's last renewal, and the leader gives up after failing
	// to renew for RenewDeadline.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

func (l *LeaderElection) validate() error {
	var errs []error
	if l.Namespace == "" || l.Name == "" || l.Identity == "" {
		errs = append(errs, errors.New("Options.LeaderElection needs a namespace, a name and an identity"))
	}
	if !(l.LeaseDuration > l.RenewDeadline && float64(l.RenewDeadline) > leaderelection.JitterFactor*float64(l.RetryPeriod) && l.RetryPeriod > 0) {
		errs = append(errs, fmt.Errorf("Options.LeaderElection timings %s/%s/%s: want LeaseDuration > RenewDeadline > %v × RetryPeriod > 0",
			l.LeaseDuration, l.RenewDeadline, l.RetryPeriod, leaderelection.JitterFactor))
	}
	return errors.Join(errs...)
}

// watchdogTimeout is how long past its lease a leader that failed to renew
// stays healthy: then /healthz fails and the kubelet restarts it, in case
// it is stuck rather than merely slow (kube-controller-manager uses 20 s).
const watchdogTimeout = 20 * time.Second

// runLeaderElection campaigns for the Lease and leads while it holds it. It
// returns nil when ctx is done and ErrLeadershipLost when the Lease was
// lost.
//
// On a graceful stop the order matters: the workers stop first, then the
// Lease is released (ReleaseOnCancel), so a standby, which takes over at
// once on a released Lease, never writes while this replica still does.
// client-go's elector cancels its callback's context and releases the Lease
// without waiting for the callback, so the elector runs on a context of its
// own that is cancelled only after the workers returned.
func (c *Controller) runLeaderElection(ctx context.Context) error {
	cfg := c.opts.LeaderElection
	logger := klog.FromContext(ctx).WithValues("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)
	ctx = klog.NewContext(ctx, logger)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     c.opts.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	var (
		mu       sync.Mutex
		stopping bool
		leading  chan struct{} // closed when lead returns; nil if never led
	)
	stopLeading := func() {
		mu.Lock()
		stopping = true
		done := leading
		mu.Unlock()
		if done != nil {
			<-done
		}
	}
	electorCtx, cancelElector := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelElector()
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            cfg.Name,
		LeaseDuration:   cfg.LeaseDuration,
		RenewDeadline:   cfg.RenewDeadline,
		RetryPeriod:     cfg.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        c.health.watchdog,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				mu.Lock()
				if stopping {
					mu.Unlock()
					return
				}
				done := make(chan struct{})
				leading = done
				mu.Unlock()
				defer close(done)
				// Lead until the Lease is lost (leadCtx) or Run is stopped (ctx).
				workCtx, cancel := context.WithCancel(klog.NewContext(leadCtx, logger))
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				logger.Info("Leading")
				c.lead(workCtx)
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(identity string) {
				logger.Info("Leader observed", "leader", identity)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	c.health.watchdog.SetLeaderElection(elector)
	stopOnDone := context.AfterFunc(ctx, func() {
		stopLeading()
		cancelElector()
	})
	defer stopOnDone()
	logger.Info("Campaigning for leadership")
	elector.Run(electorCtx)
	stopLeading()
	if ctx.Err() != nil {
		return nil
	}
	return ErrLeadershipLost
}
