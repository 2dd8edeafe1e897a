package watch

import (
	"context"
	"sync"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// TrustBundles signals changed whenever a ClusterTrustBundle of the signer is
// added, updated or deleted after the first list, until ctx ends.
//
// It costs one long-lived watch on the API server per pod, filtered by
// signerName: an informer lists once, then watches, and lists again only
// when the watch breaks (the API server ends watches after 30–60 minutes).
// Between changes it makes no request. Pods that mount the bundle with a
// clusterTrustBundle projected volume and set CA_FILE need no watch at all:
// the kubelet follows the bundle for the whole node.
//
// If the agent may not list or watch ClusterTrustBundles, or the API server
// does not serve them, it says so once and stops watching; ca.crt is then
// refreshed at each renewal.
func TrustBundles(ctx context.Context, lw cache.ListerWatcher, signerName string, changed chan<- struct{}) error {
	logger := klog.FromContext(ctx).WithValues("signer", signerName)
	ctx, stop := context.WithCancel(klog.NewContext(ctx, logger))
	defer stop()
	informer := cache.NewSharedIndexInformer(lw, &certificatesv1.ClusterTrustBundle{}, 0, cache.Indexers{})
	var once sync.Once
	if err := informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			once.Do(func() {
				logger.Info("Cannot watch ClusterTrustBundles; ca.crt follows them only at renewals (grant list and watch on clustertrustbundles, or set CA_FILE)", "reason", err.Error())
			})
			stop()
			return
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		return err
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(_ any, initial bool) {
			if !initial {
				signal(changed)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			// A re-list after a broken watch reports every object as
			// updated; only a new resourceVersion is a change.
			o, ok1 := oldObj.(*certificatesv1.ClusterTrustBundle)
			n, ok2 := newObj.(*certificatesv1.ClusterTrustBundle)
			if !ok1 || !ok2 || o.ResourceVersion != n.ResourceVersion {
				signal(changed)
			}
		},
		DeleteFunc: func(any) { signal(changed) },
	}); err != nil {
		return err
	}
	informer.RunWithContext(ctx)
	return nil
}
