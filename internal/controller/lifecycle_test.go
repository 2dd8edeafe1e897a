package controller_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// TestDeniesRequestsWhosePodIsGoneReplacedOrEnding: the CSRs are created
// while their pods live and run; then, before the controller starts, one
// pod is deleted, one deleted and re-created under the same name, one
// starts terminating and one finishes. (Starting the controller afterwards
// makes its caches show the pods' last state: a running controller decides
// from caches a few milliseconds behind the API.)
func TestDeniesRequestsWhosePodIsGoneReplacedOrEnding(t *testing.T) {
	s := newSetup(t)
	ns := s.env.NewNamespace(t)
	createService(t, s.env, ns, service{name: "web"}, web)
	req := dns("web." + ns + ".svc")
	pods := map[string]*testenv.Pod{}
	csrs := map[string]string{} // pod name → CSR name
	for _, name := range []string{"deleted", "replaced", "terminating", "finished"} {
		pods[name] = s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Name: name, Labels: web})
		csrs[name] = mustCreateCSR(t, must(kubernetes.NewForConfig(pods[name].Config)), s.signer, req).Name
	}
	deletePod(t, s.env, pods["deleted"])
	deletePod(t, s.env, pods["replaced"])
	again := s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Name: "replaced", Labels: web})
	if again.UID == pods["replaced"].UID {
		t.Fatal("re-created pod kept its UID")
	}
	// Without a kubelet a gracefully deleted pod stays terminating.
	grace := metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(300))}
	if err := s.env.Client.CoreV1().Pods(ns).Delete(t.Context(), "terminating", grace); err != nil {
		t.Fatal(err)
	}
	setPhase(t, s.env, pods["finished"], corev1.PodSucceeded)

	s.start(t, startOptions{createCA: true})
	for pod, want := range map[string]string{
		"deleted": approve.ReasonPodNotFound, "replaced": approve.ReasonPodUIDMismatch,
		"terminating": approve.ReasonPodTerminating, "finished": approve.ReasonPodFinished,
	} {
		if got, _ := outcome(waitFinished(t, s.env.Client, csrs[pod])); got != "Denied:"+want {
			t.Errorf("CSR of pod %s: %s, want Denied:%s", pod, got, want)
		}
	}
	waitForEvent(t, s.env, again, approve.ReasonPodUIDMismatch)
	waitForEvent(t, s.env, pods["terminating"], approve.ReasonPodTerminating)
}

