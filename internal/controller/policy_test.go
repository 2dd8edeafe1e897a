package controller_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// world is one test case's pod and what surrounds it.
type world struct {
	pod       *testenv.Pod
	clusterIP map[string]string // Service name → cluster IP
	otherNS   string
}

func (w *world) svc(name string) string { return name + "." + w.pod.Namespace + ".svc.cluster.local" }

// service is a Service in the pod's namespace; a nil selector selects the
// pod by its labels.
type service struct {
	name     string
	selector map[string]string
	headless bool
}

var web = map[string]string{"app": "web"}

// podCase is a CSR from a pod and what the controller must make of it.
type podCase struct {
	name     string
	pod      testenv.PodOptions
	services []service
	setup    func(t *testing.T, s *setup, w *world) // after the pod and Services exist
	req      func(w *world) request
	// want is the Denied reason; "" means approved and issued.
	want string
	// serverNames are the names a TLS client verifies the issued certificate
	// for; none means a client certificate, checked with mutual TLS.
	serverNames func(w *world) []string
	// checkLeaf, when set, checks the issued leaf further.
	checkLeaf func(t *testing.T, leaf *x509.Certificate)
}

// TestIssuesCertificatesForThePodsOwnNames: each request is approved,
// signed, and its certificate passes a real TLS handshake for every name it
// asked for against the published ClusterTrustBundle.
func TestIssuesCertificatesForThePodsOwnNames(t *testing.T) {
	s := newSetup(t)
	in := s.start(t, startOptions{createCA: true})
	waitReady(t, in, true)
	if !probe(in.c, "/healthz") {
		t.Error("/healthz fails")
	}
	runPodCases(t, s, []podCase{{
		name:     "service",
		pod:      testenv.PodOptions{Labels: web},
		services: []service{{name: "web"}},
		req: func(w *world) request {
			return dns(w.svc("web"), "web."+w.pod.Namespace+".svc")
		},
		serverNames: func(w *world) []string { return []string{w.svc("web"), "web." + w.pod.Namespace + ".svc"} },
	}, {
		name:     "several services",
		pod:      testenv.PodOptions{Labels: map[string]string{"app": "web", "tier": "front"}},
		services: []service{{name: "web"}, {name: "front", selector: map[string]string{"tier": "front"}}},
		req: func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{Subject: pkix.Name{CommonName: w.svc("web")}, DNSNames: []string{w.svc("web"), w.svc("front")}}}
		},
		serverNames: func(w *world) []string { return []string{w.svc("web"), w.svc("front")} },
	}, {
		name:        "headless service and stable hostname",
		pod:         testenv.PodOptions{Labels: web, Hostname: "web-0", Subdomain: "web-hl"},
		services:    []service{{name: "web-hl", headless: true}},
		req:         func(w *world) request { return dns("web-0."+w.svc("web-hl"), w.svc("web-hl")) },
		serverNames: func(w *world) []string { return []string{"web-0." + w.svc("web-hl"), w.svc("web-hl")} },
	}, {
		name: "pod IP and its DNS form",
		pod:  testenv.PodOptions{IPs: []string{"10.245.1.7"}},
		req: func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{DNSNames: []string{"10-245-1-7." + w.pod.Namespace + ".pod.cluster.local"}, IPAddresses: []net.IP{net.ParseIP("10.245.1.7")}}}
		},
		serverNames: func(w *world) []string {
			return []string{"10.245.1.7", "10-245-1-7." + w.pod.Namespace + ".pod.cluster.local"}
		},
	}, {
		name: "dual-stack pod IPs",
		pod:  testenv.PodOptions{IPs: []string{"10.245.1.8", "fd00:10:245::8"}},
		req: func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("10.245.1.8"), net.ParseIP("fd00:10:245::8")}}}
		},
		serverNames: func(w *world) []string { return []string{"10.245.1.8", "fd00:10:245::8"} },
	}, {
		name:     "cluster IP of a selecting service",
		pod:      testenv.PodOptions{Labels: web},
		services: []service{{name: "web"}},
		req: func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{DNSNames: []string{w.svc("web")}, IPAddresses: []net.IP{net.ParseIP(w.clusterIP["web"])}}}
		},
		serverNames: func(w *world) []string { return []string{w.clusterIP["web"], w.svc("web")} },
	}, {
		name: "client certificate with the pod's SPIFFE ID",
		req: func(w *world) request {
			id := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, w.pod.Namespace, w.pod.ServiceAccount)
			return request{tmpl: &x509.CertificateRequest{URIs: []*url.URL{must(url.Parse(id))}}, usages: clientUsages}
		},
	}, {
		name:     "RSA key with key encipherment",
		pod:      testenv.PodOptions{Labels: web},
		services: []service{{name: "web"}},
		req: func(w *world) request {
			r := dns(w.svc("web"))
			r.key, r.usages = keyRSA(), append([]certificatesv1.KeyUsage{certificatesv1.UsageKeyEncipherment}, serverUsages...)
			return r
		},
		serverNames: func(w *world) []string { return []string{w.svc("web")} },
	}, {
		name:        "Ed25519 key",
		pod:         testenv.PodOptions{Labels: web},
		services:    []service{{name: "web"}},
		req:         func(w *world) request { r := dns(w.svc("web")); r.key = keyEd(); return r },
		serverNames: func(w *world) []string { return []string{w.svc("web")} },
	}, {
		name:     "lifetime above the maximum: issued for the maximum",
		pod:      testenv.PodOptions{Labels: web},
		services: []service{{name: "web"}},
		req: func(w *world) request {
			r := dns(w.svc("web"))
			r.exp = ptr.To(int32(48 * 3600))
			return r
		},
		serverNames: func(w *world) []string { return []string{w.svc("web")} },
		checkLeaf: func(t *testing.T, leaf *x509.Certificate) {
			// sign.DefaultBackdate before now, the policy's 24 h maximum after.
			if got, max := leaf.NotAfter.Sub(leaf.NotBefore), approve.DefaultMaxExpiration+sign.DefaultBackdate; got > max {
				t.Errorf("lifetime %s, want at most %s", got, max)
			}
		},
	}, {
		name:     "P-384 key, short lifetime",
		pod:      testenv.PodOptions{Labels: web},
		services: []service{{name: "web"}},
		req: func(w *world) request {
			r := dns(w.svc("web"))
			r.key, r.exp = keyP384(), ptr.To(int32(600))
			return r
		},
		serverNames: func(w *world) []string { return []string{w.svc("web")} },
	}})
}

