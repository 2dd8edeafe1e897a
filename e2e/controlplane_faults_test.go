//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csr-agent/csr-agent/internal/approve"
)

const (
	controllerDeployment = "csr-agent-controller"
	// The shipped LEASE_NAME.
	controllerLease = "csr-agent-controller"
)

// 30 pods start at once; as soon as the leader has issued the first
// certificate it is deleted (SIGTERM, as a drain or a rollout of the
// controller would). The other replica takes over the rest: every pod gets
// its certificate from one CSR, none is denied, no agent has to retry.
func TestControllerLeaderDeletedDuringARolloutOf30PodsEveryPodGetsItsCertificate(t *testing.T) {
	requireController(t)
	const replicas = 30
	rec := recordCSRs(t, "burst")
	agentDeployment(t, "burst", replicas)

	var leader string
	eventually(t, 2*time.Minute, "the first certificate of the burst", func(ctx context.Context) (bool, error) {
		if rec.issued() == 0 {
			return false, nil
		}
		lease, err := client.CoordinationV1().Leases(controllerNamespace).Get(ctx, controllerLease, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return false, fmt.Errorf("lease %s has no holder", controllerLease)
		}
		leader = *lease.Spec.HolderIdentity
		return true, nil
	})
	issuedBefore := rec.issued()
	if err := client.CoreV1().Pods(controllerNamespace).Delete(t.Context(), leader, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the leader %s: %v", leader, err)
	}
	if issuedBefore >= replicas {
		t.Errorf("every certificate was issued before the leader went: the failover was not tested")
	}
	t.Logf("deleted the leader %s after %d of %d certificates", leader, issuedBefore, replicas)

	uids := waitAgentPods(t, "burst", replicas, 4*time.Minute)
	eventually(t, 30*time.Second, "every CSR of the burst to be seen", func(context.Context) (bool, error) {
		if problems := rec.check(uids); len(problems) > 0 {
			return false, fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return true, nil
	})
	lease, err := client.CoordinationV1().Leases(controllerNamespace).Get(t.Context(), controllerLease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h == nil || *h == leader {
		t.Errorf("the lease is still held by the deleted leader %s", leader)
	}
	t.Logf("new leader %s; %d certificates issued after the failover", *lease.Spec.HolderIdentity, rec.issued()-issuedBefore)
	// The suite's later tests expect both replicas.
	waitDeployment(t, controllerNamespace, controllerDeployment, 2*time.Minute)
}

// A pod's agent waits for its CSR (no controller runs); the API server is
// stopped for a while and started again on the same address. The agent
// makes no second CSR, and once the controller is back the pod starts with
// a valid pair and its CSR is cleaned up.
func TestAPIServerRestartedWhileAPodWaitsThePodStartsWithOneCSR(t *testing.T) {
	requireController(t)
	scaleController(t, 0)
	t.Cleanup(func() {
		// If the test ends early; t.Context() is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := setControllerReplicas(ctx, 2); err != nil {
			t.Error(err)
		}
	})
	agentDeployment(t, "waiter", 1)

	var pod corev1.Pod
	eventually(t, 2*time.Minute, "the waiting pod's CSR", func(ctx context.Context) (bool, error) {
		list := podsOf(t, "app=waiter")
		if len(list) != 1 {
			return false, fmt.Errorf("%d waiter pods", len(list))
		}
		pod = list[0]
		csrs, err := csrsOf(ctx, pod.UID)
		return len(csrs) == 1, err
	})

	if err := node.Cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// The outage itself, not a synchronisation: long enough that every
	// watch breaks and reconnects fail, short of the node lifecycle
	// controller's 40s grace before it would mark the node NotReady.
	select {
	case <-t.Context().Done():
	case <-time.After(15 * time.Second):
	}
	if err := node.Cluster.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	csrs, err := csrsOf(t.Context(), pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(csrs) != 1 {
		t.Fatalf("after the API server restart the pod has %d CSRs, want the one it made before: %v", len(csrs), csrs)
	}

	scaleController(t, 2)
	waitAgentPods(t, "waiter", 1, 3*time.Minute)
	ip := podsOf(t, "app=waiter")[0].Status.PodIP
	out, ok := clientPod(t, examplesNamespace, "verify-waiter", time.Minute, "-addr="+ip+":8443", "-server-name="+ip)
	if !ok {
		t.Fatalf("client pod could not verify the waiter's pair for %s:\n%s", ip, out)
	}
	eventually(t, 30*time.Second, "the waiter's CSR to be deleted once stored", func(ctx context.Context) (bool, error) {
		csrs, err := csrsOf(ctx, pod.UID)
		if len(csrs) > 0 {
			return false, fmt.Errorf("CSRs left: %v", csrs)
		}
		return err == nil, err
	})
}

// podsOf lists the examples namespace's pods matching selector, whatever
// their phase.
func podsOf(t *testing.T, selector string) []corev1.Pod {
	t.Helper()
	list, err := client.CoreV1().Pods(examplesNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// csrsOf names the CSRs a pod's agent made (the API server records the
// pod-bound token's pod UID in spec.extra).
func csrsOf(ctx context.Context, uid types.UID) ([]string, error) {
	list, err := client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range list.Items {
		if v := c.Spec.Extra[approve.ExtraPodUID]; len(v) == 1 && v[0] == string(uid) {
			names = append(names, c.Name)
		}
	}
	return names, nil
}

// scaleController sets the controller Deployment's replicas and waits for
// them.
func scaleController(t *testing.T, replicas int32) {
	t.Helper()
	if err := setControllerReplicas(t.Context(), replicas); err != nil {
		t.Fatal(err)
	}
	if replicas > 0 {
		waitDeployment(t, controllerNamespace, controllerDeployment, 2*time.Minute)
		return
	}
	eventually(t, time.Minute, "the controller's pods to end", func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Pods(controllerNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=csr-agent-controller"})
		if err != nil {
			return false, err
		}
		return len(list.Items) == 0, nil
	})
}

func setControllerReplicas(ctx context.Context, replicas int32) error {
	s, err := client.AppsV1().Deployments(controllerNamespace).GetScale(ctx, controllerDeployment, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("scaling the controller: %w", err)
	}
	s.Spec.Replicas = replicas
	if _, err := client.AppsV1().Deployments(controllerNamespace).UpdateScale(ctx, controllerDeployment, s, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("scaling the controller: %w", err)
	}
	return nil
}
