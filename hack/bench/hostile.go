package main

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"sync"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// benchHostile is benchmark 5: a rollout of n pods, each requesting its
// certificate at once, alone and while hostile pods create requests for
// names they do not own as fast as they can. Every such request is denied
// only after a live read of the pod and its namespace's Services (its
// denial depends on them), at the controller's workload-high priority; the
// per-pod decision budget is what keeps them from slowing the rollout.
func benchHostile(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	n, attackers, each := 1000, 10, 100
	if short {
		n, attackers, each = 50, 2, 10
	}
	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return nil, err
	}
	pods := make([]*localcluster.Pod, n+attackers)
	if err := parallel(len(pods), 32, func(i int) error {
		p, err := e.newPod(ctx, ns)
		pods[i] = p
		return err
	}); err != nil {
		return nil, err
	}
	rollout, hostile := pods[:n], pods[n:]
	reqs := make([][]byte, n)
	for i, pod := range rollout {
		dns := podDNSName(pod)
		if reqs[i], err = csrFor(pkix.Name{CommonName: dns}, []string{dns}, []net.IP{net.ParseIP(pod.IPs[0])}); err != nil {
			return nil, err
		}
	}
	// A name outside the cluster: denied as DNSNameNotAllowed, a reason
	// that depends on the pod's Services, so each one costs a live read.
	bad, err := csrFor(pkix.Name{}, []string{"google.com"}, nil)
	if err != nil {
		return nil, err
	}
	if _, err := burstOnce(ctx, e, "hostile-warmup", 1, func(ctx context.Context, _ int) error {
		c, err := podClient(rollout[n-1])
		if err != nil {
			return err
		}
		_, err = c.CertificatesV1().CertificateSigningRequests().Create(ctx,
			csrObject(burstName("hostile-warmup", 0), "hostile-warmup", signerName, reqs[n-1], certificatesv1.UsageServerAuth), metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("warm-up request: %w", err)
	}

	rounds := 3
	if short {
		rounds = 1
	}
	var clean, attacked []burstStats
	var hostileCreated int
	for r := 1; r <= rounds; r++ {
		for _, underAttack := range []bool{false, true} {
			label := fmt.Sprintf("rollout-%d", r)
			if underAttack {
				label = fmt.Sprintf("attacked-%d", r)
			}
			clients := make([]kubernetes.Interface, n)
			for i, pod := range rollout {
				if clients[i], err = podClient(pod); err != nil {
					return nil, err
				}
			}
			stopAttack := func() int { return 0 }
			if underAttack {
				stopAttack = attack(ctx, hostile, label+"-hostile", bad, each)
			}
			s, err := burstOnce(ctx, e, label, n, func(ctx context.Context, i int) error {
				_, err := clients[i].CertificatesV1().CertificateSigningRequests().Create(ctx,
					csrObject(burstName(label, i), label, signerName, reqs[i], certificatesv1.UsageServerAuth), metav1.CreateOptions{})
				return err
			})
			created := stopAttack()
			if err := e.cluster.Client.CertificatesV1().CertificateSigningRequests().DeleteCollection(ctx, metav1.DeleteOptions{},
				metav1.ListOptions{LabelSelector: "bench-run=" + label + "-hostile"}); err != nil {
				return nil, err
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", label, err)
			}
			logf("%s: all %d issued in %s (p50 %s, p99 %s); hostile requests created meanwhile: %d", label, n, ms(s.total), ms(s.p50), ms(s.p99), created)
			if underAttack {
				attacked, hostileCreated = append(attacked, s), hostileCreated+created
			} else {
				clean = append(clean, s)
			}
		}
	}
	c, a := medianRun(clean), medianRun(attacked)
	r := &result{title: fmt.Sprintf("8. Rollout under hostile requests (%d pods, %d hostile requests from %d pods)", n, attackers*each, attackers)}
	r.add("all issued, under attack vs alone", ms(a.total), ms(c.total), ratio(float64(a.total), float64(c.total)),
		"≤ 1.20", float64(a.total) <= 1.2*float64(c.total))
	r.add("per request p99, under attack vs alone", ms(a.p99), ms(c.p99), ratio(float64(a.p99), float64(c.p99)), "–", true)
	r.detail("- Rounds (all issued): alone %s; under attack %s. The table shows each side's median round.", totals(clean), totals(attacked))
	r.detail("- %d simulated pods each create one CSR for their own pod-IP name at once, as in benchmark 4. Under attack, %d other pods of the "+
		"same namespace start at the same moment to create %d CSRs each, one after another as fast as the API server answers, for google.com: "+
		"each is denied DNSNameNotAllowed, a denial the controller confirms with a live read of the pod and of every Service of the namespace. "+
		"%d hostile requests were created during the attacked rounds in all. The controller decides at most 5 requests of one pod at once and then "+
		"one every 2 s; the rest wait in its queue (csr_agent_controller_decisions_deferred_total) and are removed after each round.",
		n, attackers, each, hostileCreated)
	return r, nil
}

// attack makes each hostile pod create up to each requests, one after
// another; the returned func stops it and reports how many were created.
func attack(ctx context.Context, pods []*localcluster.Pod, label string, request []byte, each int) func() int {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for p, pod := range pods {
		wg.Go(func() {
			c, err := podClient(pod)
			if err != nil {
				return
			}
			for i := range each {
				obj := csrObject(fmt.Sprintf("%s-%d-%d", label, p, i), label, signerName, request, certificatesv1.UsageServerAuth)
				if _, err := c.CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
					return
				}
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	return func() int {
		cancel()
		wg.Wait()
		return created
	}
}