// TestDeniesWhatThePodCannotClaim: each request is denied with the
// machine reason, and the pod gets a Warning Event saying why.
func TestDeniesWhatThePodCannotClaim(t *testing.T) {
	s := newSetup(t)
	in := s.start(t, startOptions{createCA: true})
	deny := func(name string, want string, req func(w *world) request) podCase {
		return podCase{name: name, pod: testenv.PodOptions{Labels: web}, services: []service{{name: "web"}}, req: req, want: want}
	}
	cases := []podCase{
		deny("wildcard", approve.ReasonWildcardNotAllowed, func(w *world) request { return dns("*." + w.pod.Namespace + ".svc.cluster.local") }),
		deny("service that does not select the pod", approve.ReasonDNSNameNotAllowed, func(w *world) request { return dns(w.svc("db")) }),
		deny("another namespace's service", approve.ReasonDNSNameNotAllowed, func(w *world) request { return dns("web." + w.otherNS + ".svc.cluster.local") }),
		deny("IP that is not the pod's", approve.ReasonIPNotAllowed, func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("10.99.99.99")}}}
		}),
		deny("CA via basicConstraints", approve.ReasonCARequested, func(w *world) request {
			bc := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: must(asn1.Marshal(struct{ IsCA bool }{true}))}
			return request{tmpl: &x509.CertificateRequest{DNSNames: []string{w.svc("web")}, ExtraExtensions: []pkix.Extension{bc}}}
		}),
		deny("CA via usages", approve.ReasonCARequested, func(w *world) request {
			r := dns(w.svc("web"))
			r.usages = append([]certificatesv1.KeyUsage{certificatesv1.UsageCertSign}, serverUsages...)
			return r
		}),
		deny("email SAN", approve.ReasonEmailSANNotAllowed, func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{DNSNames: []string{w.svc("web")}, EmailAddresses: []string{"admin@example.com"}}}
		}),
		deny("URI SAN of another service account", approve.ReasonURISANNotAllowed, func(w *world) request {
			id := fmt.Sprintf("spiffe://%s/ns/%s/sa/admin", trustDomain, w.pod.Namespace)
			return request{tmpl: &x509.CertificateRequest{URIs: []*url.URL{must(url.Parse(id))}}, usages: clientUsages}
		}),
		deny("weak RSA key", approve.ReasonWeakKey, func(w *world) request { r := dns(w.svc("web")); r.key = keyWeak(); return r }),
		deny("unsupported curve P-521", approve.ReasonKeyTypeNotAllowed, func(w *world) request { r := dns(w.svc("web")); r.key = keyP521(); return r }),
		deny("short Service name (off by default)", approve.ReasonDNSNameNotAllowed, func(w *world) request { return dns("web." + w.pod.Namespace) }),
		deny("bare Service name (off by default)", approve.ReasonDNSNameNotAllowed, func(w *world) request { return dns("web") }),
		deny("unknown usage", approve.ReasonUsageNotAllowed, func(w *world) request {
			r := dns(w.svc("web"))
			r.usages = append([]certificatesv1.KeyUsage{certificatesv1.UsageCodeSigning}, serverUsages...)
			return r
		}),
		deny("SHA-1 signature", approve.ReasonSignatureInvalid, func(w *world) request {
			r := dns(w.svc("web"))
			r.key, r.sha1 = keyRSA(), true
			return r
		}),
		deny("extension outside the allow-list", approve.ReasonExtensionNotAllowed, func(w *world) request {
			e := pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 3}, Value: []byte{5, 0}}
			return request{tmpl: &x509.CertificateRequest{DNSNames: []string{w.svc("web")}, ExtraExtensions: []pkix.Extension{e}}}
		}),
		deny("organization in the subject", approve.ReasonSubjectNotAllowed, func(w *world) request {
			return request{tmpl: &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"system:masters"}}, DNSNames: []string{w.svc("web")}}}
		}),
	}
	// Namespaces named like top-level domains: their Services must not make
	// the pod google.com or vault.corp.
	cases = append(cases,
		podCase{name: "namespace com, Service google: google.com", pod: testenv.PodOptions{Namespace: domainNamespace(t, s.env, "com"), Labels: web},
			services: []service{{name: "google"}}, req: func(*world) request { return dns("google.com") }, want: approve.ReasonDNSNameNotAllowed},
		podCase{name: "namespace corp, Service vault: vault.corp", pod: testenv.PodOptions{Namespace: domainNamespace(t, s.env, "corp"), Labels: web},
			services: []service{{name: "vault"}}, req: func(*world) request { return dns("vault.corp") }, want: approve.ReasonDNSNameNotAllowed},
	)
	runPodCases(t, s, cases)
	for _, tc := range cases {
		series := fmt.Sprintf(`csr_agent_controller_decisions_total{path="csr",reason=%q,result="denied"}`, tc.want)
		if v, _ := metric(in.c, series); v < 1 {
			t.Errorf("%s = %v, want at least 1", series, v)
		}
	}
}

