package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

// Several renewals against the real control plane, with certificates that
// live 30 seconds: every renewal is an atomic swap to a new key, each publish
// reaches the app once by every hook, readers never see a torn or
// mismatched pair, and deleted files or a changed CA_FILE are put right at
// once.
func TestSidecarRenewsAtomicallyWithNewKeysAndTellsTheApp(t *testing.T) {
	env := testenv.Shared(t)
	signer := env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/renewals", Lifetime: 30 * time.Second})
	pod := env.NewPod(t, testenv.PodOptions{})
	grantAgentRBAC(t, env, pod)
	grantEventsRBAC(t, env, pod)

	dir, side := t.TempDir(), t.TempDir()
	caFile := filepath.Join(side, "ca.crt")
	writeAtomically(t, caFile, signer.CAPEM)
	passwordFile := filepath.Join(side, "password")
	writeAtomically(t, passwordFile, []byte("changeit\n"))
	commandLog := filepath.Join(side, "command.log")
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/-/reload" {
			posts.Add(1)
		}
	}))
	defer hook.Close()
	app := startApp(t)
	reader := startPairReader(t, dir)

	// The signer backdates by a minute: a 90s lifetime, renewed 24s
	// before its end, that is 6s after each issuance.
	run := startMode(t, "sidecar", pod, dir, "SIGNER_NAME=csr-agent.io/renewals", "DNS_NAMES=renew.example.com",
		"RENEW_BEFORE=24s", "CA_FILE="+caFile, "KEYSTORE_PASSWORD_FILE="+passwordFile, "HTTP_ADDR=127.0.0.1:0",
		"NOTIFY_PROCESS="+app.name, "NOTIFY_URL="+hook.URL+"/-/reload", "NOTIFY_COMMAND=sh -c echo>>"+commandLog)
	base := httpURL(t, run)
	waitForLogCount(t, run, `msg="Certificate published"`, 4, 2*time.Minute)

	// Deleted files are restored within a second.
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, err := loadPublished(t, dir, []byte("changeit"))
		return err == nil, nil
	})
	if took := time.Since(start); err != nil || took > time.Second {
		t.Errorf("deleted files restored after %v (%v), want within a second", took, err)
	}

	// A changed CA_FILE (as a ConfigMap volume changes: a rename) is
	// rewritten into ca.crt.
	other := env.StartSigner(t, testenv.SignerOptions{SignerName: "csr-agent.io/other"})
	rotated := append(append([]byte(nil), signer.CAPEM...), other.CAPEM...)
	writeAtomically(t, caFile, rotated)
	err = wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		got, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		return err == nil && bytes.Equal(got, rotated), nil
	})
	if err != nil {
		t.Error("ca.crt does not follow CA_FILE")
	}

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	_, metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{
		"csr_agent_certificate_expiration_timestamp_seconds 1", `csr_agent_renewals_total{result="success"} `,
		"csr_agent_issuance_duration_seconds_count ", `csr_agent_republishes_total{reason="repaired"} `,
		`csr_agent_republishes_total{reason="ca-changed"} 1`, `csr_agent_notifications_total{hook="url",result="success"} `,
		"csr_agent_certificate_renewal_due_timestamp_seconds 1", "csr_agent_ready 1\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if strings.Contains(metrics, `result="failure"`) {
		t.Errorf("a notification failed:\n%s", metrics)
	}
	waitForEvents(t, env, pod, "CertificateRequested", "CertificateIssued", "CertificateRenewed")

	code, took := run.terminate(t)
	if code != 0 || took > 5*time.Second {
		t.Errorf("SIGTERM: exit %d after %v, want 0 promptly", code, took)
	}
	reader.halt()

	failures, certs, keys := reader.result()
	t.Logf("readers: %d reads, %d certificates, %d keys", reader.reads.Load(), certs, keys)
	if len(failures) > 0 {
		t.Errorf("readers saw %d torn or mismatched pairs in %d reads, e.g. %s", len(failures), reader.reads.Load(), failures[0])
	}
	if certs < 4 || keys != certs {
		t.Errorf("readers saw %d certificates with %d distinct keys; want at least 4, each with a new key", certs, keys)
	}
	pub, err := loadPublished(t, dir, []byte("changeit"))
	if err != nil {
		t.Fatalf("after shutdown: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "tls.crt")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("tls.crt is not a symlink through ..data: %v", err)
	}
	_, leaf, _, err := pkcs12.DecodeChain(pub.Keystore, "changeit")
	if err != nil || !leaf.Equal(pub.Leaf) {
		t.Errorf("keystore.p12 does not hold the published certificate: %v", err)
	}

	// Every publish after the first, renewals and repairs alike, reached the
	// app once by each hook. The first filled an empty directory: there was
	// no app reading it yet.
	out := run.stderr.String()
	publishes := strings.Count(out, `msg="Certificate published"`) + strings.Count(out, "msg=Republished")
	lines, _ := os.ReadFile(commandLog)
	t.Logf("%d publishes; %d signals, %d posts, %d commands", publishes, app.hups.Load(), posts.Load(), bytes.Count(lines, []byte("\n")))
	if got := []int{int(app.hups.Load()), int(posts.Load()), bytes.Count(lines, []byte("\n"))}; got[0] != publishes-1 || got[1] != publishes-1 || got[2] != publishes-1 {
		t.Errorf("signals, posts and commands %v after %d publishes, want %d of each", got, publishes, publishes-1)
	}
	if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "changeit") {
		t.Error("the logs hold key material or the keystore password")
	}
}

// writeAtomically replaces path by a rename, as the kubelet updates volumes.
func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
