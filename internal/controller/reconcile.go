package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// newQueue returns the CSR queue. Retries back off per CSR from 50 ms to
// 2 min: a conflict or a throttled request is worth retrying at once, an API
// server outage is not worth hammering. The overall bucket (100/s, burst
// 1000) only limits retries, so a burst of new CSRs is never delayed by it.
func newQueue() workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(newQueueRateLimiter(),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "csr"})
}

// newQueueRateLimiter is the retry policy of both queues (CSRs and
// PodCertificateRequests), described at newQueue.
func newQueueRateLimiter() workqueue.TypedRateLimiter[string] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 2*time.Minute),
		&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(100), 1000)},
	)
}

// enqueueCSR queues a CSR the controller has work on. A standby queues
// nothing: its queue would never drain and would grow with every CSR of the
// cluster's history; a new leader queues every CSR of its cache instead
// (enqueueAll).
func (c *Controller) enqueueCSR(obj any) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return
	}
	switch c.opts.Policy.Classify(csr) {
	case approve.StatePending, approve.StateApproved:
		if c.leading.Load() {
			c.queue.Add(csr.Name)
		}
	case approve.StateDone:
		c.written.forget(csr.Name)
	}
}

func (c *Controller) forgetCSR(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
		c.written.forget(csr.Name)
	}
}

func (c *Controller) enqueueAll() {
	csrs, err := c.informer.csrLister.List(labels.Everything())
	if err != nil {
		return // a cache lister does not fail
	}
	for _, csr := range csrs {
		c.enqueueCSR(csr)
	}
}

// processNextItem handles one CSR; it returns false when the queue shut
// down or ctx is done.
func (c *Controller) processNextItem(ctx context.Context) bool {
	name, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(name)
	if ctx.Err() != nil {
		return false
	}
	err := c.reconcile(ctx, name)
	switch {
	case err == nil:
		c.queue.Forget(name)
	case ctx.Err() != nil:
		// Stopping: the next leader picks the CSR up.
	default:
		logger := klog.FromContext(ctx)
		if apierrors.IsConflict(err) {
			// Someone (or our own earlier write, not yet in the cache)
			// changed the CSR since it was read: routine, retried at once.
			logger.V(4).Info("CSR changed while processing, retrying", "csr", name, "err", err)
		} else if errors.Is(err, errPodIPsNotReported) {
			logger.V(2).Info("Waiting for the pod's IPs in its status, retrying", "csr", name, "err", err)
		} else {
			logger.Error(err, "Processing CSR failed, retrying", "csr", name, "retries", c.queue.NumRequeues(name))
		}
		c.queue.AddRateLimited(name)
	}
	return true
}

// reconcile brings one CSR forward: decide it if pending, sign it if
// approved. Any error is transient and retried.
func (c *Controller) reconcile(ctx context.Context, name string) error {
	csr, err := c.informer.csrLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.written.superseded(name, csr.ResourceVersion) {
		// The cache still shows a version this controller has since
		// updated; the update's own event will bring the CSR back.
		return nil
	}
	state := c.opts.Policy.Classify(csr)
	if state != approve.StatePending && state != approve.StateApproved {
		return nil
	}
	if wait := c.budgets.take(requesterKey(csr), c.now()); wait > 0 {
		c.metrics.deferred.Inc()
		c.queue.AddAfter(name, wait)
		return nil
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("csr", name))
	switch state {
	case approve.StatePending:
		return c.decide(ctx, csr.DeepCopy())
	case approve.StateApproved:
		return c.signApproved(ctx, csr.DeepCopy())
	}
	return nil
}

// writtenVersions remembers, per CSR, the resourceVersions this controller
// replaced by its own writes, until the CSR is finished or deleted. The
// watch event of a write arrives a moment after the write returns; without
// this, the event of the approval, arriving after the certificate was
// written, would have the CSR signed again and the status update fail with
// a conflict, doubling the writes of a burst.
type writtenVersions struct {
	mu sync.Mutex
	m  map[string][]string
}

func newWrittenVersions() *writtenVersions {
	return &writtenVersions{m: map[string][]string{}}
}

func (w *writtenVersions) add(name, replaced string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[name] = append(w.m[name], replaced)
}

func (w *writtenVersions) superseded(name, version string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.m[name], version)
}

func (w *writtenVersions) forget(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, name)
}
