package controller

import (
	"context"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// caResync re-delivers the CA Secret periodically, so the trust bundle is
// re-checked (expired anchors dropped, a bundle deleted by hand recreated)
// even when nothing changes.
const caResync = 10 * time.Minute

// caches are the controller's informers and listers.
type caches struct {
	factories []informers.SharedInformerFactory
	csrs      cache.SharedIndexInformer
	pods      cache.SharedIndexInformer
	services  cache.SharedIndexInformer
	secrets   cache.SharedIndexInformer
	// extraSynced are the informers of optional paths (PodCertificateRequests).
	extraSynced []cache.InformerSynced

	csrLister    certlisters.CertificateSigningRequestLister
	svcLister    corelisters.ServiceLister
	secretLister corelisters.SecretNamespaceLister
}

func newInformers(client kubernetes.Interface, policy *approve.Policy, caSecret types.NamespacedName) *caches {
	signer := policy.Options().SignerName
	csrFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", signer).String()
		}),
		informers.WithTransform(slimCSR(policy)))
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slimPodOrService))
	// Pods are cached as the policy's facts only (podcache.go); no lister:
	// a PodLister would hand out *corev1.Pod.
	in := &caches{
		factories: []informers.SharedInformerFactory{csrFactory, podFactory},
		csrs:      csrFactory.Certificates().V1().CertificateSigningRequests().Informer(),
		pods:      podFactory.Core().V1().Pods().Informer(),
		services:  podFactory.Core().V1().Services().Informer(),
	}
	in.csrLister = csrFactory.Certificates().V1().CertificateSigningRequests().Lister()
	in.svcLister = podFactory.Core().V1().Services().Lister()
	if caSecret.Name != "" {
		secretFactory := informers.NewSharedInformerFactoryWithOptions(client, caResync,
			informers.WithNamespace(caSecret.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", caSecret.Name).String()
			}))
		in.factories = append(in.factories, secretFactory)
		in.secrets = secretFactory.Core().V1().Secrets().Informer()
		in.secretLister = secretFactory.Core().V1().Secrets().Lister().Secrets(caSecret.Namespace)
	}
	return in
}

func (in *caches) addHandlers(c *Controller) error {
	_, err := in.csrs.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueCSR,
		UpdateFunc: func(_, obj any) { c.enqueueCSR(obj) },
		DeleteFunc: c.forgetCSR,
	})
	if err != nil {
		return fmt.Errorf("watching CSRs: %w", err)
	}
	if in.secrets == nil {
		return nil // the CA comes from files
	}
	enqueueCA := func(any) { c.caSync.queue.Add(caKey) }
	_, err = in.secrets.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueCA,
		UpdateFunc: func(_, obj any) { enqueueCA(obj) },
		DeleteFunc: enqueueCA,
	})
	if err != nil {
		return fmt.Errorf("watching the CA Secret: %w", err)
	}
	return nil
}

// run starts the informers and returns when ctx is done and they stopped.
func (in *caches) run(ctx context.Context) {
	for _, f := range in.factories {
		f.Start(ctx.Done())
	}
	<-ctx.Done()
	for _, f := range in.factories {
		f.Shutdown()
	}
}

func (in *caches) waitForSync(ctx context.Context) bool {
	synced := append([]cache.InformerSynced{in.csrs.HasSynced, in.pods.HasSynced, in.services.HasSynced}, in.extraSynced...)
	if in.secrets != nil {
		synced = append(synced, in.secrets.HasSynced)
	}
	return cache.WaitForNamedCacheSyncWithContext(ctx, synced...)
}

// slimPodOrService keeps only what the policy reads of a Pod or Service
// (approve.PodFrom, approve.ServiceFrom): a pod object in the API is
// several kilobytes, mostly spec and status the controller never reads, and
// the cache holds every pod of the cluster.
func slimPodOrService(obj any) (any, error) {
	if o, ok := obj.(*corev1.Service); ok {
		return &corev1.Service{
			ObjectMeta: slimMeta(o.ObjectMeta),
			Spec: corev1.ServiceSpec{
				Type:       o.Spec.Type,
				Selector:   o.Spec.Selector,
				ClusterIP:  o.Spec.ClusterIP,
				ClusterIPs: o.Spec.ClusterIPs,
			},
		}, nil
	}
	return podFacts(obj)
}

func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// finishedStub replaces status.certificate in the cache for an issued CSR.
// Nothing reads a certificate from the cache; Classify only needs it to be
// non-empty.
var finishedStub = []byte("issued")

// slimCSR drops managedFields from every CSR and, for a finished one
// (denied, failed or issued), the request and certificate too, so the cache
// grows with pending CSRs rather than with history: finished CSRs stay
// until the CSR cleaner removes them an hour later.
func slimCSR(policy *approve.Policy) cache.TransformFunc {
	return func(obj any) (any, error) {
		csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
		if !ok {
			return obj, nil
		}
		csr.ManagedFields = nil
		if policy.Classify(csr) != approve.StateDone {
			return csr, nil
		}
		stub := &certificatesv1.CertificateSigningRequest{
			ObjectMeta: csr.ObjectMeta,
			Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: csr.Spec.SignerName},
			Status:     certificatesv1.CertificateSigningRequestStatus{Conditions: csr.Status.Conditions},
		}
		if len(csr.Status.Certificate) > 0 {
			stub.Status.Certificate = finishedStub
		}
		return stub, nil
	}
}
