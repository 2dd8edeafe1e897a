package controller

import (
	"fmt"
	"maps"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// cachedPod is a Pod as the controller's cache holds it: the facts the
// policy reads (approve.Pod, from approve.PodFrom, the one extraction the
// fresh reads use too) and nothing else.
//
// Why not a slimmed *corev1.Pod: the Go struct alone is 1,240 bytes (a
// 1,280-byte allocation) however few of its fields are set, more than
// everything the policy reads put together, and the cache holds every pod
// of the cluster. A cachedPod is 176 bytes. The cache only needs an object
// it can key and index by namespace, which GetObjectMeta gives it.
type cachedPod struct {
	approve.Pod
}

var _ metav1.ObjectMetaAccessor = (*cachedPod)(nil)

// GetObjectMeta serves the cache's key function and namespace index; it is
// called when an event is stored, never on the policy's read path.
func (p *cachedPod) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
}

// podFacts is the informers' transform for Pods. It is also handed objects
// it has already transformed (client-go calls it again on a re-list), which
// it passes on, and tombstones, which the cache unwraps itself.
func podFacts(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		p := approve.PodFrom(o)
		// Many pods share these strings (a namespace, a service account, a
		// node, a ReplicaSet's labels); each decoded pod holds a copy of its
		// own. unique keeps one, and forgets it with the last pod using it.
		p.Namespace = intern(p.Namespace)
		p.ServiceAccountName = intern(p.ServiceAccountName)
		p.NodeName = intern(p.NodeName)
		p.Subdomain = intern(p.Subdomain)
		p.Phase = corev1.PodPhase(intern(string(p.Phase)))
		if len(p.Labels) > 0 {
			labels := make(map[string]string, len(p.Labels))
			for k, v := range p.Labels {
				labels[intern(k)] = intern(v)
			}
			p.Labels = labels
		}
		return &cachedPod{Pod: *p}, nil
	case *cachedPod, cache.DeletedFinalStateUnknown:
		return obj, nil
	}
	return nil, fmt.Errorf("pod cache: unexpected %T", obj)
}

func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// cachedPodFacts returns the cached facts of namespace/name; nil when the
// cache does not hold the pod. The copy keeps the policy from writing into
// the cache.
func (in *caches) cachedPodFacts(namespace, name string) (*approve.Pod, error) {
	obj, ok, err := in.pods.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, err
	}
	p, ok := obj.(*cachedPod)
	if !ok {
		return nil, fmt.Errorf("pod cache holds %T", obj)
	}
	facts := p.Pod
	facts.PodIPs = append([]string(nil), p.PodIPs...)
	facts.Labels = maps.Clone(p.Labels)
	return &facts, nil
}
