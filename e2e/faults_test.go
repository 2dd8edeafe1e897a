//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// The StatefulSet's agents hold 24h certificates: a restarted agent finds
// its valid pair and must not ask for another.
func TestKilledAgentIsRestartedKeepsItsValidPairAndMakesNoCSR(t *testing.T) {
	requireStore(t)
	pod := findPod(t, "app=store")
	agent := container(pod, "csr-agent")
	// From now on: a watch without a version would replay existing CSRs.
	existing, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(t.Context(), metav1.ListOptions{ResourceVersion: existing.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := node.KillContainer(agent.ContainerID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "the kubelet to restart "+pod.Name+"'s agent and the pod to be ready", func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(examplesNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s := container(*p, "csr-agent")
		if s.RestartCount <= agent.RestartCount || s.Started == nil || !*s.Started {
			return false, fmt.Errorf("agent restarts %d, started %v", s.RestartCount, s.Started)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" {
				return c.Status == "True", nil
			}
		}
		return false, nil
	})
	verifyPod(t, pod, pod.Name+".store."+examplesNamespace+".svc.cluster.local")
	for {
		select {
		case ev := <-w.ResultChan():
			if csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest); ok && ev.Type == watch.Added && strings.Contains(csr.Name, pod.Name) {
				t.Errorf("restarted agent asked for a new certificate: CSR %s", csr.Name)
			}
			continue
		default:
		}
		break
	}
}

func findPod(t *testing.T, selector string) corev1.Pod {
	t.Helper()
	list := pods(t, examplesNamespace, selector)
	if len(list) == 0 {
		t.Fatalf("no running pod %s", selector)
	}
	return list[0]
}
