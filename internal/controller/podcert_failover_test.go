package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// TestStandbyTakesOverMidBurstOfPodCertificateRequests: leader election
// covers the pod certificate path too. The leader stops while the node's
// requests arrive; the standby issues the rest, and no request is issued
// twice (the API refuses any change to a finished request's status, and
// the replicas' counts of their own successful writes add up to at most
// the number of requests).
func TestStandbyTakesOverMidBurstOfPodCertificateRequests(t *testing.T) {
	s := newShippedSetup(t)
	replicas := map[string]*instance{
		"a": s.start(t, startOptions{identity: "a", createCA: true, podCertificates: true}),
		"b": s.start(t, startOptions{identity: "b", createCA: true, podCertificates: true}),
	}
	first := waitLeader(t, s, "")
	standby := map[string]string{"a": "b", "b": "a"}[first]

	ns := s.env.NewNamespace(t)
	createService(t, s.env, ns, service{name: "web"}, web)
	node := newKubelet(t, s.env)
	const pods, perPod = 4, 15
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		names []string
	)
	for i := range pods {
		pod := s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Name: fmt.Sprintf("web-%d", i), Labels: web,
			Volumes: []corev1.Volume{certVolume(approve.SignerName, "ECDSAP256", nil)}})
		wg.Go(func() {
			for range perPod {
				pcr, _, err := node.request(t, pod, approve.SignerName, nil)
				if err != nil {
					t.Errorf("kubelet creating the request: %v", err)
					return
				}
				mu.Lock()
				names = append(names, pcr.Name)
				mu.Unlock()
			}
		})
	}
	waitIssuedPCRs(t, s, ns, 10)
	replicas[first].shutdown(t)
	wg.Wait()
	if got := waitLeader(t, s, standby); got != standby {
		t.Fatalf("leader %s, want the standby %s", got, standby)
	}
	waitIssuedPCRs(t, s, ns, pods*perPod)

	series := `csr_agent_controller_certificates_issued_total{path="podcertificaterequest"}`
	a, _ := metric(replicas["a"].c, series)
	b, _ := metric(replicas["b"].c, series)
	if a+b > pods*perPod || a == 0 || b == 0 {
		t.Errorf("replica a issued %v, b %v: want at most %d in all, some by each", a, b, pods*perPod)
	}
	if len(names) != pods*perPod {
		t.Errorf("%d requests created, want %d", len(names), pods*perPod)
	}
}

// waitIssuedPCRs waits until at least n requests of ns are issued, and
// fails on any that is denied or failed.
func waitIssuedPCRs(t *testing.T, s *setup, ns string, n int) {
	t.Helper()
	var issued int
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := s.env.Client.CertificatesV1().PodCertificateRequests(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		issued = 0
		for i := range list.Items {
			switch c := terminal(&list.Items[i]); {
			case c == nil:
			case c.Type == certificatesv1.PodCertificateRequestConditionTypeIssued:
				issued++
			default:
				return false, fmt.Errorf("%s: %s %s: %s", list.Items[i].Name, c.Type, c.Reason, c.Message)
			}
		}
		return issued >= n, nil
	})
	if err != nil {
		t.Fatalf("%d requests issued, want %d: %v", issued, n, err)
	}
}
