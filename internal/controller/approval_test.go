package controller_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/manifests"
)

// TestApprovalByAPersonSignsOnlyThePodsOwnNames: a request from a pod that
// a person approved before the controller decided (the controller was down)
// is signed only for names the pod owns; names beyond them need the
// extra-names annotation, honoured only while the admission policy that
// reserves it to approvers is in force.
func TestApprovalByAPersonSignsOnlyThePodsOwnNames(t *testing.T) {
	s := newSetup(t)
	pod := s.env.NewPod(t, testenv.PodOptions{Labels: web})
	createService(t, s.env, pod.Namespace, service{name: "web"}, web)
	own := "web." + pod.Namespace + ".svc"
	podClient := must(kubernetes.NewForConfig(pod.Config))
	approved := func(name, annotation string) {
		t.Helper()
		createNamedCSR(t, podClient, s.signer, name, dns(own, "legacy.cluster.local"))
		if annotation != "" {
			annotate(t, s.env, name, annotation)
		}
		approveAsPerson(t, s.env.Client, must(s.env.Client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})))
	}

	// The controller is down while a person approves.
	approved("person-plain-"+pod.UID[:8], "")
	approved("person-annotated-"+pod.UID[:8], "legacy.cluster.local")
	in := s.start(t, startOptions{createCA: true})
	for name, wantInMsg := range map[string]string{
		"person-plain-" + pod.UID[:8]:     approve.AnnotationExtraNames,
		"person-annotated-" + pod.UID[:8]: "is not installed",
	} {
		csr := waitFinished(t, s.env.Client, name)
		c := conditionOf(csr, certificatesv1.CertificateFailed)
		if got, _ := outcome(csr); got != "Failed:"+approve.ReasonDNSNameNotAllowed || !strings.Contains(c.Message, wantInMsg) {
			t.Errorf("%s: outcome %s (%+v), want Failed:%s mentioning %q", name, got, c, approve.ReasonDNSNameNotAllowed, wantInMsg)
		}
	}
	in.shutdown(t)

	// Written before the policy guarded the annotation, by anyone: a
	// person approving it later must not turn it into a grant.
	planted := "person-planted-" + pod.UID[:8]
	createNamedCSR(t, podClient, s.signer, planted, dns(own, "legacy.cluster.local"))
	annotate(t, s.env, planted, "legacy.cluster.local")
	installed := installExtraNamesPolicy(t, s.env)
	approveAsPerson(t, s.env.Client, must(s.env.Client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), planted, metav1.GetOptions{})))
	// Creation times have a resolution of a second.
	waitUntil(t, installed.Add(controller.ExtraNamesPolicyWarmup+time.Second))
	name := "person-granted-" + pod.UID[:8]
	approved(name, "legacy.cluster.local")
	s.start(t, startOptions{})
	csr := waitFinished(t, s.env.Client, planted)
	if c := conditionOf(csr, certificatesv1.CertificateFailed); c == nil || !strings.Contains(c.Message, "before ValidatingAdmissionPolicy") {
		t.Errorf("%s: conditions %+v, want Failed saying the annotation predates the policy", planted, csr.Status.Conditions)
	}
	csr = waitFinished(t, s.env.Client, name)
	if got, _ := outcome(csr); got != "issued" {
		t.Fatalf("outcome %s (conditions %+v), want issued", got, csr.Status.Conditions)
	}
	if leaf := parseChain(t, csr.Status.Certificate)[0]; !slices.Equal(leaf.DNSNames, []string{own, "legacy.cluster.local"}) {
		t.Errorf("leaf DNS names %q, want %q", leaf.DNSNames, []string{own, "legacy.cluster.local"})
	}
}

func annotate(t *testing.T, env *testenv.Env, name, extraNames string) {
	t.Helper()
	csrs := env.Client.CertificatesV1().CertificateSigningRequests()
	csr := must(csrs.Get(t.Context(), name, metav1.GetOptions{}))
	metav1.SetMetaDataAnnotation(&csr.ObjectMeta, approve.AnnotationExtraNames, extraNames)
	if _, err := csrs.Update(t.Context(), csr, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("annotating CSR %s: %v", name, err)
	}
}

// installExtraNamesPolicy applies the shipped admission policy that
// reserves the extra-names annotation to approvers
// (manifests/admission/extra-names.yaml), and removes it when the test ends
// (it is cluster-wide).
func installExtraNamesPolicy(t *testing.T, env *testenv.Env) time.Time {
	t.Helper()
	if _, err := manifests.Apply(t.Context(), env.Config, "controller-tests", "admission/extra-names.yaml"); err != nil {
		t.Fatal(err)
	}
	admission := env.Client.AdmissionregistrationV1()
	binding := must(admission.ValidatingAdmissionPolicyBindings().Get(t.Context(), approve.ExtraNamesPolicy, metav1.GetOptions{}))
	t.Cleanup(func() {
		_ = admission.ValidatingAdmissionPolicyBindings().Delete(context.Background(), approve.ExtraNamesPolicy, metav1.DeleteOptions{})
		_ = admission.ValidatingAdmissionPolicies().Delete(context.Background(), approve.ExtraNamesPolicy, metav1.DeleteOptions{})
	})
	return binding.CreationTimestamp.Time
}

// waitUntil waits for the wall clock to pass at: the controller compares
// creation times the API server stamps.
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return time.Now().After(at), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
