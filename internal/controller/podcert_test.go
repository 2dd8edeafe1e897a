package controller_test

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// pcrCase is one PodCertificateRequest, made by the node's kubelet.
type pcrCase struct {
	name string
	// pod describes the pod (its namespace is the test's); Volumes get the
	// podCertificate volume of signer unless set.
	pod testenv.PodOptions
	// keyType and annotations are the projection's.
	keyType     string
	annotations map[string]string
	signer      string // default csr-agent.io/pod
	edit        func(*certificatesv1.PodCertificateRequest)
	// after runs once the request exists, before the controller starts.
	after func(t *testing.T, env *testenv.Env, pod *testenv.Pod)
	// want is the condition type and reason; "" type: left untouched.
	wantType, wantReason string
	// check inspects an issued certificate.
	check func(t *testing.T, leaf *x509.Certificate)

	created *certificatesv1.PodCertificateRequest
	key     crypto.Signer
	podObj  *testenv.Pod
}

func TestPodCertificateRequestsGetExactlyThePodsNamesOrADenial(t *testing.T) {
	s := newShippedSetup(t)
	env, ctx := s.env, t.Context()
	ns := env.NewNamespace(t)
	other := env.NewNamespace(t)
	node := newKubelet(t, env)
	svc := func(ns, name string, selector map[string]string, headless bool) {
		t.Helper()
		o := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
			Selector: selector, Ports: []corev1.ServicePort{{Port: 443}},
		}}
		if headless {
			o.Spec.ClusterIP = corev1.ClusterIPNone
		}
		if _, err := env.Client.CoreV1().Services(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc(ns, "one", map[string]string{"app": "one"}, false)
	svc(ns, "api", map[string]string{"app": "multi"}, false)
	svc(ns, "web", map[string]string{"tier": "front"}, false)
	svc(ns, "db", map[string]string{"app": "db"}, false)
	svc(ns, "peers", map[string]string{"app": "stateful"}, true)
	svc(other, "bank", map[string]string{"app": "one"}, false) // same selector, other namespace

	fqdn := func(svc string) string { return svc + "." + ns + ".svc.cluster.local" }
	hasDNS := func(names ...string) func(*testing.T, *x509.Certificate) {
		return func(t *testing.T, leaf *x509.Certificate) {
			for _, n := range names {
				if !slices.Contains(leaf.DNSNames, n) {
					t.Errorf("DNS names %q lack %q", leaf.DNSNames, n)
				}
			}
		}
	}
	issued, denied := certificatesv1.PodCertificateRequestConditionTypeIssued, certificatesv1.PodCertificateRequestConditionTypeDenied
	cases := []*pcrCase{
		{name: "serving, one Service", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			wantType: issued, check: func(t *testing.T, leaf *x509.Certificate) {
				hasDNS(fqdn("one"))(t, leaf)
				if slices.Contains(leaf.DNSNames, "bank."+other+".svc.cluster.local") {
					t.Errorf("another namespace's Service in %q", leaf.DNSNames)
				}
			}},
		{name: "serving, several Services", pod: testenv.PodOptions{Labels: map[string]string{"app": "multi", "tier": "front"}},
			keyType: "RSA3072", wantType: issued, check: hasDNS(fqdn("api"), fqdn("web"))},
		{name: "headless", pod: testenv.PodOptions{Labels: map[string]string{"app": "stateful"}, Hostname: "db-0", Subdomain: "peers"},
			keyType: "ED25519", wantType: issued, check: hasDNS("db-0.peers."+ns+".svc.cluster.local", fqdn("peers"))},
		{name: "dual-stack", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}, IPs: []string{"10.250.0.7", "fd00:250::7"}},
			keyType: "ECDSAP384", wantType: issued, check: func(t *testing.T, leaf *x509.Certificate) {
				hasDNS("10-250-0-7."+ns+".pod.cluster.local")(t, leaf)
				for _, ip := range []string{"10.250.0.7", "fd00:250::7"} {
					if !slices.ContainsFunc(leaf.IPAddresses, func(got net.IP) bool { return got.Equal(net.ParseIP(ip)) }) {
						t.Errorf("IPs %v lack %s", leaf.IPAddresses, ip)
					}
				}
			}},
		{name: "client only by hint", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			annotations: map[string]string{approve.AnnotationUsage: approve.UsageClient}, wantType: issued,
			check: func(t *testing.T, leaf *x509.Certificate) {
				if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
					t.Errorf("EKU %v, want client auth only", leaf.ExtKeyUsage)
				}
			}},
		{name: "narrowed to one Service by hint", pod: testenv.PodOptions{Labels: map[string]string{"app": "multi", "tier": "front"}},
			annotations: map[string]string{approve.AnnotationServices: "api"}, wantType: issued,
			check: func(t *testing.T, leaf *x509.Certificate) {
				hasDNS(fqdn("api"))(t, leaf)
				if slices.Contains(leaf.DNSNames, fqdn("web")) {
					t.Errorf("hint narrowed to api, got %q", leaf.DNSNames)
				}
			}},
		{name: "maxExpirationSeconds at the minimum", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			edit: func(r *certificatesv1.PodCertificateRequest) { r.Spec.MaxExpirationSeconds = ptr.To[int32](3600) }, wantType: issued,
			check: lifetime(time.Hour)},
		{name: "maxExpirationSeconds at the maximum gets MAX_EXPIRATION", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			edit: func(r *certificatesv1.PodCertificateRequest) {
				r.Spec.MaxExpirationSeconds = ptr.To[int32](91 * 24 * 3600)
			}, wantType: issued,
			check: lifetime(24 * time.Hour)},

		{name: "Service created after the request", pod: testenv.PodOptions{Labels: map[string]string{"app": "late"}, IPs: []string{}},
			wantType: issued, check: hasDNS(fqdn("late"))},

		{name: "pod re-created under the same name", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			after: func(t *testing.T, env *testenv.Env, p *testenv.Pod) {
				if err := env.Client.CoreV1().Pods(p.Namespace).Delete(t.Context(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
					t.Fatal(err)
				}
				waitGone(t, env, p)
				env.NewPod(t, testenv.PodOptions{Namespace: p.Namespace, Name: p.Name, Labels: map[string]string{"app": "one"}, Volumes: p.Object.Spec.Volumes})
			},
			wantType: denied, wantReason: approve.ReasonPodUIDMismatch},
		{name: "terminating pod", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}, Finalizers: []string{"csr-agent.io/test"}},
			after: func(t *testing.T, env *testenv.Env, p *testenv.Pod) {
				if err := env.Client.CoreV1().Pods(p.Namespace).Delete(t.Context(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { removeFinalizers(env, p) })
			},
			wantType: denied, wantReason: approve.ReasonPodTerminating},
		{name: "service account re-created", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}, ServiceAccount: "recreated"},
			after: func(t *testing.T, env *testenv.Env, p *testenv.Pod) {
				sas := env.Client.CoreV1().ServiceAccounts(p.Namespace)
				if err := sas.Delete(t.Context(), p.ServiceAccount, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := sas.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: p.ServiceAccount}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			wantType: denied, wantReason: approve.ReasonServiceAccountMismatch},
		{name: "hint adding a Service that does not select the pod", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			annotations: map[string]string{approve.AnnotationServices: "one,db"},
			wantType:    denied, wantReason: approve.ReasonInvalidUserAnnotations},
		{name: "hint naming another namespace's Service", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			annotations: map[string]string{approve.AnnotationServices: "bank"},
			wantType:    denied, wantReason: approve.ReasonInvalidUserAnnotations},
		{name: "unknown key of our prefix", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			annotations: map[string]string{approve.AnnotationPrefix + "dns-names": "kubernetes.default.svc"},
			wantType:    denied, wantReason: approve.ReasonInvalidUserAnnotations},
		{name: "key type the API allows and the policy does not", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			keyType: "ECDSAP521", wantType: denied, wantReason: approve.ReasonUnsupportedKeyType},
		{name: "another signer's request is left alone", pod: testenv.PodOptions{Labels: map[string]string{"app": "one"}},
			signer: "example.com/other"},
	}
	for _, tc := range cases {
		tc.pod.Namespace = ns
		signer := cmp.Or(tc.signer, approve.SignerName)
		if tc.pod.Volumes == nil {
			tc.pod.Volumes = []corev1.Volume{certVolume(signer, cmp.Or(tc.keyType, "ECDSAP256"), tc.annotations)}
		}
		tc.podObj = env.NewPod(t, tc.pod)
		var err error
		if tc.created, tc.key, err = node.request(t, tc.podObj, signer, tc.edit); err != nil {
			t.Fatalf("%s: kubelet creating the request: %v", tc.name, err)
		}
		if tc.after != nil {
			tc.after(t, env, tc.podObj)
		}
	}
	in := s.start(t, startOptions{createCA: true, podCertificates: true})
	// A pod without IPs has no name until its Service exists: its request
	// waits for it rather than being denied.
	svc(ns, "late", map[string]string{"app": "late"}, false)
	pool := trustPool(t, s)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantType == "" {
				return // checked below, once every other request is decided
			}
			got := waitTerminal(t, env.Client, tc.created)
			cond := terminal(got)
			if cond.Type != tc.wantType || (tc.wantReason != "" && cond.Reason != tc.wantReason) {
				t.Fatalf("%s %s (%s), want %s %s", cond.Type, cond.Reason, cond.Message, tc.wantType, tc.wantReason)
			}
			if cond.Type != issued {
				if got.Status.CertificateChain != "" || got.Status.NotAfter != nil {
					t.Error("a denied request has a certificate")
				}
				waitForEvent(t, env, tc.podObj, cond.Reason)
				series := fmt.Sprintf(`csr_agent_controller_decisions_total{path="podcertificaterequest",reason=%q,result="denied"}`, cond.Reason)
				if v, _ := metric(in.c, series); v < 1 {
					t.Errorf("%s = %v, want at least 1", series, v)
				}
				return
			}
			checkIssued(t, got, tc, pool)
		})
	}
	for _, tc := range cases {
		if tc.wantType != "" {
			continue
		}
		got, err := env.Client.CertificatesV1().PodCertificateRequests(ns).Get(ctx, tc.created.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Status.Conditions) != 0 || got.Status.CertificateChain != "" {
			t.Errorf("%s: another signer's request was touched: %+v", tc.name, got.Status)
		}
	}
}

