package controller

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/sign"
)

// These tests run the decision path against a fake API whose objects the
// controller's caches have not seen (its informers never run): exactly the
// situation of a pod created a moment before its CSR.

const testSigner = "example.com/pod"

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", UID: "uid-1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "web"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}}},
	}
}

func testCSR(t *testing.T) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{DNSNames: []string{"10-1-2-3.shop.pod.cluster.local"}}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-1", ResourceVersion: "7"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: testSigner,
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
			Username:   "system:serviceaccount:shop:web",
			Extra:      map[string]certificatesv1.ExtraValue{approve.ExtraPodName: {"web-0"}, approve.ExtraPodUID: {"uid-1"}},
		},
	}
}

func newTestController(t *testing.T, withCA bool, objects ...runtime.Object) (*Controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objects...)
	policy, err := approve.New(approve.Options{SignerName: testSigner})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sign.New(sign.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Client: client, Policy: policy, Issuer: issuer,
		CASecret: types.NamespacedName{Namespace: "pki", Name: "ca"}, TrustBundleName: "example.com:pod:ca"})
	if err != nil {
		t.Fatal(err)
	}
	if withCA {
		ca, err := sign.NewSelfSignedCA(sign.SelfSignedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.ca.Set(ca)
	}
	return c, client
}

// writes lists the CSR subresources the controller updated, with the
// condition reasons or "certificate" they carried.
func writes(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		u, ok := a.(clienttesting.UpdateAction)
		if !ok || a.GetResource().Resource != "certificatesigningrequests" {
			continue
		}
		csr := u.GetObject().(*certificatesv1.CertificateSigningRequest)
		w := a.GetSubresource() + ":"
		for _, c := range csr.Status.Conditions {
			w += string(c.Type) + "/" + c.Reason + " "
		}
		if len(csr.Status.Certificate) > 0 {
			w += "certificate"
		}
		out = append(out, strings.TrimSpace(w))
	}
	return out
}

func TestPodMissingFromTheCacheIsReadLiveAndApproved(t *testing.T) {
	csr := testCSR(t)
	c, client := newTestController(t, true, testPod(), csr)
	if err := c.decide(t.Context(), csr.DeepCopy()); err != nil {
		t.Fatalf("decide: %v", err)
	}
	got := strings.Join(writes(client), ", ")
	want := "approval:Approved/AutoApproved, status:Approved/AutoApproved certificate"
	if got != want {
		t.Errorf("writes %q, want %q", got, want)
	}
}

// The caches still show the pod as it was when the CSR was created; the API
// shows it relabelled out of its Service, re-created, or being deleted.
// The decision follows the API.
func TestApprovalIsDecidedFromTheLivePodNotTheCache(t *testing.T) {
	deleting := metav1.Now()
	tests := []struct {
		name string
		live func(*corev1.Pod)
		want string
	}{
		{"relabelled out of the Service", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "other"} }, approve.ReasonDNSNameNotAllowed},
		{"re-created under the same name", func(p *corev1.Pod) { p.UID = "uid-2" }, approve.ReasonPodUIDMismatch},
		{"being deleted", func(p *corev1.Pod) { p.DeletionTimestamp = &deleting }, approve.ReasonPodTerminating},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := testCSR(t)
			csr.Spec.Request = requestFor(t, "web.shop.svc")
			live, svc := testPod(), testService()
			tt.live(live)
			c, client := newTestController(t, true, live, svc, csr)
			if err := c.informer.pods.GetIndexer().Add(mustPodFacts(t, testPod())); err != nil {
				t.Fatal(err)
			}
			if err := c.informer.services.GetIndexer().Add(svc); err != nil {
				t.Fatal(err)
			}
			if err := c.decide(t.Context(), csr.DeepCopy()); err != nil {
				t.Fatalf("decide: %v", err)
			}
			if got, want := strings.Join(writes(client), ", "), "approval:Denied/"+tt.want; got != want {
				t.Errorf("writes %q, want %q", got, want)
			}
		})
	}
}

