package renew

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/writer"
)

func TestRenewsAtTheDeadlineAndPublishesTheNewPair(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), nil)
	// Rand is 0.5: the deadline is at 80% of the lifetime.
	h.step(t, 80*time.Hour-time.Second)
	h.renewer.none(t)
	h.step(t, time.Second)
	c := h.renewer.next(t)
	if c.current.Leaf.SerialNumber.Cmp(h.current.Leaf.SerialNumber) != 0 {
		t.Error("Renew was not given the current pair")
	}
	next := material(t, t0.Add(80*time.Hour), t0.Add(180*time.Hour))
	done := make(chan *writer.Published, 1)
	c.reply <- reply{renewal: &Renewal{Material: next, Done: func(_ context.Context, p *writer.Published) { done <- p }}}

	p := h.rec.wait(t)
	if p.why != ReasonRenewed || !bytes.Equal(p.pub.ChainPEM, next.ChainPEM) {
		t.Errorf("published %q with another chain, want the renewal", p.why)
	}
	if got := h.load(t); !bytes.Equal(got.ChainPEM, next.ChainPEM) {
		t.Error("the directory does not hold the renewed pair")
	}
	if p := <-done; p == nil || !bytes.Equal(p.ChainPEM, next.ChainPEM) {
		t.Error("Done was not told what was published")
	}
	// The next deadline is the new certificate's: 80% of its 100h.
	h.step(t, 80*time.Hour-time.Second)
	h.renewer.none(t)
	h.step(t, time.Second)
	h.renewer.next(t)
	if results, _ := h.rec.snapshot(); !slices.Equal(results, []Result{ResultSuccess}) {
		t.Errorf("results %v, want one success", results)
	}
}

func TestFailedRenewalKeepsThePairAndBacksOff(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), func(o *Options) { o.RenewNow = true })
	before := h.load(t)
	for i, wantDelay := range []time.Duration{1500 * time.Millisecond, 3 * time.Second, 6 * time.Second} {
		h.renewer.next(t).reply <- reply{err: errors.New("connection refused")}
		h.step(t, wantDelay-time.Millisecond)
		h.renewer.none(t)
		h.step(t, time.Millisecond)
		if i == 2 {
			break
		}
	}
	if got := h.load(t); got.Generation != before.Generation {
		t.Error("a failed renewal changed the published files")
	}
	results, events := h.rec.snapshot()
	if !slices.Equal(results, []Result{ResultError, ResultError, ResultError}) {
		t.Errorf("results %v, want three errors", results)
	}
	// Events for attempts 1 and 2, not 3: a lasting failure is not one
	// event per retry.
	if !slices.Equal(events, []string{"CertificateRenewalFailing", "CertificateRenewalFailing"}) {
		t.Errorf("events %v", events)
	}
}

func TestDeniedRenewalIsRetriedLaterNotFatal(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(20*time.Hour)), func(o *Options) { o.RenewNow = true })
	denied := &issue.RequestError{Err: issue.ErrDenied, CSR: "csr-agent-x", Reason: "PolicyDenied"}
	h.renewer.next(t).reply <- reply{err: denied}
	// A quarter of the 20h left is more than the 10m limit.
	h.step(t, 10*time.Minute-time.Second)
	h.renewer.none(t)
	h.step(t, time.Second)
	next := material(t, t0, t0.Add(30*time.Hour))
	h.renewer.next(t).reply <- reply{renewal: &Renewal{Material: next}}
	if p := h.rec.wait(t); !bytes.Equal(p.pub.ChainPEM, next.ChainPEM) {
		t.Error("the renewal after a denial was not published")
	}
	results, events := h.rec.snapshot()
	if !slices.Equal(results, []Result{ResultDenied, ResultSuccess}) {
		t.Errorf("results %v", results)
	}
	if len(events) != 0 {
		t.Errorf("events %v: a denial is the agent's event, not a renewal failure", events)
	}
}

// The due time is what an overdue alert compares with the clock: it follows
// each certificate taken on, and retries do not move it.
func TestReportsWhenEachCertificateIsDueAndRetriesDoNotMoveIt(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), nil)
	h.step(t, 80*time.Hour)
	h.renewer.next(t).reply <- reply{err: errors.New("connection refused")}
	h.step(t, 1500*time.Millisecond)
	next := material(t, t0.Add(80*time.Hour), t0.Add(180*time.Hour))
	h.renewer.next(t).reply <- reply{renewal: &Renewal{Material: next}}
	h.rec.wait(t)
	want := []time.Time{t0.Add(80 * time.Hour), t0.Add(160 * time.Hour)}
	if got := h.rec.dues(); !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("due times %v, want %v (the retry must not move the due time)", got, want)
	}
}

func TestCertificateDueOnArrivalIsReportedDue(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), func(o *Options) { o.RenewNow = true })
	stale := material(t, t0.Add(-99*time.Hour), t0.Add(time.Hour))
	h.renewer.next(t).reply <- reply{renewal: &Renewal{Material: stale}}
	h.rec.wait(t)
	got := h.rec.dues()
	// RenewNow: due at once; the stale one at 80% of its life, long past.
	want := []time.Time{t0, t0.Add(-99*time.Hour + 80*time.Hour)}
	if !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("due times %v, want %v", got, want)
	}
}

