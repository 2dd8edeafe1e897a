package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

func verdict(v testenv.Verdict) func(*certificatesv1.CertificateSigningRequest) testenv.Verdict {
	return func(*certificatesv1.CertificateSigningRequest) testenv.Verdict { return v }
}

func TestInitExitsWithReasonWhenDeniedOrFailed(t *testing.T) {
	env := testenv.Shared(t)
	for _, tc := range []struct {
		name     string
		verdict  testenv.Verdict
		wantCode int
		wantText []string
	}{
		{"denied", testenv.Deny, exitDenied, []string{"certificate request denied", "TestDenied", "denied by the test signer", "kubectl describe csr"}},
		{"failed", testenv.Fail, exitFailed, []string{"certificate request failed", "TestFailed", "failed by the test signer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signerName := "csr-agent.io/" + tc.name
			env.StartSigner(t, testenv.SignerOptions{SignerName: signerName, Decide: verdict(tc.verdict)})
			pod := env.NewPod(t, testenv.PodOptions{})
			grantAgentRBAC(t, env, pod)
			dir := t.TempDir()
			code, stderr := runAgent(t, pod, dir, "SIGNER_NAME="+signerName, "DNS_NAMES=x.example.com")
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tc.wantCode, stderr)
			}
			for _, want := range tc.wantText {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr)
				}
			}
			assertNothingPublished(t, dir)
		})
	}
}

// The timeout says what a person can look at, and suggests approving only
// for a kubernetes.io signer: for any other, an approver decides, and a
// person approving would override its policy.
func TestInitTimesOutWithAHintForWhoDecides(t *testing.T) {
	env := testenv.Shared(t)
	for _, tc := range []struct {
		name, signer  string
		want, notWant []string
	}{
		{"kubernetes.io signer", "kubernetes.io/kube-apiserver-client", []string{"kubectl certificate approve "}, nil},
		{"another signer", "csr-agent.io/nobody", []string{`"csr-agent.io/nobody" running`, "kubectl describe csr ", "type=Warning"}, []string{"certificate approve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := env.NewPod(t, testenv.PodOptions{})
			grantAgentRBAC(t, env, pod)
			dir := t.TempDir()
			// Nobody approves requests of these signers here.
			code, stderr := runAgent(t, pod, dir, "SIGNER_NAME="+tc.signer, "USAGES=client", "COMMON_NAME=x", "ISSUE_TIMEOUT=3s")
			if code != exitTimeout {
				t.Fatalf("exit %d, want %d: %s", code, exitTimeout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr says %q:\n%s", w, stderr)
				}
			}
			if !strings.Contains(stderr, csrName(pod)) {
				t.Errorf("stderr does not name the CSR %s:\n%s", csrName(pod), stderr)
			}
			assertNothingPublished(t, dir)
		})
	}
}

// Without POD_UID the agent cannot name its request after its pod, and the
// shipped admission policy refuses a request for csr-agent.io/pod under any
// other name: the agent fails at once and says what to set.
func TestInitWithoutPodUIDIsRefusedAndSaysWhatToSet(t *testing.T) {
	env := testenv.Shared(t)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	code, stderr := runAgent(t, pod, dir, "-POD_UID", "SIGNER_NAME=csr-agent.io/pod", "DNS_NAMES=x.example.com", "ISSUE_TIMEOUT=30s")
	if code != exitError {
		t.Fatalf("exit %d, want %d: %s", code, exitError, stderr)
	}
	for _, want := range []string{"csr-agent-pod-requests", "csr-agent-" + pod.UID, "POD_UID"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}
	list, err := env.Client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{
		LabelSelector: issue.LabelPodNamespace + "=" + pod.Namespace + "," + issue.LabelPodName + "=" + pod.Name,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d CSRs created", len(list.Items))
	}
	assertNothingPublished(t, dir)
}

