package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// podCertificates is the PodCertificateRequest path (Kubernetes 1.37+):
// the kubelet, not the pod, asks for a podCertificate projected volume's
// certificate, under the same signer name as the CSRs and decided by the
// same policy. Its informer, queue and workers mirror the CSR path's; the
// leader runs both (lead).
type podCertificates struct {
	factories []informers.SharedInformerFactory // none when the path is off
	informer  cache.SharedIndexInformer
	lister    certlisters.PodCertificateRequestLister
	// serviceAccounts holds each service account's name and UID only; see
	// serviceAccountUID for when it is trusted.
	serviceAccounts cache.SharedIndexInformer
	saLister        corelisters.ServiceAccountLister
	queue           workqueue.TypedRateLimitingInterface[string] // namespace/name
	written         *writtenVersions
}

func newPodCertificates() *podCertificates {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(newQueueRateLimiter(),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "podcertificaterequest"})
	return &podCertificates{queue: q, written: newWrittenVersions()}
}

// watch sets up the informers: PodCertificateRequests of the signer only
// (field selector on spec.signerName, as for CSRs), slimmed once finished,
// and service accounts, slimmed to their names and UIDs.
func (p *podCertificates) watch(client kubernetes.Interface, signer string) {
	pcrs := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", signer).String()
		}),
		informers.WithTransform(slimPodCertificateRequest))
	p.informer = pcrs.Certificates().V1().PodCertificateRequests().Informer()
	p.lister = pcrs.Certificates().V1().PodCertificateRequests().Lister()
	sas := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slimServiceAccount))
	p.serviceAccounts = sas.Core().V1().ServiceAccounts().Informer()
	p.saLister = sas.Core().V1().ServiceAccounts().Lister()
	p.factories = []informers.SharedInformerFactory{pcrs, sas}
}

// slimServiceAccount keeps what serviceAccountUID reads: name and UID (a
// service account may list its Secrets and image pull Secrets, which the
// signer never reads).
func slimServiceAccount(obj any) (any, error) {
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		return obj, nil // a tombstone, passed on as is
	}
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Name: sa.Name, Namespace: sa.Namespace, UID: sa.UID, ResourceVersion: sa.ResourceVersion,
	}}, nil
}

func (p *podCertificates) addHandlers(c *Controller) error {
	if p.informer == nil {
		return nil
	}
	_, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePodCertificate,
		UpdateFunc: func(_, obj any) { c.enqueuePodCertificate(obj) },
		DeleteFunc: c.forgetPodCertificate,
	})
	if err != nil {
		return fmt.Errorf("watching PodCertificateRequests: %w", err)
	}
	return nil
}

func (p *podCertificates) synced() []cache.InformerSynced {
	if p.informer == nil {
		return nil
	}
	return []cache.InformerSynced{p.informer.HasSynced, p.serviceAccounts.HasSynced}
}

// finished reports a request with its terminal condition: the API allows
// exactly one of Issued, Denied and Failed, after which the status is
// immutable.
func finished(pcr *certificatesv1.PodCertificateRequest) bool {
	for _, t := range []string{
		certificatesv1.PodCertificateRequestConditionTypeIssued,
		certificatesv1.PodCertificateRequestConditionTypeDenied,
		certificatesv1.PodCertificateRequestConditionTypeFailed,
	} {
		if meta.IsStatusConditionTrue(pcr.Status.Conditions, t) {
			return true
		}
	}
	return false
}

// slimPodCertificateRequest drops managedFields and, once a request is
// finished, its key and chain: the kubelet deletes nothing, the API's
// cleaner removes requests 15 minutes after creation, and until then the
// cache should grow with pending requests rather than with history.
func slimPodCertificateRequest(obj any) (any, error) {
	pcr, ok := obj.(*certificatesv1.PodCertificateRequest)
	if !ok {
		return obj, nil
	}
	pcr.ManagedFields = nil
	if !finished(pcr) {
		return pcr, nil
	}
	return &certificatesv1.PodCertificateRequest{
		ObjectMeta: pcr.ObjectMeta,
		Spec:       certificatesv1.PodCertificateRequestSpec{SignerName: pcr.Spec.SignerName},
		Status:     certificatesv1.PodCertificateRequestStatus{Conditions: pcr.Status.Conditions},
	}, nil
}

// enqueuePodCertificate queues a pending request while this replica leads
// (as enqueueCSR does).
func (c *Controller) enqueuePodCertificate(obj any) {
	pcr, ok := obj.(*certificatesv1.PodCertificateRequest)
	if !ok {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(pcr)
	if err != nil {
		return
	}
	switch {
	case finished(pcr):
		c.pcr.written.forget(key)
	case pcr.Spec.SignerName == c.signer && c.leading.Load():
		c.pcr.queue.Add(key)
	}
}

func (c *Controller) forgetPodCertificate(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.pcr.written.forget(key)
	}
}

// startPodCertificateWorkers queues every pending request of the cache and
// starts the workers; the returned function stops them and waits. Called
// by lead, so leader election covers this path as it covers CSRs. The pool
// is as large as the CSR path's and separate, so that a rollout on one path
// does not hold up the other.
func (c *Controller) startPodCertificateWorkers(ctx context.Context) (stop func()) {
	if c.pcr.informer == nil {
		return func() {}
	}
	pcrs, err := c.pcr.lister.List(labels.Everything())
	if err == nil { // a cache lister does not fail
		for _, pcr := range pcrs {
			c.enqueuePodCertificate(pcr)
		}
	}
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for c.processNextPodCertificate(ctx) {
			}
		})
	}
	return func() {
		c.pcr.queue.ShutDown()
		wg.Wait()
	}
}

// processNextPodCertificate handles one request; false when the queue shut
// down or ctx is done.
func (c *Controller) processNextPodCertificate(ctx context.Context) bool {
	key, shutdown := c.pcr.queue.Get()
	if shutdown {
		return false
	}
	defer c.pcr.queue.Done(key)
	if ctx.Err() != nil {
		return false
	}
	err := c.reconcilePodCertificate(ctx, key)
	switch {
	case err == nil:
		c.pcr.queue.Forget(key)
	case ctx.Err() != nil:
		// Stopping: the next leader picks the request up.
	default:
		logger := klog.FromContext(ctx)
		switch {
		case apierrors.IsConflict(err):
			logger.V(4).Info("PodCertificateRequest changed while processing, retrying", "podCertificateRequest", key, "err", err)
		case errors.Is(err, errNoNamesYet):
			logger.V(2).Info("Waiting for the pod to have a name", "podCertificateRequest", key, "err", err)
		default:
			logger.Error(err, "Processing PodCertificateRequest failed, retrying", "podCertificateRequest", key, "retries", c.pcr.queue.NumRequeues(key))
		}
		c.pcr.queue.AddRateLimited(key)
	}
	return true
}

// ServesPodCertificates reports whether the API server serves
// certificates.k8s.io/v1 PodCertificateRequests (Kubernetes 1.37+, where
// they are GA and on by default), so that one controller build runs on
// older clusters with the CSR path alone.
func ServesPodCertificates(d discovery.DiscoveryInterface) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(certificatesv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", certificatesv1.SchemeGroupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == "podcertificaterequests" {
			return true, nil
		}
	}
	return false, nil
}
