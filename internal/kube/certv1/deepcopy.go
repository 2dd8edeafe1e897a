package certv1

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopy copies the request; nothing is shared with the original.
func (in *CertificateSigningRequest) DeepCopy() *CertificateSigningRequest {
	if in == nil {
		return nil
	}
	out := &CertificateSigningRequest{TypeMeta: in.TypeMeta}
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec = in.Spec
	out.Spec.Request = slices.Clone(in.Spec.Request)
	if in.Spec.ExpirationSeconds != nil {
		v := *in.Spec.ExpirationSeconds
		out.Spec.ExpirationSeconds = &v
	}
	out.Spec.Usages = slices.Clone(in.Spec.Usages)
	out.Spec.Groups = slices.Clone(in.Spec.Groups)
	if in.Spec.Extra != nil {
		out.Spec.Extra = make(map[string]ExtraValue, len(in.Spec.Extra))
		for k, v := range in.Spec.Extra {
			out.Spec.Extra[k] = slices.Clone(v)
		}
	}
	out.Status.Certificate = slices.Clone(in.Status.Certificate)
	if in.Status.Conditions != nil {
		out.Status.Conditions = make([]CertificateSigningRequestCondition, len(in.Status.Conditions))
		for i, c := range in.Status.Conditions {
			out.Status.Conditions[i] = c
			c.LastUpdateTime.DeepCopyInto(&out.Status.Conditions[i].LastUpdateTime)
			c.LastTransitionTime.DeepCopyInto(&out.Status.Conditions[i].LastTransitionTime)
		}
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *CertificateSigningRequest) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *CertificateSigningRequestList) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	out := &CertificateSigningRequestList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]CertificateSigningRequest, len(in.Items))
		for i := range in.Items {
			out.Items[i] = *in.Items[i].DeepCopy()
		}
	}
	return out
}

// DeepCopy copies the bundle.
func (in *ClusterTrustBundle) DeepCopy() *ClusterTrustBundle {
	if in == nil {
		return nil
	}
	out := &ClusterTrustBundle{TypeMeta: in.TypeMeta, Spec: in.Spec}
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *ClusterTrustBundle) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopyObject implements runtime.Object.
func (in *ClusterTrustBundleList) DeepCopyObject() runtime.Object {
	if in == nil {
		return nil
	}
	out := &ClusterTrustBundleList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]ClusterTrustBundle, len(in.Items))
		for i := range in.Items {
			out.Items[i] = *in.Items[i].DeepCopy()
		}
	}
	return out
}
