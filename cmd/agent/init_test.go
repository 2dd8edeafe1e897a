package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

func TestInitPublishesCertificateForEveryKeyType(t *testing.T) {
	env := testenv.Shared(t)
	signer := env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/keytypes", PublishTrustBundle: true})
	for _, keyType := range []string{"ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"} {
		t.Run(keyType, func(t *testing.T) {
			pod := env.NewPod(t, testenv.PodOptions{})
			grantAgentRBAC(t, env, pod)
			dir := t.TempDir()
			code, stderr := runAgent(t, pod, dir, "SIGNER_NAME=csr-agent.io/keytypes", "KEY_TYPE="+keyType, "DNS_NAMES=web.example.com")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
			if err != nil {
				t.Fatalf("published pair does not load: %v", err)
			}
			leaf, _ := x509.ParseCertificate(pair.Certificate[0])
			roots := x509.NewCertPool()
			ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
			if err != nil || !roots.AppendCertsFromPEM(ca) {
				t.Fatalf("ca.crt missing or empty: %v", err)
			}
			if !slices.Equal(ca, signer.CAPEM) {
				t.Error("ca.crt is not the signer's trust bundle")
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "web.example.com"}); err != nil {
				t.Errorf("certificate does not verify for web.example.com against ca.crt: %v", err)
			}
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.pem")); err != nil {
				t.Errorf("tls.pem does not hold a matching pair: %v", err)
			}
			assertMode(t, filepath.Join(dir, "tls.key"), 0o600)
			assertMode(t, filepath.Join(dir, "tls.pem"), 0o600)
			assertMode(t, filepath.Join(dir, "tls.crt"), 0o644)
			if csrs := podCSRs(t, env, pod); len(csrs) != 0 {
				t.Errorf("CSR left behind after the certificate was stored: %s", csrs[0].Name)
			}
			if strings.Contains(stderr, "PRIVATE KEY") {
				t.Error("the private key appears in the logs")
			}
		})
	}
}

func TestInitPutsEveryDerivedNameInTheCertificate(t *testing.T) {
	env := testenv.Shared(t)
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/names"})
	ns := env.NewNamespace(t)
	for _, svc := range []corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 443}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 5432}}}},
	} {
		if _, err := env.Client.CoreV1().Services(ns).Create(t.Context(), &svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := env.NewPod(t, testenv.PodOptions{Namespace: ns, Labels: map[string]string{"app": "web"}, IPs: []string{"10.9.0.7", "fd00::7"}, Hostname: "web-0", Subdomain: "peers"})
	env.GrantAgent(t, pod, testenv.AgentAccess{ServiceNamesAuto: true})
	dir := t.TempDir()
	code, stderr := runAgent(t, pod, dir, "SIGNER_NAME=csr-agent.io/names", "SERVICE_NAMES=auto",
		"POD_HOSTNAME=web-0", "POD_SUBDOMAIN=peers", "DNS_NAMES=shop.example.com", "IP_ADDRESSES=192.0.2.10", "USAGES=server,client")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	leaf := readCert(t, filepath.Join(dir, "tls.crt"))
	for _, want := range []string{
		"shop.example.com", "web." + ns + ".svc", "web." + ns + ".svc.cluster.local",
		"web-0.peers." + ns + ".svc.cluster.local", "10-9-0-7." + ns + ".pod.cluster.local",
	} {
		if !slices.Contains(leaf.DNSNames, want) {
			t.Errorf("DNS name %s missing from %v", want, leaf.DNSNames)
		}
	}
	// Not without SHORT_SERVICE_NAMES=true: names outside the cluster's.
	for _, short := range []string{"web", "web." + ns} {
		if slices.Contains(leaf.DNSNames, short) {
			t.Errorf("short Service name %s in %v", short, leaf.DNSNames)
		}
	}
	if slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.HasPrefix(n, "db") }) {
		t.Errorf("names of a Service that does not select the pod: %v", leaf.DNSNames)
	}
	for _, want := range []string{"10.9.0.7", "fd00::7", "192.0.2.10"} {
		if !slices.ContainsFunc(leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP(want)) }) {
			t.Errorf("IP %s missing from %v", want, leaf.IPAddresses)
		}
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ext key usages %v, want server and client auth", leaf.ExtKeyUsage)
	}
	if leaf.Subject.CommonName != "shop.example.com" {
		t.Errorf("CN = %q, want the first DNS name", leaf.Subject.CommonName)
	}
}

// A person approving with kubectl is enough: the agent is waiting on a watch.
func TestInitCompletesWhenAPersonApprovesWithKubectl(t *testing.T) {
	env := testenv.Shared(t)
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/manual", Decide: func(*certificatesv1.CertificateSigningRequest) testenv.Verdict { return testenv.Ignore }})
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	run := startAgent(t, pod, dir, "SIGNER_NAME=csr-agent.io/manual", "DNS_NAMES=manual.example.com")
	csr := waitCSR(t, env, csrName(pod))
	if csr.Spec.Username != pod.Username() {
		t.Errorf("CSR created as %q, want the pod's service account %q", csr.Spec.Username, pod.Username())
	}
	if got := csr.Spec.Extra["authentication.kubernetes.io/pod-uid"]; !slices.Equal(got, []string{pod.UID}) {
		t.Errorf("CSR spec.extra pod-uid = %v, want the pod's UID: the agent must use the pod-bound token", got)
	}
	out, err := exec.Command("kubectl", "--kubeconfig", env.KubeconfigFile, "certificate", "approve", csr.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl certificate approve: %v: %s", err, out)
	}
	if code := run.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, run.stderr.String())
	}
	if readCert(t, filepath.Join(dir, "tls.crt")).DNSNames[0] != "manual.example.com" {
		t.Error("published certificate is not the requested one")
	}
}

// kube-controller-manager's built-in kube-apiserver-client signer issues a
// client certificate that then authenticates to the API server.
func TestInitClientCertificateFromBuiltInSignerAuthenticates(t *testing.T) {
	env := testenv.Shared(t)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	run := startAgent(t, pod, dir, "SIGNER_NAME="+certificatesv1.KubeAPIServerClientSignerName, "USAGES=client", "COMMON_NAME=reporting-job")
	csr := waitCSR(t, env, csrName(pod))
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestApproved",
	})
	if _, err := env.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(t.Context(), csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, run.stderr.String())
	}
	cfg := &rest.Config{Host: env.Config.Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: env.ServerCAPEM, CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
	}}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("authenticating with the issued client certificate: %v", err)
	}
	if review.Status.UserInfo.Username != "reporting-job" {
		t.Errorf("authenticated as %q, want reporting-job", review.Status.UserInfo.Username)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %#o, want %#o", filepath.Base(path), got, want)
	}
}
