//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selfSubjectReview is what the example's curl POSTs: the API server
// answers with the user it authenticated.
const selfSubjectReview = `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`

const selfSubjectReviewPath = "/apis/authentication.k8s.io/v1/selfsubjectreviews"

// The client-certificate example asks kubernetes.io/kube-apiserver-client
// for a certificate a person approves; here the test is that person, and
// kube-controller-manager signs. Its reporter container is curl in the
// example; tls-client does what that curl does: it presents the pod's
// certificate to the API server (through the `kubernetes` Service, as in
// the example), which verifies it against its client CA and names the user.
func TestClientCertificateExampleIsApprovedAndAcceptedByTheAPIServerAClientWithoutOneIsRefused(t *testing.T) {
	requireController(t) // the agent's ClusterRoles ship with manifests/
	const user = "system:serviceaccount:" + examplesNamespace + ":reporter"
	apiServer := kubernetesService(t)
	patch := fmt.Sprintf(`patches:
- target: {kind: Deployment, name: reporter}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/image, value: %s}
    - {op: replace, path: /spec/template/spec/containers/0/command, value: [/tls-client, -addr=%s, -server-name=kubernetes.default.svc, -ca=/var/run/kube-root-ca/ca.crt, -cert-dir=/var/run/csr-agent, -path=%s, '-post=%s', -count=0, -interval=2s, -print-ok]}
`, clientImage, apiServer, selfSubjectReviewPath, selfSubjectReview)
	apply(t, overlay(t, "examples/client-certificate", patch))

	var approved string
	eventually(t, 2*time.Minute, "the reporter's CSR, to approve it", func(ctx context.Context) (bool, error) {
		list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, csr := range list.Items {
			if csr.Spec.Username != user || csr.Spec.SignerName != certificatesv1.KubeAPIServerClientSignerName || len(csr.Status.Conditions) > 0 {
				continue
			}
			// What `kubectl certificate approve` does.
			csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
				Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
				Reason: "KubectlApprove", Message: "approved by the end-to-end test",
			})
			if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, &csr, metav1.UpdateOptions{}); err != nil {
				return false, err
			}
			approved = csr.Name
			return true, nil
		}
		return false, fmt.Errorf("no pending CSR of %s among %d", user, len(list.Items))
	})
	t.Logf("approved CSR %s", approved)
	waitDeployment(t, examplesNamespace, "reporter", 2*time.Minute)
	pod := findPod(t, "app=reporter")
	want := `\"username\":\"csr-agent-examples:reporter\"`
	eventually(t, time.Minute, "the API server to name the reporter's certificate user", func(ctx context.Context) (bool, error) {
		out := logs(t, examplesNamespace, pod.Name, "reporter")
		if strings.Contains(out, want) {
			return true, nil
		}
		return false, fmt.Errorf("reporter log:\n%s", out)
	})

	// The same request without a certificate: the API server knows no user.
	out, ok := clientPodTrusting(t, "no-client-certificate", "kube-root-ca.crt", "-addr="+apiServer,
		"-server-name=kubernetes.default.svc", "-path="+selfSubjectReviewPath, "-post="+selfSubjectReview)
	if ok || !(strings.Contains(out, "401 Unauthorized") || strings.Contains(out, "403 Forbidden")) {
		t.Errorf("a client without a certificate was not refused:\n%s", out)
	}
	t.Logf("without a certificate: %s", strings.SplitN(out, "\n", 2)[0])
}

// kubernetesService is the `kubernetes` Service's cluster IP and port,
// which in-cluster clients dial.
func kubernetesService(t *testing.T) string {
	t.Helper()
	svc, err := client.CoreV1().Services(metav1.NamespaceDefault).Get(t.Context(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(svc.Spec.Ports[0].Port))
}

func clientPodTrusting(t *testing.T, name, caConfigMap string, args ...string) (string, bool) {
	t.Helper()
	startClientPodTrusting(t, examplesNamespace, name, caConfigMap, args...)
	return waitClientPod(t, examplesNamespace, name, time.Minute)
}
