package approve

import (
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Keys of spec.extra that kube-apiserver sets for a service-account token
// bound to a pod (TokenRequest with a Pod boundObjectRef; kubelet's projected
// tokens always are).
const (
	ExtraPodName = "authentication.kubernetes.io/pod-name"
	ExtraPodUID  = "authentication.kubernetes.io/pod-uid"
)

const serviceAccountUserPrefix = "system:serviceaccount:"

// Requester is the pod a CSR was created by, as the API server recorded it.
type Requester struct {
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         types.UID
}

// RequesterOf reads who created csr. It relies on kube-apiserver filling
// spec.username, spec.uid, spec.groups and spec.extra from the authenticated
// user on create (the CSR registry strategy overwrites whatever the client
// sent) and on those fields being immutable afterwards: the client cannot
// choose them. Only a token bound to a pod carries the pod name and UID; a
// legacy Secret-based token, a token bound to a Secret, a node or a plain
// user does not, and is denied as NotPodBound. The error is a *Denial.
func RequesterOf(csr *certificatesv1.CertificateSigningRequest) (Requester, error) {
	rest, ok := strings.CutPrefix(csr.Spec.Username, serviceAccountUserPrefix)
	if !ok {
		return Requester{}, deny(ReasonNotPodBound, "requester %q is not a service account", csr.Spec.Username)
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok || len(validation.IsDNS1123Label(ns)) != 0 || len(validation.IsDNS1123Subdomain(sa)) != 0 {
		return Requester{}, deny(ReasonNotPodBound, "requester %q is not a valid service account user name", csr.Spec.Username)
	}
	name, ok := singleExtra(csr, ExtraPodName)
	if !ok {
		return Requester{}, deny(ReasonNotPodBound, "token of %q is not bound to a pod: spec.extra[%s] must hold exactly one value", csr.Spec.Username, ExtraPodName)
	}
	uid, ok := singleExtra(csr, ExtraPodUID)
	if !ok {
		return Requester{}, deny(ReasonNotPodBound, "token of %q is not bound to a pod: spec.extra[%s] must hold exactly one value", csr.Spec.Username, ExtraPodUID)
	}
	return Requester{Namespace: ns, ServiceAccount: sa, PodName: name, PodUID: types.UID(uid)}, nil
}

func singleExtra(csr *certificatesv1.CertificateSigningRequest, key string) (string, bool) {
	v := csr.Spec.Extra[key]
	if len(v) != 1 || v[0] == "" {
		return "", false
	}
	return v[0], true
}

// Pod is what the policy needs to know of the live pod.
type Pod struct {
	Namespace          string
	Name               string
	UID                types.UID
	ServiceAccountName string
	Phase              corev1.PodPhase
	// Terminating is true when metadata.deletionTimestamp is set.
	Terminating bool
	// PodIPs are status.podIPs.
	PodIPs []string
	// HostNetwork is spec.hostNetwork: the pod IPs are then the node's.
	HostNetwork bool
	Labels      map[string]string
	Hostname    string
	Subdomain   string
	// NodeName is spec.nodeName, which a PodCertificateRequest names.
	NodeName string
}

// PodFrom extracts the facts from a pod read from the API.
func PodFrom(p *corev1.Pod) *Pod {
	if p == nil {
		return nil
	}
	ips := make([]string, 0, len(p.Status.PodIPs))
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && p.Status.PodIP != "" { // written by a component predating podIPs
		ips = append(ips, p.Status.PodIP)
	}
	return &Pod{
		Namespace:          p.Namespace,
		Name:               p.Name,
		UID:                p.UID,
		ServiceAccountName: p.Spec.ServiceAccountName,
		Phase:              p.Status.Phase,
		Terminating:        p.DeletionTimestamp != nil,
		PodIPs:             ips,
		HostNetwork:        p.Spec.HostNetwork,
		Labels:             p.Labels,
		Hostname:           p.Spec.Hostname,
		Subdomain:          p.Spec.Subdomain,
		NodeName:           p.Spec.NodeName,
	}
}

// Service is what the policy needs to know of a Service.
type Service struct {
	Namespace string
	Name      string
	Type      corev1.ServiceType
	Selector  map[string]string
	// ClusterIPs are spec.clusterIPs; "None" marks a headless Service.
	ClusterIPs []string
}

// ServiceFrom extracts the facts from a Service read from the API.
func ServiceFrom(s *corev1.Service) Service {
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" { // written by a component predating clusterIPs
		ips = []string{s.Spec.ClusterIP}
	}
	return Service{
		Namespace:  s.Namespace,
		Name:       s.Name,
		Type:       s.Spec.Type,
		Selector:   s.Spec.Selector,
		ClusterIPs: ips,
	}
}

// headless reports a Service without cluster IP, whose DNS name resolves to
// the pods' own IPs.
func (s Service) headless() bool {
	return len(s.ClusterIPs) == 0 || s.ClusterIPs[0] == corev1.ClusterIPNone
}

// Selects reports whether s routes to pod. It follows the Service rules: a
// Service with an empty selector selects nothing automatically (its
// endpoints are managed by hand, so its names are not this pod's), and an
// ExternalName Service resolves to a CNAME elsewhere, never to a pod.
func (s Service) Selects(pod *Pod) bool {
	if s.Namespace != pod.Namespace || s.Type == corev1.ServiceTypeExternalName || len(s.Selector) == 0 {
		return false
	}
	for k, v := range s.Selector {
		if got, ok := pod.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// checkPod verifies that the live pod is the one the token was bound to and
// may still receive a certificate.
func checkPod(who Requester, pod *Pod) error {
	if pod == nil || pod.Namespace != who.Namespace || pod.Name != who.PodName {
		return deny(ReasonPodNotFound, "pod %s/%s does not exist", who.Namespace, who.PodName)
	}
	// A pod deleted and re-created under the same name is a different pod;
	// its token was bound to the old UID.
	if pod.UID != who.PodUID {
		return deny(ReasonPodUIDMismatch, "pod %s/%s has UID %q, the token was bound to UID %q", pod.Namespace, pod.Name, pod.UID, who.PodUID)
	}
	if pod.ServiceAccountName != who.ServiceAccount {
		return deny(ReasonServiceAccountMismatch, "pod %s/%s runs as service account %q, the request came from %q", pod.Namespace, pod.Name, pod.ServiceAccountName, who.ServiceAccount)
	}
	if pod.Terminating {
		return deny(ReasonPodTerminating, "pod %s/%s is being deleted", pod.Namespace, pod.Name)
	}
	if pod.Phase == corev1.PodSucceeded || pod.Phase == corev1.PodFailed {
		return deny(ReasonPodFinished, "pod %s/%s has finished (phase %s)", pod.Namespace, pod.Name, pod.Phase)
	}
	return nil
}
