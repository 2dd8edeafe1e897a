package renew

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/csr-agent/csr-agent/internal/writer"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// material makes a self-signed pair valid from notBefore to notAfter.
func material(t *testing.T, notBefore, notAfter time.Time) writer.Material {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "web.example.com"}, DNSNames: []string{"web.example.com"},
		NotBefore: notBefore, NotAfter: notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writer.Material{
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		ChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		CAPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

// fakeRenewer hands each Renew call to the test, which answers it.
type fakeRenewer struct {
	calls chan *call
	mu    sync.Mutex
	ca    []byte
}

type call struct {
	current *writer.Published
	reply   chan reply
}

type reply struct {
	renewal *Renewal
	err     error
}

func newFakeRenewer() *fakeRenewer { return &fakeRenewer{calls: make(chan *call)} }

func (f *fakeRenewer) Renew(ctx context.Context, current *writer.Published) (*Renewal, error) {
	c := &call{current: current, reply: make(chan reply, 1)}
	select {
	case f.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-c.reply:
		return r.renewal, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeRenewer) CABundle(context.Context) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ca
}

func (f *fakeRenewer) setCA(ca []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ca = ca
}

// next waits for the loop to call Renew.
func (f *fakeRenewer) next(t *testing.T) *call {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not renew")
		return nil
	}
}

// none checks that the loop is not calling Renew now. The loop only acts
// when the fake clock is stepped or a channel is sent on, so once it waits
// on a timer, no call can be in progress.
func (f *fakeRenewer) none(t *testing.T) {
	t.Helper()
	select {
	case <-f.calls:
		t.Fatal("the loop renewed before the deadline")
	default:
	}
}

type published struct {
	pub *writer.Published
	why Reason
}

// recorder is the loop's Observer and Events.
type recorder struct {
	published chan published
	mu        sync.Mutex
	results   []Result
	events    []string
	due       []time.Time
}

func newRecorder() *recorder { return &recorder{published: make(chan published, 16)} }

func (r *recorder) Attempted(res Result, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
}

func (r *recorder) Published(_ context.Context, pub *writer.Published, why Reason) {
	r.published <- published{pub, why}
}

func (r *recorder) Due(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.due = append(r.due, at)
}

func (r *recorder) dues() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.due...)
}

func (r *recorder) Event(_ context.Context, _, reason, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, reason)
}

func (r *recorder) wait(t *testing.T) published {
	t.Helper()
	select {
	case p := <-r.published:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was published")
		return published{}
	}
}

func (r *recorder) snapshot() ([]Result, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...), append([]string(nil), r.events...)
}

// harness runs a loop over a real writer in a temporary directory.
type harness struct {
	clock    *testingclock.FakeClock
	renewer  *fakeRenewer
	rec      *recorder
	files    *writer.Writer
	dir      string
	current  *writer.Published
	changed  chan struct{}
	caChange chan struct{}
	done     chan error
	cancel   context.CancelFunc
}

func start(t *testing.T, m writer.Material, mod func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	w, err := writer.New(writer.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := w.Publish(m)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		clock: testingclock.NewFakeClock(t0), renewer: newFakeRenewer(), rec: newRecorder(), files: w, dir: dir, current: pub,
		changed: make(chan struct{}, 1), caChange: make(chan struct{}, 1), done: make(chan error, 1),
	}
	opts := Options{
		Renewer: h.renewer, Files: w, Current: pub, Clock: h.clock, Rand: func() float64 { return 0.5 },
		Backoff: Backoff{Initial: 2 * time.Second, Max: time.Minute}, Observer: h.rec, Events: h.rec,
		FilesChanged: h.changed, CAChanged: h.caChange,
	}
	if mod != nil {
		mod(&opts)
	}
	loop, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- loop.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("loop ended with %v", err)
		}
	})
	return h
}

// step advances the fake clock once the loop waits on its timer.
func (h *harness) step(t *testing.T, d time.Duration) {
	t.Helper()
	h.waitForTimer(t)
	h.clock.Step(d)
}

// waitForTimer waits until the loop sleeps on the fake clock.
func (h *harness) waitForTimer(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return h.clock.HasWaiters(), nil
	})
	if err != nil {
		t.Fatal("the loop did not go to sleep")
	}
}

func (h *harness) load(t *testing.T) *writer.Published {
	t.Helper()
	p, err := h.files.Load()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