// domainNamespace creates (once per control plane) a namespace with a name
// that is also a top-level domain.
func domainNamespace(t *testing.T, env *testenv.Env, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := env.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

func dns(names ...string) request {
	return request{tmpl: &x509.CertificateRequest{DNSNames: names}}
}

// runPodCases runs the cases in parallel and returns when all are done.
func runPodCases(t *testing.T, s *setup, cases []podCase) {
	t.Helper()
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			runPodCase(t, s, tc)
		}
	})
}

func runPodCase(t *testing.T, s *setup, tc podCase) {
	t.Helper()
	t.Run(tc.name, func(t *testing.T) {
		t.Parallel()
		w := s.newWorld(t, tc)
		if tc.setup != nil {
			tc.setup(t, s, w)
		}
		r := tc.req(w)
		csr := mustCreateCSR(t, must(kubernetes.NewForConfig(w.pod.Config)), s.signer, r)
		csr = waitFinished(t, s.env.Client, csr.Name)
		got, _ := outcome(csr)
		if tc.want != "" {
			if want := "Denied:" + tc.want; got != want {
				t.Fatalf("outcome %s, want %s (conditions %+v)", got, want, csr.Status.Conditions)
			}
			waitForEvent(t, s.env, w.pod, tc.want)
			return
		}
		if got != "issued" {
			t.Fatalf("outcome %s, want issued (conditions %+v)", got, csr.Status.Conditions)
		}
		if c := conditionOf(csr, certificatesv1.CertificateApproved); c == nil || c.Reason != approve.ReasonApproved {
			t.Errorf("Approved condition %+v, want reason %s", c, approve.ReasonApproved)
		}
		s.checkIssued(t, csr, r, tc.serverNames, w)
		if tc.checkLeaf != nil {
			tc.checkLeaf(t, parseChain(t, csr.Status.Certificate)[0])
		}
	})
}

