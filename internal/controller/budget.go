package controller

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// The budget of one requester: requestBurst decisions at once, then one
// every requestEvery. Any pod can create CSRs as fast as the API server lets
// it, and every decision costs the API server reads (the fresh pod and
// Service reads, or the live list that confirms a denial) and a write, at
// the controller's workload-high priority: without a bound, one hostile pod
// could turn its own low-priority creates into high-priority load. A
// legitimate agent makes one request per renewal, or one per container
// restart (which the kubelet backs off from 10 s), so it never waits.
const (
	requestBurst = 5
	requestEvery = 2 * time.Second
	// budgetIdle is how long an unused budget is kept; by then it has
	// refilled, and forgetting it changes nothing.
	budgetIdle = requestBurst * requestEvery
)

// budgets hands out decisions per requesting pod, by UID: the UID its token
// was bound to, which the API server wrote into the CSR (or the kubelet
// into a PodCertificateRequest). Over budget, a request is not denied,
// which would turn load into a wrong answer, but decided later. A request
// not from a pod is not charged: it is denied (NotPodBound) from the
// request alone, with no read, and must not linger pending where a person
// could take it for a pod's and approve it.
type budgets struct {
	mu        sync.Mutex
	m         map[string]*budget
	lastPrune time.Time
}

type budget struct {
	limiter *rate.Limiter
	used    time.Time
}

func newBudgets() *budgets { return &budgets{m: map[string]*budget{}} }

// requesterKey is whose budget a CSR's decision is charged to; "" for
// none.
func requesterKey(csr *certificatesv1.CertificateSigningRequest) string {
	if who, err := approve.RequesterOf(csr); err == nil {
		return podKey(who.PodUID)
	}
	return ""
}

func podKey(uid types.UID) string { return "pod:" + string(uid) }

// take charges one decision to key at now and returns 0, or, when the budget
// is spent, charges nothing and returns how long to wait. key "" is never
// charged.
func (b *budgets) take(key string, now time.Time) time.Duration {
	if key == "" {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastPrune) > budgetIdle {
		for k, e := range b.m {
			if now.Sub(e.used) > budgetIdle {
				delete(b.m, k)
			}
		}
		b.lastPrune = now
	}
	e, ok := b.m[key]
	if !ok {
		e = &budget{limiter: rate.NewLimiter(rate.Every(requestEvery), requestBurst)}
		b.m[key] = e
	}
	r := e.limiter.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		return wait
	}
	e.used = now
	return 0
}
