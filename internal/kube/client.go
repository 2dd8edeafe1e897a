// Package kube is the agent's own small Kubernetes API client.
//
// The agent runs in every pod of a cluster, so its memory is paid thousands
// of times. client-go's full Clientset registers every API group in its
// scheme, which costs about 10 MB of binary and RSS; the agent needs one
// group. So this package builds a REST client over a scheme holding only
// certificates.k8s.io/v1, and reads the few core objects it needs (its Pod,
// the Services of its namespace) as plain JSON into minimal structs.
package kube

import (
	"context"
	"encoding/json"
	"fmt"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// Client reaches the API server with the pod's own credentials.
type Client struct {
	certs rest.Interface
	core  rest.Interface
}

var codecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	if err := certificatesv1.AddToScheme(scheme); err != nil {
		panic(err) // static registration; cannot fail at run time
	}
	return serializer.NewCodecFactory(scheme)
}()

// LoadConfig returns the client configuration from a kubeconfig file, or the
// in-cluster configuration (the pod's service-account token) when path is
// empty.
func LoadConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("loading in-cluster configuration (set KUBECONFIG outside a pod): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// New builds a client. userAgent names the agent in API server logs.
func New(cfg *rest.Config, userAgent string) (*Client, error) {
	certs := rest.CopyConfig(cfg)
	certs.GroupVersion = &certificatesv1.SchemeGroupVersion
	certs.APIPath = "/apis"
	certs.NegotiatedSerializer = codecs.WithoutConversion()
	certs.UserAgent = userAgent
	certsClient, err := rest.RESTClientFor(certs)
	if err != nil {
		return nil, fmt.Errorf("building certificates client: %w", err)
	}
	core := rest.CopyConfig(cfg)
	core.GroupVersion = &schema.GroupVersion{Version: "v1"}
	core.APIPath = "/api"
	core.NegotiatedSerializer = codecs.WithoutConversion()
	core.UserAgent = userAgent
	coreClient, err := rest.RESTClientFor(core)
	if err != nil {
		return nil, fmt.Errorf("building core client: %w", err)
	}
	return &Client{certs: certsClient, core: coreClient}, nil
}

const csrResource = "certificatesigningrequests"

// CreateCSR creates csr.
func (c *Client) CreateCSR(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (*certificatesv1.CertificateSigningRequest, error) {
	out := &certificatesv1.CertificateSigningRequest{}
	err := c.certs.Post().Resource(csrResource).Body(csr).Do(ctx).Into(out)
	return out, err
}

// GetCSR reads one CSR.
func (c *Client) GetCSR(ctx context.Context, name string) (*certificatesv1.CertificateSigningRequest, error) {
	out := &certificatesv1.CertificateSigningRequest{}
	err := c.certs.Get().Resource(csrResource).Name(name).Do(ctx).Into(out)
	return out, err
}

// DeleteCSR deletes a CSR, only if it is still the object with that UID.
func (c *Client) DeleteCSR(ctx context.Context, name string, uid types.UID) error {
	opts := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	return c.certs.Delete().Resource(csrResource).Name(name).Body(opts).Do(ctx).Error()
}

// WatchCSR watches the one CSR called name (a metadata.name field
// selector), from opts.ResourceVersion.
func (c *Client) WatchCSR(ctx context.Context, name string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	return c.certs.Get().Resource(csrResource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}

// TrustBundle returns the concatenated PEM of the ClusterTrustBundles that
// the signer publishes for signerName, or nil if there are none. With
// fromCache the API server answers from its watch cache (resourceVersion 0)
// at once, possibly a moment behind; without it the read is consistent, and
// the API server first waits for its cache to catch up with etcd (tens of
// milliseconds on an idle cluster).
func (c *Client) TrustBundle(ctx context.Context, signerName string, fromCache bool) ([]byte, error) {
	list := &certificatesv1.ClusterTrustBundleList{}
	req := c.certs.Get().Resource("clustertrustbundles").
		Param("fieldSelector", fields.OneTermEqualSelector("spec.signerName", signerName).String())
	if fromCache {
		req = req.Param("resourceVersion", "0")
	}
	err := req.
		Do(ctx).Into(list)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, b := range list.Items {
		out = append(out, b.Spec.TrustBundle...)
		if n := len(out); n > 0 && out[n-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out, nil
}

// Pod is what the agent reads of its own Pod.
type Pod struct {
	Metadata struct {
		Name   string            `json:"name"`
		UID    string            `json:"uid"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
}

// Service is what the agent reads of a Service.
type Service struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Selector map[string]string `json:"selector"`
	} `json:"spec"`
}

// GetPod reads a Pod.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*Pod, error) {
	raw, err := c.core.Get().Namespace(namespace).Resource("pods").Name(name).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	pod := &Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		return nil, fmt.Errorf("decoding pod: %w", err)
	}
	return pod, nil
}

// ListServices lists the Services of a namespace.
func (c *Client) ListServices(ctx context.Context, namespace string) ([]Service, error) {
	raw, err := c.core.Get().Namespace(namespace).Resource("services").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []Service `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decoding services: %w", err)
	}
	return list.Items, nil
}

// WatchTrustBundles lists and watches the ClusterTrustBundles of signerName.
func (c *Client) WatchTrustBundles(signerName string) cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(c.certs, "clustertrustbundles", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", signerName).String()
	})
}