// checkIssued verifies the status against the API's rules and the chain in
// real TLS handshakes for every name it carries.
func checkIssued(t *testing.T, got *certificatesv1.PodCertificateRequest, tc *pcrCase, pool *x509.CertPool) {
	t.Helper()
	cert := keyPair(t, got.Status.CertificateChain, tc.key)
	leaf := cert.Leaf
	st := got.Status
	if !st.NotBefore.Time.Equal(leaf.NotBefore) || !st.NotAfter.Time.Equal(leaf.NotAfter) {
		t.Errorf("status times %s..%s, leaf %s..%s", st.NotBefore, st.NotAfter, leaf.NotBefore, leaf.NotAfter)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if from, to := leaf.NotBefore.Add(life*7/10-time.Second), leaf.NotBefore.Add(life*9/10+time.Second); st.BeginRefreshAt.Time.Before(from) ||
		st.BeginRefreshAt.Time.After(to) && st.BeginRefreshAt.Time.After(leaf.NotAfter.Add(-10*time.Minute)) {
		t.Errorf("beginRefreshAt %s outside 70-90%% of %s..%s", st.BeginRefreshAt, leaf.NotBefore, leaf.NotAfter)
	}
	spiffeID := "spiffe://" + trustDomain + "/ns/" + got.Namespace + "/sa/" + got.Spec.ServiceAccountName
	if leaf.Subject.CommonName != "" || len(leaf.EmailAddresses) != 0 || len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID {
		t.Errorf("leaf carries other than the pod's names: subject %q, emails %q, URIs %v (want %s)", leaf.Subject, leaf.EmailAddresses, leaf.URIs, spiffeID)
	}
	if tc.check != nil {
		tc.check(t, leaf)
	}
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		for _, name := range leaf.DNSNames {
			if err := serves(t, cert, pool, name); err != nil {
				t.Errorf("serving as %s: %v", name, err)
			}
		}
		for _, ip := range leaf.IPAddresses {
			if err := serves(t, cert, pool, ip.String()); err != nil {
				t.Errorf("serving as %s: %v", ip, err)
			}
		}
		if err := serves(t, cert, pool, "kubernetes.default.svc"); err == nil {
			t.Error("certificate verified for a name that is not the pod's")
		}
	} else if err := serves(t, cert, pool, leaf.DNSNames[0]); err == nil {
		t.Error("a client-only certificate served TLS")
	}
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		if err := authenticates(t, cert, pool); err != nil {
			t.Errorf("as a client: %v", err)
		}
	}
}

