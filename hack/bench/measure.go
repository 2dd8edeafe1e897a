package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// burstAPI is what measuring a burst needs of one kind of request: list and
// watch a run's objects by label, tell an issued or refused one, remove them.
type burstAPI struct {
	list      func(context.Context, metav1.ListOptions) (resourceVersion string, err error)
	watch     func(context.Context, metav1.ListOptions) (watch.Interface, error)
	deleteAll func(context.Context, metav1.ListOptions) error
	// outcome names obj and says whether it is issued, or refused (err).
	outcome func(obj runtime.Object) (name string, issued bool, err error, ok bool)
}

// csrAPI is burstAPI for CertificateSigningRequests.
func csrAPI(e *env) burstAPI {
	csrs := e.cluster.Client.CertificatesV1().CertificateSigningRequests()
	return burstAPI{
		list: func(ctx context.Context, o metav1.ListOptions) (string, error) {
			l, err := csrs.List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.ResourceVersion, nil
		},
		watch: csrs.Watch,
		deleteAll: func(ctx context.Context, o metav1.ListOptions) error {
			return csrs.DeleteCollection(ctx, metav1.DeleteOptions{}, o)
		},
		outcome: func(obj runtime.Object) (string, bool, error, bool) {
			csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
			if !ok {
				return "", false, nil, false
			}
			for _, c := range csr.Status.Conditions {
				if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
					return csr.Name, false, fmt.Errorf("%s %s: %s: %s", csr.Name, c.Type, c.Reason, c.Message), true
				}
			}
			return csr.Name, len(csr.Status.Certificate) > 0, nil, true
		},
	}
}

// burstOnce releases n CSRs at once and waits until every one is issued.
func burstOnce(ctx context.Context, e *env, label string, n int, do func(context.Context, int) error) (burstStats, error) {
	return measureBurst(ctx, csrAPI(e), label, n, do)
}

// measureBurst releases n requests at once and waits until every one is
// issued, observed by a watch on the run's label.
func measureBurst(ctx context.Context, api burstAPI, label string, n int, do func(context.Context, int) error) (burstStats, error) {
	byLabel := metav1.ListOptions{LabelSelector: "bench-run=" + label}
	rv, err := api.list(ctx, byLabel)
	if err != nil {
		return burstStats{}, err
	}
	// A RetryWatcher resumes where a closed watch ended: the API server
	// closes watches that fall behind a burst.
	w, err := watchtools.NewRetryWatcherWithContext(ctx, rv, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = byLabel.LabelSelector
			return api.watch(ctx, o)
		},
	})
	if err != nil {
		return burstStats{}, err
	}
	defer w.Stop()
	sent := make([]time.Time, n)
	returned := make([]time.Time, n)
	issued := map[string]time.Time{}
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			sent[i] = time.Now()
			if err := do(ctx, i); err != nil {
				errs <- err
			}
			returned[i] = time.Now()
		})
	}
	t0 := time.Now()
	close(start)
	timeout := time.After(5 * time.Minute)
	for len(issued) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return burstStats{}, fmt.Errorf("watch ended after %d of %d issued", len(issued), n)
			}
			name, done, refused, known := api.outcome(ev.Object)
			if !known {
				return burstStats{}, fmt.Errorf("watch: %s %v", ev.Type, ev.Object)
			}
			if refused != nil {
				return burstStats{}, refused
			}
			if _, seen := issued[name]; !seen && done {
				issued[name] = time.Now()
			}
		case err := <-errs:
			return burstStats{}, err
		case <-timeout:
			return burstStats{}, fmt.Errorf("%d of %d issued after 5 minutes", len(issued), n)
		case <-ctx.Done():
			return burstStats{}, ctx.Err()
		}
	}
	wg.Wait()
	var last, lastCreated time.Time
	var each, issuedAt []time.Duration
	for i := range n {
		at := issued[burstName(label, i)]
		last = maxTime(last, at)
		lastCreated = maxTime(lastCreated, returned[i])
		each = append(each, at.Sub(sent[i]))
		issuedAt = append(issuedAt, at.Sub(t0))
	}
	each = sortedCopy(each)
	// Clean up, so that the next run's informers and watches see only theirs.
	if err := api.deleteAll(ctx, byLabel); err != nil {
		return burstStats{}, err
	}
	return burstStats{total: last.Sub(t0), p50: percentile(each, .5), p99: percentile(each, .99), created: lastCreated.Sub(t0),
		issued: sortedCopy(issuedAt)}, nil
}
