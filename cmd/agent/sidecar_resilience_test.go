package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

// The API server is stopped across a renewal deadline: the agent keeps the
// pair it has (still valid, /readyz stays green), and renews once the server
// is back. The pod may not create Events here: the agent says so once.
func TestSidecarKeepsThePairWhileTheAPIServerIsAwayAndRenewsWhenBack(t *testing.T) {
	env := testenv.New(t)
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/outage", Lifetime: 45 * time.Second})
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	// Issued with 105s of life (a minute backdated): due 10s after issuance.
	run := startMode(t, "sidecar", pod, dir, "SIGNER_NAME=csr-agent.io/outage", "DNS_NAMES=outage.example.com",
		"RENEW_BEFORE=35s", "HTTP_ADDR=127.0.0.1:0")
	base := httpURL(t, run)
	waitForLog(t, run, `msg="Renewal scheduled"`)

	env.StopAPIServer(t)
	before, err := loadPublished(t, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitForLogCount(t, run, `msg="Certificate renewal failed; keeping the current certificate"`, 2, time.Minute)
	if now, err := loadPublished(t, dir, nil); err != nil || now.Generation != before.Generation {
		t.Fatalf("the pair changed while the API server was away: %v", err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a valid pair during the outage: %d %s", code, body)
	}
	env.StartAPIServer(t)

	waitForLogCount(t, run, `msg="Certificate published"`, 2, 2*time.Minute)
	after, err := loadPublished(t, dir, nil)
	if err != nil || after.Leaf.Equal(before.Leaf) {
		t.Fatalf("not renewed after the API server came back: %v", err)
	}
	if !time.Now().Before(before.Leaf.NotAfter) {
		t.Logf("note: the first certificate expired (%s) before the renewal", before.Leaf.NotAfter)
	}
	if n := strings.Count(run.stderr.String(), "Not allowed to create Events"); n != 1 {
		t.Errorf("said %d times that Events are forbidden, want once", n)
	}
	if code, took := run.terminate(t); code != 0 || took > 5*time.Second {
		t.Errorf("SIGTERM: exit %d after %v", code, took)
	}
}

// kill -9 at random points, many times, while renewals happen every couple
// of seconds: the directory always holds a valid pair once one was
// published, and a restarted agent carries on.
func TestSidecarKilledAtRandomPointsAlwaysLeavesAValidPair(t *testing.T) {
	env := testenv.Shared(t)
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/kill", Lifetime: 30 * time.Second})
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	// Due 2s after each issuance: kills land in requests and publishes.
	args := []string{"SIGNER_NAME=csr-agent.io/kill", "DNS_NAMES=kill.example.com", "RENEW_BEFORE=28s", "HTTP_ADDR="}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	published := false
	for i := range 20 {
		run := startMode(t, "sidecar", pod, dir, args...)
		// The delay is the random kill point, not a wait for anything.
		select {
		case <-time.After(time.Duration(rng.Int64N(int64(2500 * time.Millisecond)))):
		case <-run.done:
			t.Fatalf("run %d exited by itself:\n%s", i, run.stderr.String())
		}
		if err := run.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-run.done
		published = published || strings.Contains(run.stderr.String(), `msg="Certificate published"`)
		if !published {
			continue
		}
		if _, err := loadPublished(t, dir, nil); err != nil {
			t.Fatalf("after kill %d the directory holds no valid pair: %v\n%s", i, err, run.stderr.String())
		}
	}
	run := startMode(t, "sidecar", pod, dir, args...)
	waitForLog(t, run, `msg="Certificate published"`)
	pub, err := loadPublished(t, dir, nil)
	if err != nil || !time.Now().Before(pub.Leaf.NotAfter) {
		t.Fatalf("the restarted agent did not carry on: %v", err)
	}
	if code, _ := run.terminate(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
}

// Until the first pair is on disk the startup probe and /readyz are red, so
// that a native sidecar holds the app back; a denied renewal is loud but
// keeps the pair and /readyz green, and is retried; a rotated
// ClusterTrustBundle reaches ca.crt through the agent's one watch.
func TestSidecarGatesTheAppUntilTheFirstPairAndSurvivesADenial(t *testing.T) {
	env := testenv.Shared(t)
	var verdict atomicVerdict
	verdict.set(testenv.Ignore)
	signer := env.StartSigner(t, testenv.SignerOptions{
		SignerName: "csr-agent.io/gate", Lifetime: 30 * time.Second,
		Decide: func(*certificatesv1.CertificateSigningRequest) testenv.Verdict { return verdict.get() },
	})
	bundle := publishTrustBundle(t, env, "csr-agent.io/gate", signer.CAPEM)
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	grantEventsRBAC(t, env, pod)
	dir := t.TempDir()
	args := []string{"SIGNER_NAME=csr-agent.io/gate", "DNS_NAMES=gate.example.com", "RENEW_BEFORE=24s", "HTTP_ADDR=127.0.0.1:0"}
	run := startMode(t, "sidecar", pod, dir, args...)
	base := httpURL(t, run)
	csr := waitCSR(t, env, csrName(pod))

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any certificate: %d %s", code, body)
	}
	if code, out := probe(t, pod, dir, args...); code != exitError || !strings.Contains(out, "not ready") {
		t.Errorf("agent probe before any certificate: exit %d %q", code, out)
	}
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting for approval: %d", code)
	}
	approve(t, env, csr)
	waitForLog(t, run, `msg="Renewal scheduled"`)
	if code, out := probe(t, pod, dir, args...); code != exitOK || !strings.Contains(out, "ready: certificate valid until") {
		t.Errorf("agent probe with a pair: exit %d %q", code, out)
	}
	verdict.set(testenv.Deny)
	waitForLog(t, run, "CERTIFICATE RENEWAL DENIED")
	denied, err := loadPublished(t, dir, nil)
	if err != nil {
		t.Fatalf("no valid pair after a denied renewal: %v", err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a denied renewal, with a valid pair: %d %s", code, body)
	}
	published := strings.Count(run.stderr.String(), `msg="Certificate published"`)
	verdict.set(testenv.Approve)
	waitForLogCount(t, run, `msg="Certificate published"`, published+1, time.Minute)
	if now, err := loadPublished(t, dir, nil); err != nil || now.Leaf.Equal(denied.Leaf) {
		t.Errorf("the renewal retried after the denial was not published: %v", err)
	}

	// Rotate the trust bundle: a second CA joins the first.
	other := env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/gate-next"})
	rotated := string(signer.CAPEM) + string(other.CAPEM)
	bundle.Spec.TrustBundle = rotated
	if _, err := env.Client.CertificatesV1().ClusterTrustBundles().Update(t.Context(), bundle, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		pub, err := loadPublished(t, dir, nil)
		return err == nil && string(pub.CAPEM) == rotated, nil
	})
	if err != nil {
		t.Error("ca.crt does not follow the ClusterTrustBundle")
	}
	// Through the watch, not the next renewal's read of the bundle.
	waitForLog(t, run, "CA bundle changed; ca.crt rewritten")

	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{`csr_agent_renewals_total{result="denied"} `, `csr_agent_renewals_total{result="success"} `} {
		if !strings.Contains(metrics, want) || strings.Contains(metrics, want+"0\n") {
			t.Errorf("metrics lack a non-zero %q:\n%s", want, metrics)
		}
	}
	waitForEvents(t, env, pod, "CertificateRequested", "CertificateIssued", "CertificateDenied", "CertificateRenewed")
	if code, took := run.terminate(t); code != 0 || took > 5*time.Second {
		t.Errorf("SIGTERM: exit %d after %v", code, took)
	}
}

type atomicVerdict struct{ v atomic.Int32 }

func (a *atomicVerdict) set(v testenv.Verdict) { a.v.Store(int32(v)) }
func (a *atomicVerdict) get() testenv.Verdict  { return testenv.Verdict(a.v.Load()) }

// probe runs `agent probe` as the kubelet would, in the sidecar's container.
func probe(t *testing.T, pod *testenv.Pod, dir string, extra ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(buildAgent(t), "probe")
	cmd.Env = append(append([]string{"CERT_DIR=" + dir}, pod.Env()...), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func approve(t *testing.T, env *testenv.Env, csr *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestApproved", Message: fmt.Sprintf("approved by %s", t.Name()),
	})
	if _, err := env.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(t.Context(), csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// publishTrustBundle publishes caPEM as the signer's ClusterTrustBundle, as
// the project's controller does.
func publishTrustBundle(t *testing.T, env *testenv.Env, signerName string, caPEM []byte) *certificatesv1.ClusterTrustBundle {
	t.Helper()
	ctb := &certificatesv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(signerName, "/", ":") + ":ca"},
		Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: signerName, TrustBundle: string(caPEM)},
	}
	ctb, err := env.Client.CertificatesV1().ClusterTrustBundles().Create(t.Context(), ctb, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("publishing the trust bundle: %v", err)
	}
	t.Cleanup(func() {
		_ = env.Client.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), ctb.Name, metav1.DeleteOptions{})
	})
	return ctb
}

// NEW_KEY_ON_RENEWAL=false with DELETE_CSR=false: every renewal is a new
// certificate for the same key, even though the CSR of the previous one,
// made for that very key, is kept under the same name.
func TestSidecarCanKeepItsKeyAcrossRenewals(t *testing.T) {
	env := testenv.Shared(t)
	env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/same-key", Lifetime: 30 * time.Second})
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	dir := t.TempDir()
	reader := startPairReader(t, dir)
	run := startMode(t, "sidecar", pod, dir, "SIGNER_NAME=csr-agent.io/same-key", "DNS_NAMES=same.example.com",
		"RENEW_BEFORE=27s", "NEW_KEY_ON_RENEWAL=false", "DELETE_CSR=false", "HTTP_ADDR=")
	waitForLogCount(t, run, `msg="Certificate published"`, 3, time.Minute)
	if code, _ := run.terminate(t); code != 0 {
		t.Errorf("SIGTERM: exit %d", code)
	}
	reader.halt()
	failures, certs, keys := reader.result()
	if len(failures) > 0 || certs < 3 || keys != 1 {
		t.Errorf("readers saw %d certificates with %d keys (%d failures); want at least 3 with one key", certs, keys, len(failures))
	}
}
