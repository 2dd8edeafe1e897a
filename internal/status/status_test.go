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
	"net/http/httptest"
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
	if strings.Contains(b.String(), "csr_agent_certificate_expiration_timestamp_seconds 0") {
		t.Error("an expiration of 0 would page as expired decades ago; the sample must be absent")
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

func TestReadyzIsRedOnlyWhenNothingValidIsOnDisk(t *testing.T) {
	c := testingclock.NewFakePassiveClock(t0)
	files := &fakeLoader{err: writer.ErrNotFound}
	srv := httptest.NewServer(Handler(NewHealth(c), files, NewMetrics(), c))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no certificate published") {
		t.Errorf("nothing published: %d %q", code, body)
	}
	files.pub, files.err = published(t, t0.Add(time.Hour)), nil
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("valid pair: %d", code)
	}
	c.SetTime(t0.Add(time.Hour))
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "expired") {
		t.Errorf("expired pair: %d %q", code, body)
	}
	files.pub, files.err = nil, writer.ErrDamaged
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("damaged files: %d", code)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("healthz: %d", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "csr_agent_renewals_total") {
		t.Errorf("metrics: %d %q", code, body)
	}
}

func TestServeStopsWhenTheContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, http.NotFoundHandler()) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil at shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
