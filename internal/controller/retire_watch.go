package controller

import (
	"context"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// watchTrustBundle queues a CA sync when the retirement marker on the
// published bundle changes, or the bundle is deleted, until ctx is done: a
// retirement takes effect at once, not at the next resync. The watch is by
// name (RBAC grants list and watch on that one bundle), and costs one
// long-lived request; the controller's own writes pass by without a sync.
func (c *Controller) watchTrustBundle(ctx context.Context) {
	name := c.opts.TrustBundleName
	lw := cache.NewFilteredListWatchFromClient(c.opts.Client.CertificatesV1().RESTClient(), "clustertrustbundles", metav1.NamespaceAll,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	informer := cache.NewSharedIndexInformer(lw, &certificatesv1.ClusterTrustBundle{}, 0, cache.Indexers{})
	marker := func(obj any) (string, bool) {
		ctb, ok := obj.(*certificatesv1.ClusterTrustBundle)
		if !ok {
			return "", false
		}
		v, ok := ctb.Annotations[AnnotationRetiredAnchors]
		return v, ok
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			o, oldSet := marker(oldObj)
			n, newSet := marker(newObj)
			if o != n || oldSet != newSet {
				c.caSync.queue.Add(caKey)
			}
		},
		DeleteFunc: func(any) { c.caSync.queue.Add(caKey) },
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Cannot watch the trust bundle; retirement markers apply at the next resync", "clusterTrustBundle", name)
		return
	}
	informer.RunWithContext(ctx)
}
