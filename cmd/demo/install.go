package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/csr-agent/csr-agent/manifests"
)

// fieldManager owns what the demo applies.
const fieldManager = "csr-agent-demo"

// applyManifests applies files of manifests/ with server-side apply, as
// `kubectl apply --server-side` would, and returns "Kind name" of each
// object. The files are applied as written: the demo runs with the RBAC
// that ships, not a copy of it.
func applyManifests(ctx context.Context, cfg *rest.Config, files ...string) ([]string, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building dynamic client: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building client: %w", err)
	}
	groups, err := restmapper.GetAPIGroupResources(client.Discovery())
	if err != nil {
		return nil, fmt.Errorf("discovering API resources: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	var applied []string
	for _, file := range files {
		data, err := fs.ReadFile(manifests.FS, file)
		if err != nil {
			return nil, fmt.Errorf("reading manifests/%s: %w", file, err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("decoding manifests/%s: %w", file, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return nil, fmt.Errorf("manifests/%s: %s: %w", file, gvk, err)
			}
			var res dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if ns := obj.GetNamespace(); ns != "" {
				res = dyn.Resource(mapping.Resource).Namespace(ns)
			}
			if _, err := res.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager}); err != nil {
				return nil, fmt.Errorf("applying %s %s from manifests/%s: %w", gvk.Kind, obj.GetName(), file, err)
			}
			applied = append(applied, gvk.Kind+" "+obj.GetName())
		}
	}
	return applied, nil
}

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
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-agent", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "csr-agent-namespace"},
		Subjects:   subjects,
	}
	if _, err := client.RbacV1().RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("binding ClusterRole csr-agent-namespace: %w", err)
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
