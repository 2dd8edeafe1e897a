package controller_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// TestStandbyTakesOverMidBurstAndIssuesEachCSROnce runs two replicas,
// stops the leader while a burst of CSRs is being created and processed,
// and checks that the standby finishes the burst and that every CSR's
// certificate was written exactly once.
func TestStandbyTakesOverMidBurstAndIssuesEachCSROnce(t *testing.T) {
	s := newSetup(t)
	issued := watchIssuance(t, s)
	replicas := map[string]*instance{
		"a": s.start(t, startOptions{identity: "a", createCA: true}),
		"b": s.start(t, startOptions{identity: "b", createCA: true}),
	}
	first := waitLeader(t, s, "")
	standby := map[string]string{"a": "b", "b": "a"}[first]

	ns := s.env.NewNamespace(t)
	createService(t, s.env, ns, service{name: "web"}, web)
	const pods, perPod = 5, 10
	var wg sync.WaitGroup
	for i := range pods {
		pod := s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Name: fmt.Sprintf("web-%d", i), Labels: web})
		client := must(kubernetes.NewForConfig(pod.Config))
		wg.Go(func() {
			for range perPod {
				if _, err := createCSR(t, client, s.signer, dns("web."+ns+".svc")); err != nil {
					t.Errorf("creating CSR: %v", err)
					return
				}
			}
		})
	}
	issued.waitAtLeast(t, 10)
	replicas[first].shutdown(t)
	wg.Wait()
	if got := waitLeader(t, s, standby); got != standby {
		t.Fatalf("leader %s, want the standby %s", got, standby)
	}
	issued.waitAtLeast(t, pods*perPod)

	for name, n := range issued.counts() {
		if n != 1 {
			t.Errorf("CSR %s: certificate written %d times", name, n)
		}
	}
	// Each replica counts the certificates it saw stored. A write of the
	// stopped leader can land while its response is lost to the stop, so
	// the sum may fall short of the total, never exceed it.
	a, _ := metric(replicas["a"].c, `csr_agent_controller_certificates_issued_total{path="csr"}`)
	b, _ := metric(replicas["b"].c, `csr_agent_controller_certificates_issued_total{path="csr"}`)
	if a+b > pods*perPod || a == 0 || b == 0 {
		t.Errorf("replica a issued %v, b %v: want at most %d in all, some by each", a, b, pods*perPod)
	}
}

// TestLosingTheLeaseStopsTheLeader: when another holder takes the Lease
// (the leader was partitioned from the API server long enough), the old
// leader stops working and Run returns ErrLeadershipLost, so the process
// restarts as a standby.
func TestLosingTheLeaseStopsTheLeader(t *testing.T) {
	s := newSetup(t)
	in := s.start(t, startOptions{identity: "a", createCA: true})
	waitLeader(t, s, "a")
	leases := s.env.Client.CoordinationV1().Leases(s.ns)
	lease, err := leases.Get(t.Context(), "controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lease.Spec.HolderIdentity = ptr.To("usurper")
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(3600))
	lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if _, err := leases.Update(t.Context(), lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-in.done:
		close(in.done)
		if !errors.Is(err, controller.ErrLeadershipLost) {
			t.Fatalf("Run returned %v, want ErrLeadershipLost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run still running 30s after losing the Lease")
	}
	if v, _ := metric(in.c, "csr_agent_controller_leader"); v != 0 {
		t.Errorf("leader metric %v after losing the Lease", v)
	}
}

// waitLeader waits until the Lease names a holder (want, if not empty)
// and returns it.
func waitLeader(t *testing.T, s *setup, want string) string {
	t.Helper()
	var holder string
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lease, err := s.env.Client.CoordinationV1().Leases(s.ns).Get(ctx, cmp.Or(s.lease, "controller"), metav1.GetOptions{})
		if err != nil {
			return false, nil // not created yet
		}
		holder = ptr.Deref(lease.Spec.HolderIdentity, "")
		return holder != "" && (want == "" || holder == want), nil
	})
	if err != nil {
		t.Fatalf("waiting for leader %q: %v (holder %q)", want, err, holder)
	}
	return holder
}

// issuance counts, per CSR, the changes of status.certificate seen by a
// watch of the signer's CSRs.
type issuance struct {
	mu sync.Mutex
	n  map[string]int
}

func watchIssuance(t *testing.T, s *setup) *issuance {
	t.Helper()
	is := &issuance{n: map[string]int{}}
	lw := cache.NewFilteredListWatchFromClient(s.env.Client.CertificatesV1().RESTClient(), "certificatesigningrequests", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", s.signer).String()
	})
	inf := cache.NewSharedIndexInformer(lw, &certificatesv1.CertificateSigningRequest{}, 0, cache.Indexers{})
	count := func(old, cur *certificatesv1.CertificateSigningRequest) {
		if len(cur.Status.Certificate) > 0 && (old == nil || !bytes.Equal(old.Status.Certificate, cur.Status.Certificate)) {
			is.mu.Lock()
			is.n[cur.Name]++
			is.mu.Unlock()
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { count(nil, obj.(*certificatesv1.CertificateSigningRequest)) },
		UpdateFunc: func(old, cur any) {
			count(old.(*certificatesv1.CertificateSigningRequest), cur.(*certificatesv1.CertificateSigningRequest))
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { inf.RunWithContext(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if !cache.WaitForCacheSync(t.Context().Done(), inf.HasSynced) {
		t.Fatal("issuance watch did not sync")
	}
	return is
}

func (is *issuance) counts() map[string]int {
	is.mu.Lock()
	defer is.mu.Unlock()
	out := make(map[string]int, len(is.n))
	for k, v := range is.n {
		out[k] = v
	}
	return out
}

func (is *issuance) waitAtLeast(t *testing.T, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return len(is.counts()) >= n, nil
	})
	if err != nil {
		t.Fatalf("%d CSRs issued, want %d", len(is.counts()), n)
	}
}
