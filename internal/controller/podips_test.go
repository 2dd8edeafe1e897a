package controller_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// On a real node, an agent reads its pod IPs from the downward API before
// the kubelet has written them to the Pod object. Its request must wait for
// them, not be denied; once they are there it is issued.
func TestARequestForPodIPsNotYetInThePodsStatusWaitsForThemAndIsIssued(t *testing.T) {
	s := newSetup(t)
	in := s.start(t, startOptions{createCA: true})
	waitReady(t, in, true)
	pod := s.env.NewPod(t, testenv.PodOptions{IPs: []string{}})
	const ip = "10.246.0.9"
	name := "podips-" + pod.UID[:8]
	createNamedCSR(t, must(kubernetes.NewForConfig(pod.Config)), s.signer, name, request{tmpl: &x509.CertificateRequest{
		DNSNames:    []string{"10-246-0-9." + pod.Namespace + ".pod.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}})
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		csr, err := s.env.Client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got, done := outcome(csr); done {
			return false, fmt.Errorf("decided before the pod's IPs were known: %s", got)
		}
		return controller.Retries(in.c, name) > 0, nil
	})
	if err != nil {
		t.Fatalf("waiting for the controller to retry the request: %v", err)
	}
	// What the kubelet's status update brings.
	patch := `{"status":{"podIP":"` + ip + `","podIPs":[{"ip":"` + ip + `"}]}}`
	if _, err := s.env.Client.CoreV1().Pods(pod.Namespace).Patch(t.Context(), pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	if got, _ := outcome(waitFinished(t, s.env.Client, name)); got != "issued" {
		t.Errorf("outcome %s, want issued", got)
	}
}