func TestCertificateDueOnArrivalIsNotRenewedInALoop(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), func(o *Options) { o.RenewNow = true })
	// Issued already past 90% of its life: its deadline has passed.
	stale := material(t, t0.Add(-99*time.Hour), t0.Add(time.Hour))
	h.renewer.next(t).reply <- reply{renewal: &Renewal{Material: stale}}
	h.rec.wait(t)
	h.step(t, 1500*time.Millisecond-time.Millisecond)
	h.renewer.none(t)
	h.step(t, time.Millisecond)
	h.renewer.next(t)
}

func TestChangedFilesAreRestoredAtOnce(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), nil)
	for _, change := range []struct {
		name string
		do   func(dir string) error
	}{
		{"deleted", func(dir string) error { return os.Remove(filepath.Join(dir, "tls.crt")) }},
		{"truncated", func(dir string) error { return os.Truncate(filepath.Join(dir, "tls.key"), 0) }},
		{"replaced", func(dir string) error {
			if err := os.Remove(filepath.Join(dir, "tls.pem")); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "tls.pem"), []byte("not ours"), 0o600)
		}},
	} {
		t.Run(change.name, func(t *testing.T) {
			if err := change.do(h.dir); err != nil {
				t.Fatal(err)
			}
			h.changed <- struct{}{}
			if p := h.rec.wait(t); p.why != ReasonRepaired {
				t.Errorf("published for %q, want %q", p.why, ReasonRepaired)
			}
			got := h.load(t)
			if !bytes.Equal(got.KeyPEM, h.current.KeyPEM) || !bytes.Equal(got.ChainPEM, h.current.ChainPEM) {
				t.Error("the restored pair is not the current one")
			}
		})
	}
}

func TestUnchangedFilesAreNotRepublished(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), nil)
	h.changed <- struct{}{} // e.g. the event of the loop's own publish
	h.changed <- struct{}{} // taken once the first one was handled
	h.waitForTimer(t)
	select {
	case p := <-h.rec.published:
		t.Errorf("republished (%s) files that had not changed", p.why)
	default:
	}
	if got := h.load(t); got.Generation != h.current.Generation {
		t.Error("the generation changed")
	}
}

func TestRepairsWhileARenewalWaitsForApproval(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), func(o *Options) { o.RenewNow = true })
	pending := h.renewer.next(t)
	if err := os.Remove(filepath.Join(h.dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	h.changed <- struct{}{}
	if p := h.rec.wait(t); p.why != ReasonRepaired {
		t.Fatalf("published for %q, want a repair", p.why)
	}
	next := material(t, t0, t0.Add(200*time.Hour))
	pending.reply <- reply{renewal: &Renewal{Material: next}}
	if p := h.rec.wait(t); p.why != ReasonRenewed || !bytes.Equal(h.load(t).ChainPEM, next.ChainPEM) {
		t.Error("the renewal that finished after the repair was not published")
	}
}

func TestCAChangeRewritesTheCABundleOnly(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), nil)
	other := material(t, t0, t0.Add(time.Hour))
	newCA := append(append([]byte(nil), h.current.CAPEM...), other.ChainPEM...)
	h.renewer.setCA(newCA)
	h.caChange <- struct{}{}
	p := h.rec.wait(t)
	if p.why != ReasonCAChanged {
		t.Fatalf("published for %q", p.why)
	}
	got := h.load(t)
	if !bytes.Equal(got.CAPEM, newCA) || len(got.CAs) != 2 {
		t.Errorf("ca.crt holds %d certificates, want the new bundle of 2", len(got.CAs))
	}
	if !bytes.Equal(got.KeyPEM, h.current.KeyPEM) || !bytes.Equal(got.ChainPEM, h.current.ChainPEM) {
		t.Error("a CA change replaced the pair")
	}
	// The same bundle again, or none: nothing to publish.
	h.caChange <- struct{}{}
	h.renewer.setCA(nil)
	h.caChange <- struct{}{}
	h.waitForTimer(t)
	select {
	case p := <-h.rec.published:
		t.Errorf("republished (%s) for an unchanged CA bundle", p.why)
	default:
	}
}

func TestShutdownAbandonsTheRenewalInFlight(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), func(o *Options) { o.RenewNow = true })
	before := h.load(t)
	h.renewer.next(t)
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run returned %v at shutdown, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	h.done <- nil // for the cleanup
	if got := h.load(t); got.Generation != before.Generation {
		t.Error("the directory changed at shutdown")
	}
}

// failingFiles fails to publish, as a full disk would.
type failingFiles struct{ *writer.Writer }

func (failingFiles) Publish(writer.Material) (*writer.Published, error) {
	return nil, errors.New("no space left on device")
}

func TestRenewalThatCannotBePublishedIsRetriedAndNotCleanedUp(t *testing.T) {
	h := start(t, material(t, t0, t0.Add(100*time.Hour)), func(o *Options) {
		o.RenewNow = true
		o.Files = failingFiles{o.Files.(*writer.Writer)}
	})
	cleaned := false
	h.renewer.next(t).reply <- reply{renewal: &Renewal{
		Material: material(t, t0, t0.Add(200*time.Hour)),
		Done:     func(context.Context, *writer.Published) { cleaned = true },
	}}
	h.step(t, 1500*time.Millisecond)
	h.renewer.next(t)
	if cleaned {
		t.Error("Done was called for a renewal that was not published: its request would be lost")
	}
	if results, _ := h.rec.snapshot(); !slices.Equal(results, []Result{ResultError}) {
		t.Errorf("results %v, want one error", results)
	}
}
