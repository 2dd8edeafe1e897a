package certv1_test

import (
	"encoding/json"
	"reflect"
	"testing"

	upstream "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/kube/certv1"
)

func fullUpstreamCSR() *upstream.CertificateSigningRequest {
	now := metav1.Now().Rfc3339Copy()
	return &upstream.CertificateSigningRequest{
		TypeMeta:   metav1.TypeMeta{Kind: "CertificateSigningRequest", APIVersion: "certificates.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "csr", UID: "u", ResourceVersion: "7", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"}},
		Spec: upstream.CertificateSigningRequestSpec{
			Request: []byte("req"), SignerName: "csr-agent.io/pod", ExpirationSeconds: ptr.To(int32(600)),
			Usages:   []upstream.KeyUsage{upstream.UsageDigitalSignature, upstream.UsageServerAuth},
			Username: "system:serviceaccount:ns:sa", UID: "sa-uid", Groups: []string{"g"},
			Extra: map[string]upstream.ExtraValue{"authentication.kubernetes.io/pod-name": {"web-0"}},
		},
		Status: upstream.CertificateSigningRequestStatus{
			Certificate: []byte("cert"),
			Conditions: []upstream.CertificateSigningRequestCondition{{
				Type: upstream.CertificateApproved, Status: corev1.ConditionTrue, Reason: "R", Message: "M",
				LastUpdateTime: now, LastTransitionTime: now,
			}},
		},
	}
}

// Every field the API serves survives a decode into these types and an
// encode back: nothing is lost when the agent round-trips an object.
func TestMatchesUpstreamAPI(t *testing.T) {
	for name, obj := range map[string]any{
		"csr": fullUpstreamCSR(),
		"trust bundle": &upstream.ClusterTrustBundle{
			TypeMeta:   metav1.TypeMeta{Kind: "ClusterTrustBundle", APIVersion: "certificates.k8s.io/v1"},
			ObjectMeta: metav1.ObjectMeta{Name: "csr-agent.io:pod:x"},
			Spec:       upstream.ClusterTrustBundleSpec{SignerName: "csr-agent.io/pod", TrustBundle: "pem"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			var ours any = &certv1.CertificateSigningRequest{}
			if _, ok := obj.(*upstream.ClusterTrustBundle); ok {
				ours = &certv1.ClusterTrustBundle{}
			}
			if err := json.Unmarshal(want, ours); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(ours)
			if err != nil {
				t.Fatal(err)
			}
			var a, b map[string]any
			_ = json.Unmarshal(want, &a)
			_ = json.Unmarshal(got, &b)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("round trip changed the object:\nupstream %s\nours     %s", want, got)
			}
		})
	}
}

func TestDeepCopySharesNothing(t *testing.T) {
	raw, _ := json.Marshal(fullUpstreamCSR())
	var in certv1.CertificateSigningRequest
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	out := in.DeepCopy()
	if !reflect.DeepEqual(&in, out) {
		t.Fatal("copy differs from the original")
	}
	out.Spec.Request[0] = 'X'
	*out.Spec.ExpirationSeconds = 1
	out.Spec.Usages[0] = "x"
	out.Spec.Extra["authentication.kubernetes.io/pod-name"][0] = "x"
	out.Status.Certificate[0] = 'X'
	out.Status.Conditions[0].Reason = "x"
	out.Labels["a"] = "x"
	if !reflect.DeepEqual(in.DeepCopy(), &in) || in.Spec.Request[0] == 'X' || *in.Spec.ExpirationSeconds == 1 ||
		in.Spec.Usages[0] == "x" || in.Spec.Extra["authentication.kubernetes.io/pod-name"][0] == "x" ||
		in.Status.Certificate[0] == 'X' || in.Status.Conditions[0].Reason == "x" || in.Labels["a"] == "x" {
		t.Error("changing the copy changed the original")
	}
}
