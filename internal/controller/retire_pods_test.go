package controller_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/pki"
	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/manifests"
)

// TestPodsKeepHandshakingThroughAFullCARotation is the rotation procedure
// of the README, end to end: a server pod and a client pod, each with the
// real agent sidecar (bound to the shipped agent ClusterRoles), talk mutual
// TLS the way the README tells applications to (the key pair and ca.crt
// re-read on every handshake) while the operator adds the new CA's root
// (phase 1: agents put it in ca.crt before any leaf of the new CA exists),
// switches signing (phase 2: every pod renews onto the new CA) and retires
// the old root. Not one handshake may fail, and a leaf of the old CA no
// longer verifies against the published bundle afterwards.
func TestPodsKeepHandshakingThroughAFullCARotation(t *testing.T) {
	s := newSetup(t)
	oldCA := s.putCA(t, "old CA", year)
	s.start(t, startOptions{})
	newCA := must(sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: "new CA", Validity: 2 * year}))
	agent := buildAgentBinary(t)

	ns := s.env.NewNamespace(t)
	bindShippedAgentRoles(t, s.env, ns, "server", "client")
	server := s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Name: "server", ServiceAccount: "server", Labels: web})
	client := s.env.NewPod(t, testenv.PodOptions{Namespace: ns, Name: "client", ServiceAccount: "client", Labels: map[string]string{"app": "client"}})
	createService(t, s.env, ns, service{name: "web"}, web)
	createService(t, s.env, ns, service{name: "client"}, map[string]string{"app": "client"})
	serverDir, clientDir := t.TempDir(), t.TempDir()
	// The shortest lifetime the CSR API allows, renewed 6 s after each
	// issuance: every pod moves to the new CA within seconds of the switch.
	common := []string{"SIGNER_NAME=" + s.signer, "CERT_DURATION=10m", "RENEW_BEFORE=9m54s", "HTTP_ADDR=", "LOG_FORMAT=text"}
	runSidecar(t, agent, server, serverDir, append(common, "SERVICE_NAMES=web", "USAGES=server")...)
	runSidecar(t, agent, client, clientDir, append(common, "SERVICE_NAMES=client", "USAGES=client")...)
	waitLeaf(t, serverDir, oldCA)
	waitLeaf(t, clientDir, oldCA)
	oldLeaf := leafIn(t, serverDir)

	hs := startHandshakes(t, serverDir, clientDir, "web."+ns+".svc")
	hs.waitFor(t, 5, oldCA, oldCA)

	// 1. Add the new CA's root; the old CA still signs.
	s.putPEMs(t, sign.PEMs{Cert: oldCA.PEMs().Cert, Key: oldCA.PEMs().Key, CA: cat(oldCA.TrustBundle(), newCA.TrustBundle())})
	waitCAFile(t, serverDir, oldCA, newCA)
	waitCAFile(t, clientDir, oldCA, newCA)
	for _, dir := range []string{serverDir, clientDir} {
		if err := leafIn(t, dir).CheckSignatureFrom(oldCA.Certificate()); err != nil {
			t.Fatalf("a leaf not of the old CA exists before the switch: %v", err)
		}
	}
	hs.waitFor(t, 5, oldCA, oldCA)

	// 2. Switch signing; renewals move every pod.
	s.putPEMs(t, newCA.PEMs())
	waitLeaf(t, serverDir, newCA)
	waitLeaf(t, clientDir, newCA)
	hs.waitFor(t, 5, newCA, newCA)

	// 3. Retire the old root.
	s.markRetired(t, sign.Fingerprint(oldCA.Certificate()))
	s.waitAnchors(t, newCA)
	waitCAFile(t, serverDir, newCA)
	waitCAFile(t, clientDir, newCA)
	hs.waitFor(t, 5, newCA, newCA)

	total, failures := hs.stop()
	if len(failures) > 0 {
		t.Errorf("%d of %d handshakes failed during the rotation; first: %v", len(failures), total, failures[0])
	}
	t.Logf("%d handshakes, %d failed", total, len(failures))
	roots, _ := trustBundle(t, s.env.Client, s.signer)
	if _, err := oldLeaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("a leaf of the retired CA still verifies against the published bundle")
	}
	if _, err := leafIn(t, serverDir).Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the server's leaf does not verify against the published bundle: %v", err)
	}
}

// buildAgentBinary builds cmd/agent into the test's temporary directory,
// removed when it ends.
func buildAgentBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent")
	if out, err := exec.Command("go", "build", "-o", path, "github.com/csr-agent/csr-agent/cmd/agent").CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	return path
}

// bindShippedAgentRoles applies the agent ClusterRoles of manifests/ and
// binds them to the service accounts, as example-binding does.
func bindShippedAgentRoles(t *testing.T, env *testenv.Env, ns string, serviceAccounts ...string) {
	t.Helper()
	if _, err := manifests.Apply(t.Context(), env.Config, "csr-agent-test", "agent-rbac/clusterroles.yaml"); err != nil {
		t.Fatal(err)
	}
	var subjects []rbacv1.Subject
	for _, sa := range serviceAccounts {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa})
	}
	rbac := env.Client.RbacV1()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-agent:" + ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "csr-agent"},
		Subjects:   subjects,
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-agent", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "csr-agent-namespace"},
		Subjects:   subjects,
	}
	for _, err := range []error{
		create(rbac.ClusterRoleBindings().Create(t.Context(), crb, metav1.CreateOptions{})),
		create(rbac.RoleBindings(ns).Create(t.Context(), rb, metav1.CreateOptions{})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// runSidecar runs `agent sidecar` as the pod's container until the test
// ends, then stops it as the kubelet would (SIGTERM).
func runSidecar(t *testing.T, agent string, pod *testenv.Pod, dir string, env ...string) {
	t.Helper()
	var logs syncBuffer
	cmd := exec.Command(agent, "sidecar")
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "CERT_DIR=" + dir}, pod.Env()...), env...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("agent of pod %s still running 30s after SIGTERM", pod.Name)
		}
		if t.Failed() {
			t.Logf("agent of pod %s:\n%s", pod.Name, logs.String())
		}
	})
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// leafIn reads the published leaf of a certificate directory, or nil.
func leafIn(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return nil
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return nil
	}
	return certs[0]
}

// waitLeaf waits until the directory holds a leaf signed by ca.
func waitLeaf(t *testing.T, dir string, ca *sign.CA) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		leaf := leafIn(t, dir)
		return leaf != nil && leaf.CheckSignatureFrom(ca.Certificate()) == nil, nil
	})
	if err != nil {
		t.Fatalf("no leaf of %q in %s: %v", ca.Certificate().Subject, dir, err)
	}
}

// waitCAFile waits until ca.crt of the directory holds exactly the roots
// of want, in order.
func waitCAFile(t *testing.T, dir string, want ...*sign.CA) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		got = nil
		data, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			return false, nil //nolint:nilerr // not written yet
		}
		certs, err := pki.ParseCertificates(data)
		if err != nil {
			return false, nil //nolint:nilerr // retried
		}
		for _, c := range certs {
			got = append(got, c.Subject.CommonName)
		}
		return fmt.Sprint(got) == fmt.Sprint(commonNames(want)), nil
	})
	if err != nil {
		t.Fatalf("ca.crt in %s holds %v, want %v", dir, got, commonNames(want))
	}
}

func commonNames(cas []*sign.CA) []string {
	var n []string
	for _, ca := range cas {
		n = append(n, ca.Certificate().Subject.CommonName)
	}
	return n
}