// checkIssued verifies the certificate with real TLS handshakes against the
// published trust bundle: for each name asked for, and not for another.
func (s *setup) checkIssued(t *testing.T, csr *certificatesv1.CertificateSigningRequest, r request, serverNames func(*world) []string, w *world) {
	t.Helper()
	chain := parseChain(t, csr.Status.Certificate)
	roots, _ := trustBundle(t, s.env.Client, s.signer)
	key := r.key
	if key == nil {
		key = keyP256()
	}
	if leaf := chain[0]; leaf.IsCA || len(leaf.Subject.Organization) > 0 {
		t.Errorf("leaf IsCA=%v subject %s", leaf.IsCA, leaf.Subject)
	}
	if serverNames == nil {
		if err := clientTLS(t, chain, key, roots); err != nil {
			t.Errorf("mutual TLS with the issued client certificate: %v", err)
		}
		return
	}
	for _, name := range serverNames(w) {
		if err := serveTLS(t, chain, key, name, roots); err != nil {
			t.Errorf("TLS handshake for %s: %v", name, err)
		}
	}
	if err := serveTLS(t, chain, key, "kubernetes.default.svc.cluster.local", roots); err == nil || !strings.Contains(err.Error(), "valid for") {
		t.Errorf("TLS handshake for a name not requested: %v, want a name mismatch", err)
	}
}

// newWorld creates the case's pod, its Services and, for contrast, a
// Service "db" that selects other pods and a Service "web" in another
// namespace that would select this pod were it there.
func (s *setup) newWorld(t *testing.T, tc podCase) *world {
	t.Helper()
	w := &world{pod: s.env.NewPod(t, tc.pod), clusterIP: map[string]string{}, otherNS: s.env.NewNamespace(t)}
	all := append([]service{{name: "db", selector: map[string]string{"app": "db"}}}, tc.services...)
	for _, svc := range all {
		w.clusterIP[svc.name] = createService(t, s.env, w.pod.Namespace, svc, tc.pod.Labels)
	}
	createService(t, s.env, w.otherNS, service{name: "web"}, web)
	return w
}

func createService(t *testing.T, env *testenv.Env, ns string, svc service, podLabels map[string]string) string {
	t.Helper()
	sel := svc.selector
	if sel == nil {
		sel = podLabels
	}
	obj := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc.name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Port: 443}}},
	}
	if svc.headless {
		obj.Spec.ClusterIP = corev1.ClusterIPNone
	}
	obj, err := env.Client.CoreV1().Services(ns).Create(t.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service %s/%s: %v", ns, svc.name, err)
	}
	return obj.Spec.ClusterIP
}

func setPhase(t *testing.T, env *testenv.Env, pod *testenv.Pod, phase corev1.PodPhase) {
	t.Helper()
	obj, err := env.Client.CoreV1().Pods(pod.Namespace).Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	obj.Status.Phase = phase
	if _, err := env.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(t.Context(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
