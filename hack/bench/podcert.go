package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// benchPodCertificates is benchmark 7: n PodCertificateRequests at once
// (one status write each) against n CSRs at once (approval, then
// certificate), from the same pods in the same run, alternating rounds:
// time until all are issued.
func benchPodCertificates(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	n := 1000
	if short {
		n = 50
	}
	const podsPerNode = 100
	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return nil, err
	}
	// NodeRestriction lets the node ask only for pods that mount a
	// podCertificate volume of the signer.
	volume := corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{PodCertificate: &corev1.PodCertificateProjection{
			SignerName: signerName, KeyType: "ECDSAP256", CredentialBundlePath: "credentialbundle.pem",
		}}},
	}}}
	// The pods are spread over nodes of podsPerNode, below the kubelet's
	// default limit of 110 pods: each node's kubelet asks for its own pods,
	// as in a cluster, not one client for a thousand pods.
	nodes := (n + podsPerNode - 1) / podsPerNode
	nodeName := func(i int) string { return fmt.Sprintf("bench-node-%d", i/podsPerNode) }
	pods := make([]*localcluster.Pod, n)
	if err := parallel(n, 32, func(i int) error {
		p, err := e.cluster.NewPod(ctx, localcluster.PodOptions{Namespace: ns, TokenTTL: tokenTTL, Volumes: []corev1.Volume{volume}, Node: nodeName(i)})
		pods[i] = p
		return err
	}); err != nil {
		return nil, err
	}
	nodeCfgs := make([]*rest.Config, nodes)
	nodeObjs := make([]*corev1.Node, nodes)
	for k := range nodes {
		if nodeCfgs[k], nodeObjs[k], err = e.cluster.NodeConfig(ctx, nodeName(k*podsPerNode)); err != nil {
			return nil, err
		}
	}
	sa, err := e.cluster.Client.CoreV1().ServiceAccounts(ns).Get(ctx, pods[0].ServiceAccount, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	type request struct {
		csr  []byte // the agent's request
		stub []byte // the kubelet's stub PKCS#10 request
	}
	reqs := make([]request, n)
	for i, pod := range pods {
		dns := podDNSName(pod)
		if reqs[i].csr, err = csrFor(pkix.Name{CommonName: dns}, []string{dns}, []net.IP{net.ParseIP(pod.IPs[0])}); err != nil {
			return nil, err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if reqs[i].stub, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key); err != nil {
			return nil, err
		}
	}
	csrRun := func(run string) (burstStats, error) {
		clients := make([]kubernetes.Interface, n)
		for i, p := range pods {
			if clients[i], err = podClient(p); err != nil {
				return burstStats{}, err
			}
		}
		return burstOnce(ctx, e, run, n, func(ctx context.Context, i int) error {
			obj := csrObject(burstName(run, i), run, signerName, reqs[i].csr, certificatesv1.UsageServerAuth)
			_, err := clients[i].CertificatesV1().CertificateSigningRequests().Create(ctx, obj, metav1.CreateOptions{})
			return err
		})
	}
	// Each node asks for its pods with its kubelet's one client.
	pcrRun := func(run string) (burstStats, error) {
		clients := make([]kubernetes.Interface, nodes)
		for k, cfg := range nodeCfgs {
			if clients[k], err = kubernetes.NewForConfig(cfg); err != nil {
				return burstStats{}, err
			}
		}
		return pcrBurstOnce(ctx, e, ns, run, n, func(ctx context.Context, i int) error {
			p, node, client := pods[i], nodeObjs[i/podsPerNode], clients[i/podsPerNode]
			obj := &certificatesv1.PodCertificateRequest{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: burstName(run, i), Labels: map[string]string{"bench-run": run}},
				Spec: certificatesv1.PodCertificateRequestSpec{
					SignerName: signerName, PodName: p.Name, PodUID: types.UID(p.UID),
					ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
					NodeName: types.NodeName(node.Name), NodeUID: node.UID,
					MaxExpirationSeconds: ptr.To[int32](24 * 3600), StubPKCS10Request: reqs[i].stub,
				},
			}
			_, err := client.CertificatesV1().PodCertificateRequests(ns).Create(ctx, obj, metav1.CreateOptions{})
			return err
		})
	}
	// The controller's caches know the pods before the clock starts (see
	// benchBurst).
	if _, err := csrRun("pcr-warmup"); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	rounds := 3
	if short {
		rounds = 1
	}
	var csrRounds, pcrRounds []burstStats
	requests := map[string]string{} // API requests per certificate, by kind and total of the round
	for r := 1; r <= rounds; r++ {
		for _, kind := range []string{"pcr", "csr"} {
			label := fmt.Sprintf("%s-vs-%d", kind, r)
			run := csrRun
			if kind == "pcr" {
				run = pcrRun
			}
			before, err := readAPICounts(ctx, e.cluster.Client)
			if err != nil {
				return nil, err
			}
			s, err := run(label)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", label, err)
			}
			after, err := readAPICounts(ctx, e.cluster.Client)
			if err != nil {
				return nil, err
			}
			requests[kind+ms(s.total)] = perRequest(before, after, n)
			logf("%s: all %d issued in %s (p50 %s, p99 %s; all created after %s); API requests per certificate: %s",
				label, n, ms(s.total), ms(s.p50), ms(s.p99), ms(s.created), requests[kind+ms(s.total)])
			if kind == "pcr" {
				pcrRounds = append(pcrRounds, s)
			} else {
				csrRounds = append(csrRounds, s)
			}
		}
	}
	p, c := medianRun(pcrRounds), medianRun(csrRounds)
	r := &result{title: fmt.Sprintf("7. Pod certificates vs CSRs (%d requests at once)", n)}
	r.add("all issued, PodCertificateRequests vs CSRs", ms(p.total), ms(c.total), ratio(float64(p.total), float64(c.total)),
		"≤ 0.70", float64(p.total) <= 0.70*float64(c.total))
	r.add("all issued after the last create returned (PCR vs CSR)", ms(p.total-p.created), ms(c.total-c.created),
		ratio(float64(p.total-p.created), float64(c.total-c.created)), "–", true)
	r.add("per request p50 (PCR vs CSR)", ms(p.p50), ms(c.p50), "–", "–", true)
	r.add("per request p99 (PCR vs CSR)", ms(p.p99), ms(c.p99), "–", "–", true)
	r.detail("- Rounds (all issued): PodCertificateRequests %s; CSRs %s. The table shows each side's median round.", totals(pcrRounds), totals(csrRounds))
	r.detail("- The same %d simulated pods (each mounting a podCertificate volume of %s) in both: a CSR is created by the pod with its own "+
		"pod-bound token and connection, and the controller approves then signs it (two writes); a PodCertificateRequest is created by "+
		"the pod's node (%d nodes of %d pods, each node one system:node client certificate and connection, as its kubelet), and the controller reads the pod live, checks the service "+
		"account's UID against its cache, and issues it in one status write. Same controller, same policy, same control plane, alternating rounds. Per request: from just "+
		"before the create to the certificate seen on a watch.", n, signerName, nodes, podsPerNode)
	r.detail("- The last create returned after %s (PodCertificateRequests, from %d node identities, each one flow of API Priority and "+
		"Fairness) and %s (CSRs, from %d pod identities) in the median rounds; the row after it is the signer's own share.",
		ms(p.created), nodes, ms(c.created), n)
	r.detail("- API requests per certificate in the median rounds (kube-apiserver's apiserver_request_total before and after, every "+
		"client, watches left out): PodCertificateRequests %s; CSRs %s.", requests["pcr"+ms(p.total)], requests["csr"+ms(c.total)])
	return r, nil
}

