package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

const kcmSigner = "kubernetes.io/kube-apiserver-client"

// kcmRaised are the kube-controller-manager flags of the raised-QPS run
// (its defaults are 20 and 30).
var kcmRaised = []string{"--kube-api-qps=500", "--kube-api-burst=1000"}

// benchBurst is benchmark 4: n pods request at once; the bundled
// controller approves (full policy check) and signs. Then, on the same
// control plane, n requests to kube-controller-manager's signer, approved by
// the requester right after creating them, at KCM's default client QPS and
// with it raised.
func benchBurst(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	n := 1000
	if short {
		n = 50
	}
	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	pods := make([]*localcluster.Pod, n)
	if err := parallel(n, 32, func(i int) error {
		p, err := e.newPod(ctx, ns)
		pods[i] = p
		return err
	}); err != nil {
		return nil, err
	}
	podsTook := time.Since(started).Round(100 * time.Millisecond)
	logf("%d pods with pod-bound tokens created in %s", n, podsTook)

	// Everything a requester needs is ready before the clock starts: keys
	// and requests. Not connections: each run gets new clients, each with
	// a transport of its own, so every pod dials, shakes hands and has its
	// token verified inside the measurement, as a starting pod's agent does.
	type request struct {
		pod  *localcluster.Pod
		ours []byte // a serving-certificate request for our signer
		kcm  []byte // a client-certificate request for the KCM runs
	}
	reqs := make([]request, n)
	for i, pod := range pods {
		dns := podDNSName(pod)
		csrPEM, err := csrFor(pkix.Name{CommonName: dns}, []string{dns}, []net.IP{net.ParseIP(pod.IPs[0])})
		if err != nil {
			return nil, err
		}
		clientPEM, err := csrFor(pkix.Name{CommonName: fmt.Sprintf("bench-client-%d", i)}, nil, nil)
		if err != nil {
			return nil, err
		}
		reqs[i] = request{pod: pod, ours: csrPEM, kcm: clientPEM}
	}
	ours := func(run string) func(clients []kubernetes.Interface) func(context.Context, int) error {
		return func(clients []kubernetes.Interface) func(context.Context, int) error {
			return func(ctx context.Context, i int) error {
				obj := csrObject(burstName(run, i), run, signerName, reqs[i].ours, certificatesv1.UsageServerAuth)
				_, err := clients[i].CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{})
				return err
			}
		}
	}
	// The KCM runs' CSRs are created by the same pod identities, so the API
	// server sees the same create load as in our run, and approved right
	// after by an administrator, as a pre-approving approver would.
	kcm := func(run string) func(clients []kubernetes.Interface) func(context.Context, int) error {
		return func(clients []kubernetes.Interface) func(context.Context, int) error {
			admin := e.cluster.Client.CertificatesV1().CertificateSigningRequests()
			return func(ctx context.Context, i int) error {
				obj := csrObject(burstName(run, i), run, kcmSigner, reqs[i].kcm, certificatesv1.UsageClientAuth)
				created, err := clients[i].CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{})
				if err != nil {
					return err
				}
				created.Status.Conditions = append(created.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Bench", Message: "pre-approved by the benchmark",
				})
				_, err = admin.UpdateApproval(ctx, created.Name, created, metav1.UpdateOptions{})
				return err
			}
		}
	}

	// A pod exists for a while before its agent runs (scheduling, image
	// pulls), so the controller's pod cache knows it. Before the clock, a
	// request from the last pod created, issued, shows that it does here.
	last, err := podClient(reqs[n-1].pod)
	if err != nil {
		return nil, err
	}
	if _, err := burstOnce(ctx, e, "warmup", 1, func(ctx context.Context, _ int) error {
		obj := csrObject(burstName("warmup", 0), "warmup", signerName, reqs[n-1].ours, certificatesv1.UsageServerAuth)
		_, err := last.CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("warm-up request: %w", err)
	}

	// Our signer and KCM's raised-QPS run go several rounds, alternating,
	// and each is represented by its median round: one burst on a shared
	// 2-core machine varies by a second or more. KCM at its default QPS is
	// bound by its own rate limiter (about 50 s every time): one round.
	rounds := 3
	if short {
		rounds = 1
	}
	type run struct {
		kind, label string
		do          func(clients []kubernetes.Interface) func(context.Context, int) error
	}
	schedule := []run{{"ours", "ours-1", ours("ours-1")}, {"kcm-default", "kcm-default", kcm("kcm-default")}}
	for r := 1; r <= rounds; r++ {
		label := fmt.Sprintf("kcm-raised-%d", r)
		schedule = append(schedule, run{"kcm-raised", label, kcm(label)})
		if r < rounds {
			label := fmt.Sprintf("ours-%d", r+1)
			schedule = append(schedule, run{"ours", label, ours(label)})
		}
	}
	all := map[string][]burstStats{}
	requests := map[time.Duration]string{} // API requests per certificate of each of our rounds, by its total
	for _, run := range schedule {
		if run.label == "kcm-raised-1" {
			logf("restarting kube-controller-manager with %v", kcmRaised)
			if err := e.cluster.RestartControllerManager(ctx, kcmRaised...); err != nil {
				return nil, err
			}
		}
		clients := make([]kubernetes.Interface, n)
		for i, r := range reqs {
			if clients[i], err = podClient(r.pod); err != nil {
				return nil, err
			}
		}
		before, err := readAPICounts(ctx, e.cluster.Client)
		if err != nil {
			return nil, err
		}
		s, err := burstOnce(ctx, e, run.label, n, run.do(clients))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", run.label, err)
		}
		after, err := readAPICounts(ctx, e.cluster.Client)
		if err != nil {
			return nil, err
		}
		if run.kind == "ours" {
			requests[s.total] = perRequest(before, after, n)
			logf("%s: API requests per certificate: %s", run.label, requests[s.total])
		}
		logf("%s: all %d issued in %s (p50 %s, p99 %s; all created after %s)", run.label, n, ms(s.total), ms(s.p50), ms(s.p99), ms(s.created))
		all[run.kind] = append(all[run.kind], s)
	}
	stats := map[string]burstStats{}
	for kind, rs := range all {
		stats[kind] = medianRun(rs)
	}
	o, d, h := stats["ours"], stats["kcm-default"], stats["kcm-raised"]
	r := &result{title: fmt.Sprintf("4. Rollout burst (%d requests at once)", n)}
	r.add("all issued vs KCM signer, default QPS (20)", ms(o.total), ms(d.total), ratio(float64(o.total), float64(d.total)),
		"≤ 0.10 (≥ 10× faster)", float64(o.total) <= 0.10*float64(d.total))
	r.add("all issued vs KCM signer, QPS 500 / burst 1000", ms(o.total), ms(h.total), ratio(float64(o.total), float64(h.total)),
		"≤ 1.25", float64(o.total) <= 1.25*float64(h.total))
	r.add("all issued / last create returned (vs KCM raised)", fmt.Sprintf("%.2f", floor(o)), fmt.Sprintf("%.2f", floor(h)), "–",
		"≤ 1.20", floor(o) <= 1.20)
	r.add("per request p50 (vs KCM default / raised)", ms(o.p50), ms(d.p50)+" / "+ms(h.p50), "–", "–", true)
	r.add("per request p99 (vs KCM default / raised)", ms(o.p99), ms(d.p99)+" / "+ms(h.p99), "–", "–", true)
	r.detail("- Rounds (all issued): csr-agent %s; KCM at QPS 500 %s; KCM at QPS 20 %s. The table shows each side's median round.",
		totals(all["ours"]), totals(all["kcm-raised"]), totals(all["kcm-default"]))
	r.detail("- csr-agent: %d simulated pods (created before the clock starts, %s), each creates one CSR for signer %s with its own pod-bound token, "+
		"all released at once from %d goroutines, after one warm-up request from the last pod created was issued (the controller's pod cache "+
		"has caught up, as it has when real pods start their containers); the controller (defaults: WORKERS 128, KUBE_API_QPS 1000, KUBE_API_BURST 3000) checks each against the live pod "+
		"(full policy), approves, and signs. Per request: from just before the create to the certificate seen on a watch.",
		n, podsTook, signerName, n)
	r.detail("- kube-controller-manager: %d CSRs for %s created by the same %d pod identities (so the API server sees the same create load "+
		"as in the csr-agent run) and approved right after by an administrator (as a pre-approving approver would), all released at once; "+
		"KCM's signer only signs (no policy). Its default client QPS is 20 (burst 30); the raised run "+
		"restarts it with %v. Same control plane, same run, interleaved with the csr-agent rounds.", n, kcmSigner, n, kcmRaised)
	r.detail("- In every run each simulated pod has a new client with a connection of its own, opened inside the measurement "+
		"(dial, TLS handshake, token verified by the API server), as a starting pod's agent does. The last create returned after "+
		"%s (csr-agent), %s and %s (KCM at QPS 20 and 500) in the median rounds: no signer can finish before that. The floor row divides "+
		"each side's all-issued time by that moment of its own round.", ms(o.created), ms(d.created), ms(h.created))
	r.detail("- API requests per certificate in csr-agent's median round (kube-apiserver's apiserver_request_total before and after, "+
		"every client, watches left out): %s.", requests[o.total])
	r.chart("burst-issued", "Certificates issued over time in the median round of each side", issuedChart(
		fmt.Sprintf("%d requests at once: issued over time", n),
		[]string{"csr-agent", "KCM signer, QPS 500", "KCM signer, QPS 20"}, []burstStats{o, h, d}))
	return r, nil
}

