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

// runCALoop syncs the CA whenever its Secret changes, until ctx is done.
func (c *Controller) runCALoop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	stop := context.AfterFunc(ctx, c.caSync.queue.ShutDown)
	defer stop()
	c.caSync.queue.Add(caKey)
	for {
		key, shutdown := c.caSync.queue.Get()
		if shutdown {
			return
		}
		if err := c.syncCA(ctx); err == nil {
			c.caSync.queue.Forget(key)
		} else if ctx.Err() == nil {
			logger.Error(err, "Loading the CA failed, retrying", "secret", c.opts.CASecret)
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
				klog.FromContext(ctx).Error(err, "Cannot sign until the CA is loaded, retrying", "secret", c.opts.CASecret)
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
	ref := c.opts.CASecret
	secret, err := c.informer.secretLister.Get(ref.Name)
	var ca *sign.CA
	switch {
	case apierrors.IsNotFound(err) && leading && c.opts.CreateCA:
		if ca, err = c.createCA(ctx); err != nil {
			return err
		}
	case apierrors.IsNotFound(err) && c.opts.CreateCA:
		// The leader creates it; its creation comes through the informer.
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: Secret %s not found; create it, or let the controller create a self-signed CA with CREATE_CA=true", errNoCA, ref)
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", ref, err)
	default:
		if ca, err = sign.ParseCA(sign.PEMsFromSecretData(secret.Data), c.now()); err != nil {
			return fmt.Errorf("loading CA from Secret %s: %w", ref, err)
		}
	}
	if leading {
		if err := c.publishTrustBundle(ctx, ca); err != nil {
			return err
		}
	}
	if cur := c.ca.Current(); cur == nil || !cur.Certificate().Equal(ca.Certificate()) {
		cert := ca.Certificate()
		klog.FromContext(ctx).Info("Signing with CA", "secret", ref, "subject", cert.Subject.String(),
			"serial", cert.SerialNumber.Text(16), "notAfter", cert.NotAfter)
	}
	c.ca.Set(ca)
	c.metrics.caNotAfter.Set(float64(ca.Certificate().NotAfter.Unix()))
	return nil
}

// createCA stores a new self-signed CA in the CA Secret. When two replicas
// race, the API server lets one create; the other gets AlreadyExists and
// loads the winner's CA from the cache on the next sync.
func (c *Controller) createCA(ctx context.Context) (*sign.CA, error) {
	ca, err := sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: c.signer + " CA", Clock: c.opts.Clock})
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
