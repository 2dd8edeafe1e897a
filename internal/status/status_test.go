package status

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/writer"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func published(t *testing.T, notAfter time.Time) *writer.Published {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &writer.Published{Leaf: leaf, Key: key}
}

func TestMetricsInPrometheusTextFormat(t *testing.T) {
	m := NewMetrics()
	pub := published(t, time.Unix(1772366400, 0))
	m.Issued(pub, 700*time.Millisecond)
	m.Due(time.Unix(1772360000, 0))
	m.Renewal(renew.ResultSuccess, 40*time.Second, time.Unix(1772300000, 0))
	m.Renewal(renew.ResultDenied, time.Hour, time.Unix(1772300100, 0))
	m.Published(pub, renew.ReasonRepaired)
	m.Notified("url", nil)
	m.Notified("signal", errors.New("no process"))
	var b strings.Builder
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE csr_agent_certificate_expiration_timestamp_seconds gauge\n",
		"csr_agent_certificate_expiration_timestamp_seconds 1772366400\n",
		"csr_agent_certificate_renewal_due_timestamp_seconds 1772360000\n",
		"csr_agent_last_renewal_success_timestamp_seconds 1772300000\n",
		`csr_agent_renewals_total{result="success"} 1` + "\n",
		`csr_agent_renewals_total{result="denied"} 1` + "\n",
		`csr_agent_renewals_total{result="error"} 0` + "\n",
		"# TYPE csr_agent_issuance_duration_seconds histogram\n",
		`csr_agent_issuance_duration_seconds_bucket{le="0.5"} 0` + "\n",
		`csr_agent_issuance_duration_seconds_bucket{le="1"} 1` + "\n",
		`csr_agent_issuance_duration_seconds_bucket{le="60"} 2` + "\n",
		`csr_agent_issuance_duration_seconds_bucket{le="+Inf"} 2` + "\n",
		"csr_agent_issuance_duration_seconds_sum 40.7\n",
		"csr_agent_issuance_duration_seconds_count 2\n",
		`csr_agent_republishes_total{reason="repaired"} 1` + "\n",
		`csr_agent_notifications_total{hook="signal",result="failure"} 1` + "\n",
		`csr_agent_notifications_total{hook="url",result="success"} 1` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
}

func TestNoExpirationBeforeTheFirstCertificate(t *testing.T) {
	var b strings.Builder
	_, _ = NewMetrics().WriteTo(&b)
	for _, name := range []string{"csr_agent_certificate_expiration_timestamp_seconds", "csr_agent_certificate_renewal_due_timestamp_seconds"} {
		if strings.Contains(b.String(), "\n"+name+" ") {
			t.Errorf("%s: a time of 0 would page as decades overdue; the sample must be absent", name)
		}
	}
}

// csr_agent_ready says what /readyz says, at each scrape: it turns 0 when
// the certificate expires, with no event in between.
func TestReadyMetricFollowsTheFilesOnDisk(t *testing.T) {
	c := testingclock.NewFakePassiveClock(t0)
	files := &fakeLoader{err: writer.ErrNotFound}
	base := serve(t, Endpoints(NewHealth(c), files, NewMetrics(), c))
	ready := func() string {
		_, body := get(t, http.MethodGet, base+"/metrics")
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, "csr_agent_ready "); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no csr_agent_ready sample in:\n%s", body)
		return ""
	}
	if got := ready(); got != "0" {
		t.Errorf("nothing published: csr_agent_ready %s, want 0", got)
	}
	files.pub, files.err = published(t, t0.Add(time.Hour)), nil
	if got := ready(); got != "1" {
		t.Errorf("valid pair: csr_agent_ready %s, want 1", got)
	}
	c.SetTime(t0.Add(time.Hour))
	if got := ready(); got != "0" {
		t.Errorf("expired pair: csr_agent_ready %s, want 0", got)
	}
}

func TestHealthFailsOnlyForAStepPastItsLimit(t *testing.T) {
	c := testingclock.NewFakePassiveClock(t0)
	h := NewHealth(c)
	end := h.Begin("renewing", 6*time.Minute)
	c.SetTime(t0.Add(6 * time.Minute))
	if err := h.Check(); err != nil {
		t.Errorf("a renewal within its limit is unhealthy: %v", err)
	}
	c.SetTime(t0.Add(6*time.Minute + time.Second))
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "renewing") {
		t.Errorf("got %v, want the stuck step named", err)
	}
	end()
	if err := h.Check(); err != nil {
		t.Errorf("after the step ended: %v", err)
	}
}

type fakeLoader struct {
	pub *writer.Published
	err error
}

func (f *fakeLoader) Load() (*writer.Published, error) { return f.pub, f.err }

// serve runs Serve on a free port until the test ends; it returns the base URL.
func serve(t *testing.T, respond func(string) Response) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, respond) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v at shutdown, want nil", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestReadyzIsRedOnlyWhenNothingValidIsOnDisk(t *testing.T) {
	c := testingclock.NewFakePassiveClock(t0)
	files := &fakeLoader{err: writer.ErrNotFound}
	base := serve(t, Endpoints(NewHealth(c), files, NewMetrics(), c))
	if code, body := get(t, http.MethodGet, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no certificate published") {
		t.Errorf("nothing published: %d %q", code, body)
	}
	files.pub, files.err = published(t, t0.Add(time.Hour)), nil
	if code, _ := get(t, http.MethodGet, base+"/readyz"); code != http.StatusOK {
		t.Errorf("valid pair: %d", code)
	}
	c.SetTime(t0.Add(time.Hour))
	if code, body := get(t, http.MethodGet, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "expired") {
		t.Errorf("expired pair: %d %q", code, body)
	}
	files.pub, files.err = nil, writer.ErrDamaged
	if code, _ := get(t, http.MethodGet, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("damaged files: %d", code)
	}
}

func TestEndpointsSpeakEnoughHTTP(t *testing.T) {
	c := testingclock.NewFakePassiveClock(t0)
	base := serve(t, Endpoints(NewHealth(c), &fakeLoader{err: writer.ErrNotFound}, NewMetrics(), c))
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{http.MethodGet, "/healthz", http.StatusOK, "ok\n"},
		{http.MethodGet, "/healthz?verbose=1", http.StatusOK, "ok\n"},
		{http.MethodHead, "/healthz", http.StatusOK, ""},
		{http.MethodGet, "/metrics", http.StatusOK, "# HELP csr_agent_certificate_expiration_timestamp_seconds"},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, "GET only"},
		{http.MethodGet, "/nope", http.StatusNotFound, "not found"},
	} {
		code, body := get(t, tc.method, base+tc.path)
		if code != tc.code || !strings.HasPrefix(body, tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, body, tc.code, tc.body)
		}
	}
}

func TestGarbageRequestIsRefused(t *testing.T) {
	c := testingclock.NewFakePassiveClock(t0)
	base := serve(t, Endpoints(NewHealth(c), &fakeLoader{err: writer.ErrNotFound}, NewMetrics(), c))
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "HELLO\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(conn) // the server closes the connection
	if !strings.HasPrefix(string(reply), "HTTP/1.1 400 Bad Request\r\n") {
		t.Errorf("reply to garbage: %q", reply)
	}
}