func TestInitReportsCSRDeletedWhileWaiting(t *testing.T) {
	env := testenv.Shared(t)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	run := startAgent(t, pod, t.TempDir(), "SIGNER_NAME=csr-agent.io/nobody", "DNS_NAMES=x.example.com")
	csr := waitCSR(t, env, csrName(pod))
	if err := env.Client.CertificatesV1().CertificateSigningRequests().Delete(t.Context(), csr.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := run.wait(t); code != exitDeleted {
		t.Fatalf("exit %d, want %d: %s", code, exitDeleted, run.stderr.String())
	}
	if !strings.Contains(run.stderr.String(), "deleted while waiting") {
		t.Errorf("stderr does not say the request was deleted:\n%s", run.stderr.String())
	}
}

func TestInitReusesValidPairOnRestart(t *testing.T) {
	env := testenv.Shared(t)
	signer := env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/restart"})
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	args := []string{"SIGNER_NAME=csr-agent.io/restart", "DNS_NAMES=x.example.com", "DELETE_CSR=false"}
	if code, stderr := runAgent(t, pod, dir, args...); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr)
	}
	first := readCert(t, filepath.Join(dir, "tls.crt"))
	code, stderr := runAgent(t, pod, dir, args...)
	if code != 0 {
		t.Fatalf("second run: exit %d: %s", code, stderr)
	}
	if !readCert(t, filepath.Join(dir, "tls.crt")).Equal(first) {
		t.Error("second run replaced a valid certificate")
	}
	if n := signer.Issued(csrName(pod)); n != 1 {
		t.Errorf("%d certificates issued, want 1: the restart asked again", n)
	}
	// Asking for other names is a new identity: it gets a new certificate.
	if code, stderr := runAgent(t, pod, dir, "SIGNER_NAME=csr-agent.io/restart", "DNS_NAMES=y.example.com", "DELETE_CSR=false"); code != 0 {
		t.Fatalf("third run: exit %d: %s", code, stderr)
	}
	if got := readCert(t, filepath.Join(dir, "tls.crt")).DNSNames; got[0] != "y.example.com" {
		t.Errorf("names %v after a change of DNS_NAMES", got)
	}
}

// A container killed while its request is pending resumes that request
// when it restarts, instead of leaving an orphan behind.
func TestInitRestartedWhilePendingResumesItsRequest(t *testing.T) {
	env := testenv.Shared(t)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	args := []string{"SIGNER_NAME=csr-agent.io/resume", "DNS_NAMES=x.example.com"}
	first := startAgent(t, pod, dir, args...)
	pending := waitCSR(t, env, csrName(pod))
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.wait(t)

	second := startAgent(t, pod, dir, args...)
	waitForLog(t, second, "Resuming pending certificate request")
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/resume"})
	if code := second.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, second.stderr.String())
	}
	if csrs := podCSRs(t, env, pod); len(csrs) != 0 {
		t.Errorf("orphaned CSRs left: %d (first was %s)", len(csrs), pending.UID)
	}
}

// If the key of a pending request is gone, the request cannot be used: the
// agent removes it and asks again.
func TestInitReplacesLeftoverRequestWhoseKeyIsGone(t *testing.T) {
	env := testenv.Shared(t)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	args := []string{"SIGNER_NAME=csr-agent.io/leftover", "DNS_NAMES=x.example.com"}
	first := startAgent(t, pod, t.TempDir(), args...)
	leftover := waitCSR(t, env, csrName(pod))
	_ = first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait(t)

	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/leftover"})
	code, stderr := runAgent(t, pod, t.TempDir(), args...) // a new, empty directory
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "Removing leftover certificate request") {
		t.Errorf("leftover %s not reported as removed:\n%s", leftover.UID, stderr)
	}
}

func TestInitSurvivesAPIServerRestartWhileWaiting(t *testing.T) {
	env := testenv.New(t)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	run := startAgent(t, pod, dir, "SIGNER_NAME=csr-agent.io/outage", "DNS_NAMES=x.example.com")
	csr := waitCSR(t, env, csrName(pod))
	env.StopAPIServer(t)
	env.StartAPIServer(t)
	if csr.UID == "" {
		t.Fatal("no CSR before the restart")
	}
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/outage"})
	if code := run.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, run.stderr.String())
	}
	readCert(t, filepath.Join(dir, "tls.crt"))
}

func TestInitRejectsBadConfigurationBeforeAnyRequest(t *testing.T) {
	pod := &testenv.Pod{Namespace: "Bad_NS", Name: "web", UID: "not-a-uid", KubeconfigFile: "/nonexistent"}
	dir := t.TempDir()
	code, stderr := runAgent(t, pod, dir, "KEY_TYPE=rsa-1024", "CERT_DURATION=1m")
	if code != exitConfig {
		t.Fatalf("exit %d, want %d: %s", code, exitConfig, stderr)
	}
	for _, v := range []string{"POD_NAMESPACE", "POD_UID", "KEY_TYPE", "CERT_DURATION"} {
		if !strings.Contains(stderr, v+":") {
			t.Errorf("stderr does not name %s:\n%s", v, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written despite invalid configuration: %v", entries)
	}
}

func assertNothingPublished(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"tls.crt", "tls.key", "tls.pem"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s published although no certificate was issued", name)
		}
	}
}