// floor is a round's all-issued time over the moment its last create
// returned: no signer can finish before that.
func floor(s burstStats) float64 {
	return float64(s.total) / float64(s.created)
}

type burstStats struct {
	total, p50, p99 time.Duration
	created         time.Duration   // until the last create (and approval, in the KCM runs) returned
	issued          []time.Duration // when each request was seen issued, from the release, sorted
}

// medianRun is the round with the median total time (of an even number,
// the slower of the middle two).
func medianRun(rs []burstStats) burstStats {
	sorted := slices.SortedFunc(slices.Values(rs), func(a, b burstStats) int { return cmp.Compare(a.total, b.total) })
	return sorted[len(sorted)/2]
}

func totals(rs []burstStats) string {
	var out []string
	for _, r := range rs {
		out = append(out, ms(r.total))
	}
	return strings.Join(out, ", ")
}

// podClient is a client for pod with a transport of its own (a distinct
// dialer keeps client-go from sharing its cached one), as a pod has.
func podClient(pod *localcluster.Pod) (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(pod.Config)
	cfg.Dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return kubernetes.NewForConfig(cfg)
}

func burstName(label string, i int) string {
	return fmt.Sprintf("burst-%s-%d", label, i)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func csrObject(name, run, signer string, csrPEM []byte, usage certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench-run": run}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: csrPEM, SignerName: signer, ExpirationSeconds: ptr.To(int32(24 * 3600)),
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, usage},
		},
	}
}

func csrFor(subject pkix.Name, dns []string, ips []net.IP) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// parallel runs f(0..n-1) on at most workers goroutines and returns the
// first error.
func parallel(n, workers int, f func(int) error) error {
	idx := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range idx {
				if err := f(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
