// Package certv1 is the part of the certificates.k8s.io/v1 API the agent
// reads and writes, as plain Go types registered under the real group and
// version, so the objects on the wire are exactly the API's.
//
// Why not k8s.io/api/certificates/v1: it imports k8s.io/api/core/v1 (for one
// string type), and that package's scheme registration keeps every core type
// and its generated code in the binary: about 1.5 MB of code and as much
// memory in every pod of a cluster. The names here are those of the upstream
// package, so code reads the same; TestMatchesUpstreamAPI keeps the JSON form
// identical.
package certv1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SchemeGroupVersion is certificates.k8s.io/v1.
var SchemeGroupVersion = schema.GroupVersion{Group: "certificates.k8s.io", Version: "v1"}

// AddToScheme registers the types with the scheme.
func AddToScheme(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&CertificateSigningRequest{}, &CertificateSigningRequestList{},
		&ClusterTrustBundle{}, &ClusterTrustBundleList{},
	)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}

// Well-known signer names.
const KubeAPIServerClientSignerName = "kubernetes.io/kube-apiserver-client"

// CertificateSigningRequest is a request for a signed certificate.
type CertificateSigningRequest struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CertificateSigningRequestSpec   `json:"spec"`
	Status CertificateSigningRequestStatus `json:"status,omitempty"`
}

// CertificateSigningRequestSpec is what is asked, and by whom (the last four
// fields are set by the API server).
type CertificateSigningRequestSpec struct {
	Request           []byte                `json:"request"`
	SignerName        string                `json:"signerName"`
	ExpirationSeconds *int32                `json:"expirationSeconds,omitempty"`
	Usages            []KeyUsage            `json:"usages,omitempty"`
	Username          string                `json:"username,omitempty"`
	UID               string                `json:"uid,omitempty"`
	Groups            []string              `json:"groups,omitempty"`
	Extra             map[string]ExtraValue `json:"extra,omitempty"`
}

// ExtraValue holds the values of one extra attribute of the requester.
type ExtraValue []string

// CertificateSigningRequestStatus is the decision and the result.
type CertificateSigningRequestStatus struct {
	Conditions  []CertificateSigningRequestCondition `json:"conditions,omitempty"`
	Certificate []byte                               `json:"certificate,omitempty"`
}

// RequestConditionType is Approved, Denied or Failed.
type RequestConditionType string

// Condition types.
const (
	CertificateApproved RequestConditionType = "Approved"
	CertificateDenied   RequestConditionType = "Denied"
	CertificateFailed   RequestConditionType = "Failed"
)

// ConditionStatus is True, False or Unknown.
type ConditionStatus string

// ConditionTrue is the status of a condition that holds.
const ConditionTrue ConditionStatus = "True"

// CertificateSigningRequestCondition is one condition of the status.
type CertificateSigningRequestCondition struct {
	Type               RequestConditionType `json:"type"`
	Status             ConditionStatus      `json:"status"`
	Reason             string               `json:"reason,omitempty"`
	Message            string               `json:"message,omitempty"`
	LastUpdateTime     metav1.Time          `json:"lastUpdateTime,omitempty"`
	LastTransitionTime metav1.Time          `json:"lastTransitionTime,omitempty"`
}

// CertificateSigningRequestList is a list of requests.
type CertificateSigningRequestList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CertificateSigningRequest `json:"items"`
}

// KeyUsage is a usage requested for the certificate.
type KeyUsage string

// The key usages the agent requests.
const (
	UsageDigitalSignature KeyUsage = "digital signature"
	UsageKeyEncipherment  KeyUsage = "key encipherment"
	UsageServerAuth       KeyUsage = "server auth"
	UsageClientAuth       KeyUsage = "client auth"
)

// ClusterTrustBundle publishes trust anchors, linked to a signer.
type ClusterTrustBundle struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ClusterTrustBundleSpec `json:"spec"`
}

// ClusterTrustBundleSpec holds the PEM bundle.
type ClusterTrustBundleSpec struct {
	SignerName  string `json:"signerName,omitempty"`
	TrustBundle string `json:"trustBundle"`
}

// ClusterTrustBundleList is a list of trust bundles.
type ClusterTrustBundleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterTrustBundle `json:"items"`
}

// Resource qualifies a resource name with the group, for API errors.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}
