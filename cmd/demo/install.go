package main

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// fieldManager owns what the demo applies.
const fieldManager = "csr-agent-demo"

// bindAgent binds the agent's ClusterRoles to a service account, as
// manifests/agent-rbac/example-binding does for my-app.
func bindAgent(ctx context.Context, client kubernetes.Interface, namespace, sa string) error {
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: sa}}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-agent:" + namespace + ":" + sa},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "csr-agent"},
		Subjects:   subjects,
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("binding ClusterRole csr-agent: %w", err)
	}
	// SERVICE_NAMES=auto, and Events on the pod.
	for _, role := range []string{"csr-agent-namespace", "csr-agent-events"} {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role, Namespace: namespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
		if _, err := client.RbacV1().RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("binding ClusterRole %s: %w", role, err)
		}
	}
	return nil
}

// waitTrustBundle waits until the ClusterTrustBundle exists: the controller
// has loaded (or created) its CA and, as leader, published it.
func waitTrustBundle(ctx context.Context, client kubernetes.Interface, name string) (*certificatesv1.ClusterTrustBundle, error) {
	lw := cache.NewFilteredListWatchFromClient(client.CertificatesV1().RESTClient(), "clustertrustbundles", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	ev, err := watchtools.UntilWithSync(ctx, lw, &certificatesv1.ClusterTrustBundle{}, nil, func(ev watch.Event) (bool, error) {
		return ev.Type == watch.Added || ev.Type == watch.Modified, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for ClusterTrustBundle %s: %w", name, err)
	}
	ctb, ok := ev.Object.(*certificatesv1.ClusterTrustBundle)
	if !ok {
		return nil, fmt.Errorf("waiting for ClusterTrustBundle %s: got a %T", name, ev.Object)
	}
	return ctb, nil
}
