package issue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
)

func TestIssueReportsWhyNoCertificateCame(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   error
		reason string
		// answer is what the API server sends on the watch, of type watchEvt.
		answer   func(t *testing.T, h *harness, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest
		watchEvt watch.EventType
	}{
		{
			name: "denied", want: ErrDenied, reason: "PolicyDenied", watchEvt: watch.Modified,
			answer: func(_ *testing.T, _ *harness, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
				return withCondition(csr, certificatesv1.CertificateDenied, "PolicyDenied", "no such service")
			},
		},
		{
			name: "failed", want: ErrFailed, reason: "SignerError", watchEvt: watch.Modified,
			answer: func(_ *testing.T, _ *harness, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
				approved := withCondition(csr, certificatesv1.CertificateApproved, "ok", "")
				return withCondition(approved, certificatesv1.CertificateFailed, "SignerError", "CA unavailable")
			},
		},
		{
			name: "issued for another key", want: ErrFailed, reason: "InvalidCertificate", watchEvt: watch.Modified,
			answer: func(t *testing.T, h *harness, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
				out := withCondition(csr, certificatesv1.CertificateApproved, "ok", "")
				out.Status.Certificate = h.ca.issue(t, freshKey(t).Public())
				return out
			},
		},
		{
			name: "deleted", want: ErrDeleted, watchEvt: watch.Deleted,
			answer: func(_ *testing.T, _ *harness, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
				return csr
			},
		},
		{
			name: "replaced by another object", want: ErrDeleted, watchEvt: watch.Modified,
			answer: func(_ *testing.T, _ *harness, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
				out := csr.DeepCopy()
				out.UID = types.UID("someone-elses")
				return out
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.startWaiting(t)
			w.watch.Action(tc.watchEvt, tc.answer(t, h, h.client.stored(t, w.req.Name)))
			checkRequestError(t, await(t, w.done).err, tc.want, w.req.Name, tc.reason)
		})
	}
}

func TestIssueReportsACSRGoneBeforeTheWatchStarted(t *testing.T) {
	h := newHarness(t)
	h.client.onCreate = func(csr *certificatesv1.CertificateSigningRequest) {
		delete(h.client.csrs, csr.Name) // under the fake's lock
	}
	req := testRequest()
	_, err := h.issuer.Issue(h.ctx(t), req)
	checkRequestError(t, err, ErrDeleted, req.Name, "")
}

func TestIssueTimesOutWhenNobodyAnswers(t *testing.T) {
	h := newHarness(t)
	req := testRequest()
	ctx, cancel := context.WithTimeout(h.ctx(t), 200*time.Millisecond)
	defer cancel()
	_, err := h.issuer.Issue(ctx, req)
	checkRequestError(t, err, ErrTimeout, req.Name, "")
	var reqErr *RequestError
	if errors.As(err, &reqErr) && reqErr.Signer != testSigner {
		t.Errorf("signer = %q, want %q", reqErr.Signer, testSigner)
	}
}

func checkRequestError(t *testing.T, err, want error, csr, reason string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var reqErr *RequestError
	if !errors.As(err, &reqErr) {
		t.Fatalf("error %v is not a *RequestError", err)
	}
	if reqErr.CSR != csr || reqErr.Reason != reason {
		t.Errorf("RequestError names csr %q reason %q, want %q and %q", reqErr.CSR, reqErr.Reason, csr, reason)
	}
}

func TestIssueRemindsWhatToLookAtOnEveryTick(t *testing.T) {
	h := newHarness(t)
	w := h.startWaiting(t)
	tick := func() {
		t.Helper()
		// The reminder's ticker is the only user of the fake clock.
		err := wait.PollUntilContextTimeout(t.Context(), time.Millisecond, waitLimit, true,
			func(context.Context) (bool, error) { return h.clock.HasWaiters(), nil })
		if err != nil {
			t.Fatal("the reminder never started its ticker")
		}
		h.clock.Step(30 * time.Second)
	}
	// The test signer is not a kubernetes.io one: no person is told to
	// approve it.
	pending := []string{"Certificate request pending approval", "kubectl describe csr " + w.req.Name,
		"kubectl -n shop get events --field-selector type=Warning,involvedObject.name=web-0"}
	for n := 1; n <= 2; n++ {
		tick()
		h.logs.waitFor(t, n, pending...)
	}

	csr := h.client.stored(t, w.req.Name)
	approved := withCondition(csr, certificatesv1.CertificateApproved, "AutoApproved", "by test")
	w.watch.Modify(approved)
	h.logs.waitFor(t, 1, "Certificate request approved", "AutoApproved")
	tick()
	h.logs.waitFor(t, 1, "waiting for the signer", testSigner)
	if n := h.logs.count(pending...); n != 2 {
		t.Errorf("%d pending-approval reminders, want 2", n)
	}

	w.watch.Modify(h.ca.sign(t, csr))
	if o := await(t, w.done); o.err != nil {
		t.Fatal(o.err)
	}
	h.logs.waitFor(t, 1, "Certificate issued")
}