func lifetime(want time.Duration) func(*testing.T, *x509.Certificate) {
	return func(t *testing.T, leaf *x509.Certificate) {
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got != want {
			t.Errorf("lifetime %s, want %s", got, want)
		}
	}
}

func waitGone(t *testing.T, env *testenv.Env, p *testenv.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := env.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not deleted: %v", p.Namespace, p.Name, err)
	}
}

func removeFinalizers(env *testenv.Env, p *testenv.Pod) {
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	_, _ = env.Client.CoreV1().Pods(p.Namespace).Patch(context.Background(), p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
}

// The API server itself refuses what the controller never sees: a node
// asking for another service account, for a pod not bound to it, with a
// proof of possession that does not verify, or a lifetime out of bounds.
// The controller's only check of these is that nothing reaches it.
func TestPodCertificateRequestsTheAPIServerRefusesNeverReachTheSigner(t *testing.T) {
	env := testenv.Shared(t)
	node := newKubelet(t, env)
	ns := env.NewNamespace(t)
	pod := env.NewPod(t, testenv.PodOptions{Namespace: ns, Volumes: []corev1.Volume{certVolume(approve.SignerName, "ECDSAP256", nil)}})
	cases := []struct {
		name string
		edit func(*certificatesv1.PodCertificateRequest)
		want func(error) bool
	}{
		{"another service account", func(r *certificatesv1.PodCertificateRequest) { r.Spec.ServiceAccountName = "admin" }, apierrors.IsForbidden},
		{"another node", func(r *certificatesv1.PodCertificateRequest) { r.Spec.NodeName = "node-b" }, apierrors.IsForbidden},
		{"proof of possession by another key", func(r *certificatesv1.PodCertificateRequest) {
			r.Spec.StubPKCS10Request[len(r.Spec.StubPKCS10Request)-2] ^= 0xff
		}, apierrors.IsInvalid},
		{"maxExpirationSeconds below the minimum", func(r *certificatesv1.PodCertificateRequest) { r.Spec.MaxExpirationSeconds = ptr.To[int32](3599) }, apierrors.IsInvalid},
		{"maxExpirationSeconds above the maximum", func(r *certificatesv1.PodCertificateRequest) {
			r.Spec.MaxExpirationSeconds = ptr.To[int32](91*24*3600 + 1)
		}, apierrors.IsInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := node.request(t, pod, approve.SignerName, tc.edit)
			if !tc.want(err) {
				t.Errorf("err %v", err)
			}
		})
	}
	// And a pod cannot ask for itself: only its node may.
	cs, err := kubernetes.NewForConfig(pod.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CertificatesV1().PodCertificateRequests(ns).Create(t.Context(), &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "req-"},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("pod creating a request: err %v, want Forbidden", err)
	}
}
