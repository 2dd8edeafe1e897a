package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Apply applies files of this package (paths relative to manifests/) with
// server-side apply, as `kubectl apply --server-side --force-conflicts`
// would, owned by fieldManager, and returns "Kind name" of each object.
// Conflicts are forced: what ships wins over what another manager applied
// before (a test applying the same policy with kubectl, say). The files are
// applied as written: the demo and the benchmarks run with the RBAC that
// ships, not a copy of it.
func Apply(ctx context.Context, cfg *rest.Config, fieldManager string, files ...string) ([]string, error) {
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
		data, err := fs.ReadFile(FS, file)
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
			if _, err := res.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				return nil, fmt.Errorf("applying %s %s from manifests/%s: %w", gvk.Kind, obj.GetName(), file, err)
			}
			applied = append(applied, gvk.Kind+" "+obj.GetName())
		}
	}
	return applied, nil
}
