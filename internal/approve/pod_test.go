package approve

import (
	"reflect"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRequiresAPodBoundServiceAccountToken(t *testing.T) {
	tests := []struct {
		name       string
		edit       func(*certificatesv1.CertificateSigningRequestSpec)
		wantReason string
	}{
		{"pod-bound token", func(*certificatesv1.CertificateSigningRequestSpec) {}, ReasonApproved},
		{"plain user", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "alice" }, ReasonNotPodBound},
		{"node", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "system:node:node-1" }, ReasonNotPodBound},
		{"service account user without name", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "system:serviceaccount:shop" }, ReasonNotPodBound},
		{"service account user with empty namespace", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "system:serviceaccount::web" }, ReasonNotPodBound},
		{"service account user with extra colon", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "system:serviceaccount:shop:web:x" }, ReasonNotPodBound},
		{"no extra", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Extra = nil }, ReasonNotPodBound},
		{"no pod name", func(s *certificatesv1.CertificateSigningRequestSpec) { delete(s.Extra, ExtraPodName) }, ReasonNotPodBound},
		{"no pod UID", func(s *certificatesv1.CertificateSigningRequestSpec) { delete(s.Extra, ExtraPodUID) }, ReasonNotPodBound},
		{"two pod names", func(s *certificatesv1.CertificateSigningRequestSpec) {
			s.Extra[ExtraPodName] = []string{testPod, "other"}
		}, ReasonNotPodBound},
		{"empty pod UID", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Extra[ExtraPodUID] = []string{""} }, ReasonNotPodBound},
		{"other service account of the namespace", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "system:serviceaccount:shop:admin" }, ReasonServiceAccountMismatch},
		{"bound to another pod", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Extra[ExtraPodName] = []string{"web-1"} }, ReasonPodNotFound},
		{"same name in another namespace", func(s *certificatesv1.CertificateSigningRequestSpec) { s.Username = "system:serviceaccount:bank:web" }, ReasonPodNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil))
			tt.edit(&csr.Spec)
			d := decide(t, csr)
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestRequiresTheLivePodTheTokenWasBoundTo(t *testing.T) {
	tests := []struct {
		name       string
		edit       func(*Facts)
		wantReason string
	}{
		{"running", func(*Facts) {}, ReasonApproved},
		{"pending", func(f *Facts) { f.Pod.Phase = corev1.PodPending }, ReasonApproved},
		{"phase not yet reported", func(f *Facts) { f.Pod.Phase = "" }, ReasonApproved},
		{"gone", func(f *Facts) { f.Pod = nil }, ReasonPodNotFound},
		{"facts of another pod", func(f *Facts) { f.Pod.Name = "web-1" }, ReasonPodNotFound},
		{"facts of another namespace", func(f *Facts) { f.Pod.Namespace = "bank" }, ReasonPodNotFound},
		{"re-created under the same name", func(f *Facts) { f.Pod.UID = "6f1c0a4e-0000-4000-8000-000000000002" }, ReasonPodUIDMismatch},
		{"runs as another service account", func(f *Facts) { f.Pod.ServiceAccountName = "default" }, ReasonServiceAccountMismatch},
		{"being deleted", func(f *Facts) { f.Pod.Terminating = true }, ReasonPodTerminating},
		{"succeeded", func(f *Facts) { f.Pod.Phase = corev1.PodSucceeded }, ReasonPodFinished},
		{"failed", func(f *Facts) { f.Pod.Phase = corev1.PodFailed }, ReasonPodFinished},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			facts := testFacts()
			tt.edit(&facts)
			d := newTestPolicy(t, Options{}).Decide(podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil)), facts)
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestRequesterOfReadsThePodBinding(t *testing.T) {
	got, err := RequesterOf(podCSR(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Requester{Namespace: testNS, ServiceAccount: testSA, PodName: testPod, PodUID: testUID}
	if got != want {
		t.Errorf("RequesterOf = %+v, want %+v", got, want)
	}
}

func TestFactsFromAPIObjects(t *testing.T) {
	now := metav1.Now()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: testPod, UID: testUID, Labels: map[string]string{"app": "web"}, DeletionTimestamp: &now},
		Spec:       corev1.PodSpec{ServiceAccountName: testSA, Hostname: "h", Subdomain: "s", HostNetwork: true},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}, {IP: "fd00::3"}}},
	}
	wantPod := &Pod{
		Namespace: testNS, Name: testPod, UID: testUID, ServiceAccountName: testSA, Phase: corev1.PodRunning,
		Terminating: true, PodIPs: []string{"10.1.2.3", "fd00::3"}, HostNetwork: true,
		Labels: map[string]string{"app": "web"}, Hostname: "h", Subdomain: "s",
	}
	if got := PodFrom(pod); !reflect.DeepEqual(got, wantPod) {
		t.Errorf("PodFrom = %+v, want %+v", got, wantPod)
	}
	if PodFrom(nil) != nil {
		t.Error("PodFrom(nil) is not nil")
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.0.10"}},
	}
	wantSvc := Service{Namespace: testNS, Name: "web", Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.0.10"}}
	if got := ServiceFrom(svc); !reflect.DeepEqual(got, wantSvc) {
		t.Errorf("ServiceFrom = %+v, want %+v", got, wantSvc)
	}
	svc.Spec.ClusterIPs, svc.Spec.ClusterIP = nil, "10.96.0.10"
	if got := ServiceFrom(svc); !reflect.DeepEqual(got, wantSvc) {
		t.Errorf("ServiceFrom with only spec.clusterIP = %+v, want %+v", got, wantSvc)
	}
	pod.Status.PodIPs, pod.Status.PodIP = nil, "10.1.2.3"
	if got := PodFrom(pod).PodIPs; !reflect.DeepEqual(got, []string{"10.1.2.3"}) {
		t.Errorf("PodFrom with only status.podIP: PodIPs = %q", got)
	}
}