// A request for the pod's IP names only depends on the pod: its fresh read
// is the pod alone, not the Services that happen to select it.
func TestFreshReadIsOnlyWhatTheRequestNames(t *testing.T) {
	csr := testCSR(t) // asks for the pod-IP DNS name only
	pod, svc := testPod(), testService()
	c, client := newTestController(t, true, pod, svc, csr)
	if err := c.informer.pods.GetIndexer().Add(mustPodFacts(t, testPod())); err != nil {
		t.Fatal(err)
	}
	if err := c.informer.services.GetIndexer().Add(svc); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if err := c.decide(t.Context(), csr.DeepCopy()); err != nil {
		t.Fatalf("decide: %v", err)
	}
	var reads []string
	for _, a := range client.Actions() {
		if a.GetVerb() == "get" || a.GetVerb() == "list" {
			reads = append(reads, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	if got := strings.Join(reads, ", "); got != "get pods" {
		t.Errorf("reads %q, want the pod alone", got)
	}
}

func testService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "svc-1"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"}},
	}
}

func requestFor(t *testing.T, dnsNames ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: dnsNames}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestPodAbsentFromTheAPIIsDenied(t *testing.T) {
	csr := testCSR(t)
	c, client := newTestController(t, true, csr)
	if err := c.decide(t.Context(), csr.DeepCopy()); err != nil {
		t.Fatalf("decide: %v", err)
	}
	if got, want := strings.Join(writes(client), ", "), "approval:Denied/"+approve.ReasonPodNotFound; got != want {
		t.Errorf("writes %q, want %q", got, want)
	}
}

func TestTransientProblemsAreRetriedNeverDenied(t *testing.T) {
	serverError := apierrors.NewInternalError(errors.New("etcd unavailable"))
	tests := []struct {
		name      string
		withCA    bool
		reactor   func(*fake.Clientset)
		wantErr   error
		wantWrite string
	}{
		{"reading the pod fails", true, func(f *fake.Clientset) {
			f.PrependReactor("get", "pods", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, serverError })
		}, serverError, ""},
		{"listing the services fails", true, func(f *fake.Clientset) {
			f.PrependReactor("list", "services", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, serverError })
		}, serverError, ""},
		{"someone else decided meanwhile", true, func(f *fake.Clientset) {
			f.PrependReactor("update", "certificatesigningrequests", func(a clienttesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, "csr-1", errors.New("modified"))
			})
		}, nil, ""},
		{"no CA loaded yet", false, func(*fake.Clientset) {}, errNoCA, "approval:Approved/AutoApproved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := testCSR(t)
			c, client := newTestController(t, tt.withCA, testPod(), csr)
			tt.reactor(client)
			// The pod is absent from the cache, so deciding needs the API.
			err := c.decide(t.Context(), csr.DeepCopy())
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("decide error %v, want %v", err, tt.wantErr)
			}
			for _, w := range writes(client) {
				if strings.Contains(w, "Denied") || strings.Contains(w, "Failed") {
					t.Errorf("transient problem written as %q", w)
				}
			}
		})
	}
}

func TestOwnWritesAreNotRedoneFromAStaleCache(t *testing.T) {
	w := newWrittenVersions()
	w.add("csr-1", "7")
	w.add("csr-1", "8")
	if !w.superseded("csr-1", "7") || !w.superseded("csr-1", "8") || w.superseded("csr-1", "9") || w.superseded("csr-2", "7") {
		t.Error("superseded does not match the versions written over")
	}
	w.forget("csr-1")
	if w.superseded("csr-1", "7") {
		t.Error("forget kept the versions")
	}
}

func TestOptionsAreValidated(t *testing.T) {
	_, err := New(Options{Workers: -1, LeaderElection: &LeaderElection{LeaseDuration: 1, RenewDeadline: 2}})
	for _, want := range []string{"Client", "Policy", "Issuer", "CASecret", "TrustBundleName", "Workers", "LeaderElection needs", "timings"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v does not name %s", err, want)
		}
	}
}
