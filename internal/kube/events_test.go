package kube

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeAPI answers event POSTs with status and records their bodies.
type fakeAPI struct {
	// hold, if set, keeps each request waiting until it is closed.
	hold   chan struct{}
	mu     sync.Mutex
	status int
	bodies []map[string]any
	paths  []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	f.bodies = append(f.bodies, body)
	f.paths = append(f.paths, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	if f.status == http.StatusForbidden {
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"events is forbidden"}`)
		return
	}
	_, _ = w.Write(raw)
}

func newRecorder(t *testing.T, api *fakeAPI) *Recorder {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := New(&rest.Config{Host: srv.URL}, "test")
	if err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	return NewRecorder(c, ObjectRef{Namespace: "shop", Name: "web-0", UID: "0f8e6a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b"}, clk)
}

func TestEventNamesThePodAndTheReason(t *testing.T) {
	api := &fakeAPI{status: http.StatusCreated}
	r := newRecorder(t, api)
	r.Event(t.Context(), EventWarning, "CertificateDenied", "denied by policy: "+strings.Repeat("x", 2000))
	r.Flush(t.Context())
	if len(api.bodies) != 1 || api.paths[0] != "POST /api/v1/namespaces/shop/events" {
		t.Fatalf("requests %v", api.paths)
	}
	b := api.bodies[0]
	obj := b["involvedObject"].(map[string]any)
	if obj["kind"] != "Pod" || obj["name"] != "web-0" || obj["namespace"] != "shop" || obj["uid"] != "0f8e6a3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b" {
		t.Errorf("involvedObject %v", obj)
	}
	if b["reason"] != "CertificateDenied" || b["type"] != "Warning" || b["firstTimestamp"] != "2026-03-01T12:00:00Z" {
		t.Errorf("event %v", b)
	}
	if msg := b["message"].(string); len(msg) != maxEventMessage || !strings.HasPrefix(msg, "denied by policy") {
		t.Errorf("message of %d characters, want it cut to %d", len(msg), maxEventMessage)
	}
	if name := b["metadata"].(map[string]any)["name"].(string); !strings.HasPrefix(name, "web-0.") {
		t.Errorf("event name %q", name)
	}
}

func TestForbiddenEventsAreReportedOnceAndNotRetried(t *testing.T) {
	api := &fakeAPI{status: http.StatusForbidden}
	r := newRecorder(t, api)
	var lines []string
	logger := funcr.New(func(_, args string) { lines = append(lines, args) }, funcr.Options{})
	ctx := klog.NewContext(t.Context(), logger)
	for range 3 {
		r.Event(ctx, EventNormal, "CertificateIssued", "issued")
	}
	r.Flush(t.Context())
	if len(api.paths) != 1 {
		t.Errorf("%d requests, want 1: the agent must stop once it knows it may not", len(api.paths))
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "Not allowed to create Events") {
		t.Errorf("logged %q, want one line saying so", lines)
	}
}

func TestEventsDoNotWaitForTheAPIServerAndArriveInOrder(t *testing.T) {
	api := &fakeAPI{status: http.StatusCreated, hold: make(chan struct{})}
	r := newRecorder(t, api)
	// With the API server holding every request, Event must still return.
	r.Event(t.Context(), EventNormal, "CertificateRequested", "requested")
	r.Event(t.Context(), EventNormal, "CertificateIssued", "issued")
	close(api.hold)
	r.Flush(t.Context())
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.bodies) != 2 || api.bodies[0]["reason"] != "CertificateRequested" || api.bodies[1]["reason"] != "CertificateIssued" {
		t.Errorf("posted %v, want CertificateRequested then CertificateIssued", api.bodies)
	}
}

func TestFlushGivesUpWhenItsContextEnds(t *testing.T) {
	api := &fakeAPI{status: http.StatusCreated, hold: make(chan struct{})}
	r := newRecorder(t, api)
	t.Cleanup(func() { close(api.hold) })
	r.Event(t.Context(), EventNormal, "CertificateIssued", "issued")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r.Flush(ctx) // returns although the post is still held
}
