package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/approve"
)

func TestBudgetAllowsABurstThenOneDecisionPerInterval(t *testing.T) {
	b := newBudgets()
	now := time.Unix(1_000_000, 0)
	for i := range requestBurst {
		if wait := b.take("pod:a", now); wait != 0 {
			t.Fatalf("decision %d of the burst waits %s", i+1, wait)
		}
	}
	wait := b.take("pod:a", now)
	if wait <= 0 || wait > requestEvery {
		t.Fatalf("over budget: wait %s, want (0, %s]", wait, requestEvery)
	}
	// Being told to wait costs nothing: after the wait, one decision.
	if b.take("pod:a", now.Add(wait)) != 0 {
		t.Error("no decision after waiting as told")
	}
	if b.take("pod:a", now.Add(wait)) == 0 {
		t.Error("two decisions after one interval")
	}
	if b.take("pod:b", now) != 0 {
		t.Error("another requester is charged for the first one's requests")
	}
}

func TestBudgetsOfIdleRequestersAreForgotten(t *testing.T) {
	b := newBudgets()
	now := time.Unix(1_000_000, 0)
	for i := range 100 {
		b.take(fmt.Sprintf("pod:%d", i), now)
	}
	b.take("pod:late", now.Add(budgetIdle+time.Second))
	if len(b.m) != 1 {
		t.Errorf("%d budgets kept, want only the one still in use", len(b.m))
	}
}

// A pod creating requests in a loop has its decisions spread out, not
// denied: past its burst, its CSRs cost no API call until their turn.
func TestRequestsOverAPodsBudgetAreDeferredNotDenied(t *testing.T) {
	c, client := newTestController(t, true, testPod())
	clock := clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	c.opts.Clock = clock
	c.leading.Store(true)
	for i := range requestBurst + 3 {
		csr := testCSR(t)
		csr.Name = fmt.Sprintf("csr-%d", i)
		if err := c.informer.csrs.GetIndexer().Add(csr); err != nil {
			t.Fatal(err)
		}
		if _, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), csr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		client.ClearActions()
		if err := c.reconcile(t.Context(), csr.Name); err != nil {
			t.Fatal(err)
		}
		wrote := len(client.Actions()) > 0
		if inBurst := i < requestBurst; wrote != inBurst {
			t.Errorf("request %d: API calls %v, want %v", i+1, client.Actions(), inBurst)
		}
	}
	if v := testutil.ToFloat64(c.metrics.deferred); v != 3 {
		t.Errorf("decisions_deferred_total = %v, want 3", v)
	}
}

// A request not from a pod is denied from the request alone: it costs no
// read, and must not wait in the queue looking like a pod's pending request
// that a person might approve.
func TestRequestsNotFromAPodAreNeverDeferred(t *testing.T) {
	c, client := newTestController(t, true)
	c.opts.Clock = clocktesting.NewFakeClock(time.Unix(1_000_000, 0))
	for i := range requestBurst + 3 {
		csr := testCSR(t)
		csr.Name = fmt.Sprintf("user-%d", i)
		csr.Spec.Username, csr.Spec.Extra = "system:serviceaccount:shop:web", nil
		if err := c.informer.csrs.GetIndexer().Add(csr); err != nil {
			t.Fatal(err)
		}
		if _, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), csr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		client.ClearActions()
		if err := c.reconcile(t.Context(), csr.Name); err != nil {
			t.Fatal(err)
		}
		if got := writes(client); len(got) != 1 || got[0] != "approval:Denied/"+approve.ReasonNotPodBound {
			t.Errorf("request %d: writes %q, want one NotPodBound denial", i+1, got)
		}
	}
	if v := testutil.ToFloat64(c.metrics.deferred); v != 0 {
		t.Errorf("decisions_deferred_total = %v, want 0", v)
	}
}