// pcrBurstOnce is burstOnce for PodCertificateRequests of namespace ns.
func pcrBurstOnce(ctx context.Context, e *env, ns, label string, n int, do func(context.Context, int) error) (burstStats, error) {
	pcrs := e.cluster.Client.CertificatesV1().PodCertificateRequests(ns)
	return measureBurst(ctx, burstAPI{
		list: func(ctx context.Context, o metav1.ListOptions) (string, error) {
			l, err := pcrs.List(ctx, o)
			if err != nil {
				return "", err
			}
			return l.ResourceVersion, nil
		},
		watch: pcrs.Watch,
		deleteAll: func(ctx context.Context, o metav1.ListOptions) error {
			return pcrs.DeleteCollection(ctx, metav1.DeleteOptions{}, o)
		},
		outcome: func(obj runtime.Object) (string, bool, error, bool) {
			pcr, ok := obj.(*certificatesv1.PodCertificateRequest)
			if !ok {
				return "", false, nil, false
			}
			for _, t := range []string{certificatesv1.PodCertificateRequestConditionTypeDenied, certificatesv1.PodCertificateRequestConditionTypeFailed} {
				if c := meta.FindStatusCondition(pcr.Status.Conditions, t); c != nil {
					return pcr.Name, false, fmt.Errorf("%s %s: %s: %s", pcr.Name, c.Type, c.Reason, c.Message), true
				}
			}
			return pcr.Name, pcr.Status.CertificateChain != "", nil, true
		},
	}, label, n, do)
}