// TestSignsWhatAPersonApprovedWithinTheTemplateRules: approval by a person
// (here the cluster admin, before the controller runs) of a request from an
// identity that is not a pod is authority for its names, but not for
// anything the certificate template forbids nor for a name outside the
// generated CA's name constraints; for a pod's request it never extends the
// pod's names, and a pod that no longer exists gets nothing.
func TestSignsWhatAPersonApprovedWithinTheTemplateRules(t *testing.T) {
	s := newSetup(t)
	admin := s.env.Client
	pod := s.env.NewPod(t, testenv.PodOptions{Labels: web})
	gone := s.env.NewPod(t, testenv.PodOptions{Namespace: pod.Namespace, Labels: web})
	podClient := must(kubernetes.NewForConfig(pod.Config))
	legacyReq := request{
		tmpl: &x509.CertificateRequest{Subject: pkix.Name{CommonName: "legacy.cluster.local"}, DNSNames: []string{"legacy.cluster.local"}},
		// keyEncipherment means nothing for an ECDSA key: not granted.
		usages: append([]certificatesv1.KeyUsage{certificatesv1.UsageKeyEncipherment}, serverUsages...),
		exp:    ptr.To(int32(3600)),
	}
	legacy := mustCreateCSR(t, admin, s.signer, legacyReq)
	outside := mustCreateCSR(t, podClient, s.signer, dns("web.example.com"))
	outsideCA := mustCreateCSR(t, admin, s.signer, dns("legacy.example.com"))
	wildcard := mustCreateCSR(t, admin, s.signer, dns("*.example.com"))
	orphan := mustCreateCSR(t, must(kubernetes.NewForConfig(gone.Config)), s.signer, dns("web."+pod.Namespace+".svc"))
	for _, csr := range []*certificatesv1.CertificateSigningRequest{legacy, outside, outsideCA, wildcard, orphan} {
		approveAsPerson(t, admin, csr)
	}
	deletePod(t, s.env, gone)

	s.start(t, startOptions{createCA: true})
	for name, want := range map[string]string{
		wildcard.Name:  "Failed:" + approve.ReasonWildcardNotAllowed,
		orphan.Name:    "Failed:" + approve.ReasonPodNotFound,
		outside.Name:   "Failed:" + approve.ReasonDNSNameNotAllowed,
		outsideCA.Name: "Failed:" + controller.ReasonSigningFailed,
	} {
		if got, _ := outcome(waitFinished(t, admin, name)); got != want {
			t.Errorf("CSR %s: %s, want %s", name, got, want)
		}
	}
	roots, _ := trustBundle(t, admin, s.signer)
	for name, serverName := range map[string]string{legacy.Name: "legacy.cluster.local"} {
		csr := waitFinished(t, admin, name)
		if got, _ := outcome(csr); got != "issued" {
			t.Fatalf("CSR %s: %s, want issued", name, got)
		}
		chain := parseChain(t, csr.Status.Certificate)
		if err := serveTLS(t, chain, keyP256(), serverName, roots); err != nil {
			t.Errorf("TLS handshake for %s: %v", serverName, err)
		}
		leaf := chain[0]
		if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s: key usage %b, want digitalSignature only", serverName, leaf.KeyUsage)
		}
		if lifetime := leaf.NotAfter.Sub(leaf.NotBefore); name == legacy.Name && lifetime > time.Hour+10*time.Minute {
			t.Errorf("%s: lifetime %s, want the hour asked for (plus the backdating)", serverName, lifetime)
		}
	}
}

// TestRetriesWhileTheCASecretIsMissing: without CREATE_CA the controller
// signs nothing until an operator provides the CA, then catches up; the
// waiting request is neither denied nor failed.
func TestRetriesWhileTheCASecretIsMissing(t *testing.T) {
	s := newSetup(t)
	in := s.start(t, startOptions{})
	pod := s.env.NewPod(t, testenv.PodOptions{Labels: web})
	createService(t, s.env, pod.Namespace, service{name: "web"}, web)
	csr := mustCreateCSR(t, must(kubernetes.NewForConfig(pod.Config)), s.signer, dns("web."+pod.Namespace+".svc"))
	waitReady(t, in, false)
	s.putCA(t, "operator CA", 0)
	if got, _ := outcome(waitFinished(t, s.env.Client, csr.Name)); got != "issued" {
		t.Fatalf("outcome %s, want issued once the CA exists", got)
	}
	waitReady(t, in, true)
}

func approveAsPerson(t *testing.T, client kubernetes.Interface, csr *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "KubectlApprove", Message: "approved by an administrator",
	})
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(t.Context(), csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("approving %s: %v", csr.Name, err)
	}
}

// deletePod deletes the pod at once (no kubelet would confirm a graceful
// deletion) and waits until it is gone.
func deletePod(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
	t.Helper()
	pods := env.Client.CoreV1().Pods(pod.Namespace)
	if err := pods.Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return err == nil && string(got.UID) != pod.UID, err
	})
	if err != nil {
		t.Fatalf("waiting for pod %s/%s to be deleted: %v", pod.Namespace, pod.Name, err)
	}
}

// waitReady waits until /readyz answers as wanted.
func waitReady(t *testing.T, in *instance, want bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return probe(in.c, "/readyz") == want, nil
	})
	if err != nil {
		t.Fatalf("/readyz never became %v", want)
	}
}
