package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/sign"
)

// caKey is the one item of the CA queue: every change of the Secret leads
// to the same work, re-reading it.
const caKey = "ca"

// caSyncer loads the CA from its Secret into Controller.ca.
//
// Every replica loads the CA, so a standby is ready to sign the moment it
// leads. Only the leader creates the Secret (CREATE_CA) and publishes the
// trust bundle, and it publishes before it swaps the CA in: a client that
// fetches the bundle when its certificate arrives must find the CA that
// signed it there. A Secret that is deleted or holds an invalid CA leaves
// the last good CA in use, and the problem is logged and retried.
type caSyncer struct {
	queue   workqueue.TypedRateLimitingInterface[string]
	mu      sync.Mutex // one sync at a time
	leading atomic.Bool
}

func (s *caSyncer) init() {
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ca"},
	)
}

// runCALoop syncs the CA whenever its Secret (or directory) changes, until
// ctx is done.
func (c *Controller) runCALoop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	stop := context.AfterFunc(ctx, c.caSync.queue.ShutDown)
	defer stop()
	c.caSync.queue.Add(caKey)
	if c.opts.CADir != "" {
		go c.pollCADir(ctx)
	}
	var watching sync.WaitGroup
	watching.Go(func() { c.watchTrustBundle(ctx) })
	defer watching.Wait()
	for {
		key, shutdown := c.caSync.queue.Get()
		if shutdown {
			return
		}
		if err := c.syncCA(ctx); err == nil {
			c.caSync.queue.Forget(key)
		} else if ctx.Err() == nil {
			logger.Error(err, "Loading the CA failed, retrying", "source", c.caSourceName())
			c.caSync.queue.AddRateLimited(key)
		}
		c.caSync.queue.Done(key)
	}
}

// lead marks this replica as leader and returns once the CA is loaded and
// published under its leadership, or false when ctx is done first.
func (s *caSyncer) lead(ctx context.Context, c *Controller) bool {
	s.leading.Store(true)
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: time.Minute}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if err := c.syncCA(ctx); err != nil {
			if ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Cannot sign until the CA is loaded, retrying", "source", c.caSourceName())
			}
			return false, nil
		}
		return true, nil
	})
	return err == nil
}

// stopLeading makes later syncs leave the Secret and the bundle alone.
func (s *caSyncer) stopLeading() { s.leading.Store(false) }

func (c *Controller) syncCA(ctx context.Context) error {
	c.caSync.mu.Lock()
	defer c.caSync.mu.Unlock()
	leading := c.caSync.leading.Load()
	ca, err := c.readCA(ctx, leading)
	if err != nil || ca == nil {
		return err
	}
	if leading {
		plan, err := c.publishTrustBundle(ctx, ca)
		if err != nil {
			return err
		}
		c.scheduleBundleChange(plan)
	}
	if cur := c.ca.Current(); cur == nil || !cur.Certificate().Equal(ca.Certificate()) {
		cert := ca.Certificate()
		klog.FromContext(ctx).Info("Signing with CA", "source", c.caSourceName(), "subject", cert.Subject.String(),
			"serial", cert.SerialNumber.Text(16), "notAfter", cert.NotAfter)
		if leading && cur != nil {
			// The bundle was planned while cur still signed; once it no
			// longer does, the next plan starts its anchor's retirement.
			c.caSync.queue.Add(caKey)
		}
	}
	c.ca.Set(ca)
	c.metrics.caNotAfter.Set(float64(ca.Certificate().NotAfter.Unix()))
	return nil
}

// readCA reads and validates the CA from its source. It returns nil and no
// error when there is nothing to load yet but nothing is wrong either: the
// leader is about to create the Secret.
func (c *Controller) readCA(ctx context.Context, leading bool) (*sign.CA, error) {
	if c.opts.CADir != "" {
		pems, err := readCADir(c.opts.CADir)
		if err != nil {
			return nil, err
		}
		return parseCA(pems, c.caSourceName(), c.now())
	}
	ref := c.opts.CASecret
	secret, err := c.informer.secretLister.Get(ref.Name)
	switch {
	case apierrors.IsNotFound(err) && leading && c.opts.CreateCA:
		return c.createCA(ctx)
	case apierrors.IsNotFound(err) && c.opts.CreateCA:
		return nil, nil // the leader creates it; the informer brings it
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: Secret %s not found; create it, or let the controller create a self-signed CA with CREATE_CA=true", errNoCA, ref)
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", ref, err)
	}
	return parseCA(sign.PEMsFromSecretData(secret.Data), c.caSourceName(), c.now())
}

func parseCA(pems sign.PEMs, source string, now time.Time) (*sign.CA, error) {
	ca, err := sign.ParseCA(pems, now)
	if err != nil {
		return nil, fmt.Errorf("loading CA from %s: %w", source, err)
	}
	return ca, nil
}

// caSourceName names where the CA comes from, for logs and errors.
func (c *Controller) caSourceName() string {
	if c.opts.CADir != "" {
		return "directory " + c.opts.CADir
	}
	return "Secret " + c.opts.CASecret.String()
}

// createCA stores a new self-signed CA in the CA Secret. When two replicas
// race, the API server lets one create; the other gets AlreadyExists and
// loads the winner's CA from the cache on the next sync.
func (c *Controller) createCA(ctx context.Context) (*sign.CA, error) {
	dns, uri := c.opts.Policy.NameConstraints()
	ca, err := sign.NewSelfSignedCA(sign.SelfSignedOptions{
		CommonName: c.signer + " CA", Clock: c.opts.Clock,
		PermittedDNSDomains: dns, PermittedURIDomains: uri,
	})
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: c.opts.CASecret.Name, Namespace: c.opts.CASecret.Namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       ca.PEMs().SecretData(),
	}
	if _, err := c.opts.Client.CoreV1().Secrets(secret.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating CA Secret %s: %w", c.opts.CASecret, err)
	}
	klog.FromContext(ctx).Info("Created self-signed CA", "secret", c.opts.CASecret, "notAfter", ca.Certificate().NotAfter)
	return ca, nil
}
