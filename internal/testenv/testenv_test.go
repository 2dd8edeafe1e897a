package testenv_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A CSR created with a pod-bound token carries the pod's identity, set by the
// API server, and kube-controller-manager's built-in signer issues it once a
// person approves.
func TestPodBoundCSRCarriesPodIdentityAndIsSignedByBuiltInSigner(t *testing.T) {
	env := testenv.Shared(t)
	ctx := t.Context()
	pod := env.NewPod(t, testenv.PodOptions{Labels: map[string]string{"app": "web"}})
	allowCSRCreate(t, env, pod)

	podClient, err := kubernetes.NewForConfig(pod.Config)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-client"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName:        certificatesv1.KubeAPIServerClientSignerName,
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			ExpirationSeconds: ptr.To(int32(3600)),
		},
	}
	csr, err = podClient.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating CSR with the pod's token: %v", err)
	}

	if csr.Spec.Username != pod.Username() {
		t.Errorf("spec.username = %q, want %q", csr.Spec.Username, pod.Username())
	}
	for key, want := range map[string]string{
		"authentication.kubernetes.io/pod-name":  pod.Name,
		"authentication.kubernetes.io/pod-uid":   pod.UID,
		"authentication.kubernetes.io/node-name": testenv.NodeName,
	} {
		if got := csr.Spec.Extra[key]; !slices.Equal(got, []string{want}) {
			t.Errorf("spec.extra[%s] = %q, want [%q]", key, got, want)
		}
	}

	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestApproved", Message: "approved by the test",
	})
	if _, err := env.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("approving: %v", err)
	}

	issued := waitIssued(t, env, csr.Name)
	block, _ := pem.Decode(issued)
	if block == nil {
		t.Fatalf("status.certificate is not PEM: %q", issued)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(env.ClusterCAPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify against the cluster CA: %v", err)
	}
	if cert.Subject.CommonName != "web-client" {
		t.Errorf("CN = %q, want web-client", cert.Subject.CommonName)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("issued certificate is not for the pod's key")
	}
}

func allowCSRCreate(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
	t.Helper()
	env.Grant(t, pod, rbacv1.PolicyRule{
		APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"},
		Verbs: []string{"create", "get", "watch"},
	})
}

// waitIssued watches one CSR until the signer fills status.certificate.
func waitIssued(t *testing.T, env *testenv.Env, name string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lw := cache.NewFilteredListWatchFromClient(env.Client.CertificatesV1().RESTClient(), "certificatesigningrequests", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	ev, err := watchtools.UntilWithSync(ctx, lw, &certificatesv1.CertificateSigningRequest{}, nil, func(ev watch.Event) (bool, error) {
		csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
		return ok && len(csr.Status.Certificate) > 0, nil
	})
	if err != nil {
		t.Fatalf("waiting for CSR %s to be issued: %v", name, err)
	}
	return ev.Object.(*certificatesv1.CertificateSigningRequest).Status.Certificate
}