func TestIssueResumesABrokenWatchFromTheLastChangeItSaw(t *testing.T) {
	h := newHarness(t)
	w := h.startWaiting(t)
	csr := h.client.stored(t, w.req.Name)
	approved := withCondition(csr, certificatesv1.CertificateApproved, "AutoApproved", "by test")
	approved.ResourceVersion = "41"
	w.watch.Modify(approved)
	w.watch.Stop() // the API server went away

	second := h.client.nextWatch(t)
	signed := h.ca.sign(t, approved)
	signed.ResourceVersion = "42"
	second.Modify(signed)
	if o := await(t, w.done); o.err != nil {
		t.Fatal(o.err)
	}
	if got := h.client.resourceVersions(); len(got) != 2 || got[0] != csr.ResourceVersion || got[1] != "41" {
		t.Errorf("watches started from resourceVersions %v, want [%s 41]", got, csr.ResourceVersion)
	}
}

func TestIssueReadsTheRequestAgainWhenTheWatchHistoryExpired(t *testing.T) {
	expired := &apierrors.NewResourceExpired("too old resource version").ErrStatus
	t.Run("signed meanwhile", func(t *testing.T) {
		h := newHarness(t)
		w := h.startWaiting(t)
		signed := h.ca.sign(t, h.client.stored(t, w.req.Name))
		signed.ResourceVersion = "77"
		h.client.store(w.req.Name, signed)
		w.watch.Error(expired)
		if o := await(t, w.done); o.err != nil {
			t.Fatal(o.err)
		}
	})
	t.Run("deleted meanwhile", func(t *testing.T) {
		h := newHarness(t)
		w := h.startWaiting(t)
		h.client.store(w.req.Name, nil)
		w.watch.Error(expired)
		checkRequestError(t, await(t, w.done).err, ErrDeleted, w.req.Name, "")
	})
	t.Run("still pending: watched again from the state read", func(t *testing.T) {
		h := newHarness(t)
		w := h.startWaiting(t)
		w.watch.Error(expired)
		again := h.client.nextWatch(t)
		again.Modify(h.ca.sign(t, h.client.stored(t, w.req.Name)))
		if o := await(t, w.done); o.err != nil {
			t.Fatal(o.err)
		}
	})
}

func TestIssueKeepsRetryingARefusedWatchAndSaysSoWhenItTimesOut(t *testing.T) {
	h := newHarness(t)
	req := testRequest()
	h.client.refuseWatches(apierrors.NewForbidden(csrResource, req.Name, errors.New("no watch permission")))
	ctx, cancel := context.WithTimeout(h.ctx(t), 300*time.Millisecond)
	defer cancel()
	_, err := h.issuer.Issue(ctx, req)
	checkRequestError(t, err, ErrTimeout, req.Name, ReasonWatchRefused)
	if !strings.Contains(err.Error(), "no watch permission") || !strings.Contains(err.Error(), "grant watch") {
		t.Errorf("error %q does not say the watch was refused and what to grant", err)
	}
}

// A restarted API server may refuse requests until its authorizer has
// caught up: the agent watches again after a backoff.
func TestIssueWatchesAgainOnceTheAPIServerStopsRefusing(t *testing.T) {
	h := newHarness(t)
	req := testRequest()
	h.client.refuseWatches(apierrors.NewForbidden(csrResource, req.Name, errors.New("authorizer not ready")))
	done := h.issueAsync(h.ctx(t), req)
	err := wait.PollUntilContextTimeout(t.Context(), time.Millisecond, waitLimit, true, func(context.Context) (bool, error) {
		return len(h.client.resourceVersions()) > 0, nil
	})
	if err != nil {
		t.Fatal("the issuer never tried to watch")
	}
	h.client.refuseWatches(nil)
	var w *watch.FakeWatcher
	err = wait.PollUntilContextTimeout(t.Context(), time.Millisecond, waitLimit, true, func(context.Context) (bool, error) {
		select {
		case w = <-h.client.watches:
			return true, nil
		default:
			h.clock.Step(time.Second) // the backoff runs on the fake clock
			return false, nil
		}
	})
	if err != nil {
		t.Fatal("the issuer never watched again")
	}
	w.Modify(h.ca.sign(t, h.client.stored(t, req.Name)))
	if o := await(t, done); o.err != nil {
		t.Fatal(o.err)
	}
}
