package controller

import (
	"context"
	"maps"
	"sync"

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
// Every replica watches, and remembers the marker and the anchor state it
// last saw, so whichever replica leads re-creates a deleted bundle with them.
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
	keep := func(obj any) {
		if ctb, ok := obj.(*certificatesv1.ClusterTrustBundle); ok {
			c.kept.remember(ctb)
		}
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: keep,
		UpdateFunc: func(oldObj, newObj any) {
			keep(newObj)
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

// keptAnnotations holds the retirement marker and the anchor state of the
// published bundle as last seen. Deleting the bundle must not undo a
// retirement: without them, the re-created bundle would publish again every
// anchor the CA source still lists, retired ones included, and restart the
// retirement clocks. Nothing is forgotten on deletion, so clearing a marker
// takes removing the annotation, not the bundle.
type keptAnnotations struct {
	mu   sync.Mutex
	seen map[string]string
}

// remember records ctb's marker and state, the absence of either included.
func (k *keptAnnotations) remember(ctb *certificatesv1.ClusterTrustBundle) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen = map[string]string{}
	for _, key := range []string{AnnotationRetiredAnchors, AnnotationAnchorState} {
		if v, ok := ctb.Annotations[key]; ok {
			k.seen[key] = v
		}
	}
}

// recall returns the annotations last remembered, nil if none.
func (k *keptAnnotations) recall() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.seen) == 0 {
		return nil
	}
	return maps.Clone(k.seen)
}
