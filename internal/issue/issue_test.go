package issue

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	testingclock "k8s.io/utils/clock/testing"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/identity"
)

const testSigner = "example.com/pods"

func testRequest() Request {
	return Request{
		Name:       CSRName("shop", "web-0", "uid-1"),
		SignerName: testSigner,
		Identity:   identity.Identity{CommonName: "web.shop.svc", DNSNames: []string{"web.shop.svc"}},
		Usages:     config.UsageServer,
		KeyType:    config.KeyECDSAP256,
		Duration:   time.Hour,
		Labels:     map[string]string{LabelPodName: "web-0", LabelPodNamespace: "shop", LabelPodUID: "uid-1"},
	}
}

type harness struct {
	client *fakeClient
	keys   *MemoryKeyStore
	issuer *Issuer
	logs   *logCapture
	clock  *testingclock.FakeClock
	ca     *testCA
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		client: newFakeClient(),
		keys:   &MemoryKeyStore{},
		logs:   newLogCapture(),
		clock:  testingclock.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		ca:     newCA(t),
	}
	var err error
	h.issuer, err = New(Options{Client: h.client, Keys: h.keys, Clock: h.clock, ReminderInterval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) ctx(t *testing.T) context.Context {
	return klog.NewContext(t.Context(), h.logs.logger())
}

// signOnCreate makes the fake API answer every new CSR at once.
func (h *harness) signOnCreate(t *testing.T) {
	h.client.onCreate = func(csr *certificatesv1.CertificateSigningRequest) { *csr = *h.ca.sign(t, csr) }
}

type outcome struct {
	res *Result
	err error
}

func (h *harness) issueAsync(ctx context.Context, req Request) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := h.issuer.Issue(ctx, req)
		ch <- outcome{res, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(waitLimit):
		t.Fatal("Issue did not return")
		return outcome{}
	}
}

func TestNewRequiresAClient(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a client succeeded")
	}
}

func TestIssueCreatesTheRequestedCSRAndReturnsTheCertificate(t *testing.T) {
	h := newHarness(t)
	h.signOnCreate(t)
	req := testRequest()
	res, err := h.issuer.Issue(h.ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	creates, deletes := h.client.calls()
	if len(creates) != 1 || len(deletes) != 0 {
		t.Fatalf("%d creates and %d deletes, want 1 and 0", len(creates), len(deletes))
	}
	got := creates[0]
	if got.Name != req.Name || got.Spec.SignerName != testSigner {
		t.Errorf("created %s for %s, want %s for %s", got.Name, got.Spec.SignerName, req.Name, testSigner)
	}
	wantUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	if !slices.Equal(got.Spec.Usages, wantUsages) {
		t.Errorf("usages = %v, want %v", got.Spec.Usages, wantUsages)
	}
	if es := got.Spec.ExpirationSeconds; es == nil || *es != 3600 {
		t.Errorf("expirationSeconds = %v, want 3600", es)
	}
	for k, v := range req.Labels {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
		}
	}
	pub, err := requestPublicKey(got.Spec.Request)
	if err != nil || !samePublicKey(res.Key.Public(), pub) {
		t.Errorf("the CSR's request is not for the returned key (%v)", err)
	}
	key, err := DecodeKey(res.KeyPEM)
	if err != nil || !samePublicKey(res.Key.Public(), key.Public()) {
		t.Errorf("KeyPEM is not the returned key (%v)", err)
	}
	if err := checkIssued(res.ChainPEM, res.Key); err != nil {
		t.Errorf("ChainPEM: %v", err)
	}
	if pending, _ := h.keys.Load(); pending != res.Key {
		t.Error("the key is not kept as pending until Done")
	}
	h.logs.waitFor(t, 1, "Certificate requested", req.Name)
}

func TestIssueResumesItsOwnPendingCSRWithoutCreatingOne(t *testing.T) {
	h := newHarness(t)
	req := testRequest()
	key := freshKey(t)
	if err := h.keys.Save(key); err != nil {
		t.Fatal(err)
	}
	request, err := CertificateRequest(key, req.Identity)
	if err != nil {
		t.Fatal(err)
	}
	existing := h.client.put(&certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: req.Name},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: request, SignerName: testSigner, Usages: KeyUsages(key, req.Usages)},
	})
	done := h.issueAsync(h.ctx(t), req)
	h.client.nextWatch(t).Modify(h.ca.sign(t, existing))
	o := await(t, done)
	if o.err != nil {
		t.Fatal(o.err)
	}
	if !samePublicKey(o.res.Key.Public(), key.Public()) {
		t.Error("the result is not for the pending key")
	}
	if o.res.CSR.UID != existing.UID {
		t.Errorf("result CSR uid %s, want %s", o.res.CSR.UID, existing.UID)
	}
	if creates, deletes := h.client.calls(); len(creates)+len(deletes) != 0 {
		t.Errorf("%d creates and %d deletes, want none", len(creates), len(deletes))
	}
	h.logs.waitFor(t, 1, "Resuming pending certificate request")
}

func TestIssueReplacesALeftoverCSRItCannotUse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sameKey   bool
		condition certificatesv1.RequestConditionType
	}{
		{"another key", false, ""},
		{"own key, denied", true, certificatesv1.CertificateDenied},
		{"own key, failed", true, certificatesv1.CertificateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.signOnCreate(t)
			req := testRequest()
			leftoverKey := freshKey(t)
			if tc.sameKey {
				if err := h.keys.Save(leftoverKey); err != nil {
					t.Fatal(err)
				}
			}
			request, err := CertificateRequest(leftoverKey, req.Identity)
			if err != nil {
				t.Fatal(err)
			}
			leftover := &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{Name: req.Name},
				Spec:       certificatesv1.CertificateSigningRequestSpec{Request: request, SignerName: testSigner},
			}
			if tc.condition != "" {
				leftover = withCondition(leftover, tc.condition, "Earlier", "an earlier attempt")
			}
			old := h.client.put(leftover)

			res, err := h.issuer.Issue(h.ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			creates, deletes := h.client.calls()
			if !slices.Equal(deletes, []string{req.Name}) || len(creates) != 1 {
				t.Fatalf("deletes %v and %d creates, want [%s] and 1", deletes, len(creates), req.Name)
			}
			if res.CSR.UID == old.UID {
				t.Error("the result is the leftover CSR")
			}
			h.logs.waitFor(t, 1, "Removing leftover certificate request", string(old.UID))
		})
	}
}

func TestIssueReusesAPendingKeyOnlyOfTheConfiguredType(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending config.KeyType
		reuse   bool
	}{
		{"same type", config.KeyECDSAP256, true},
		{"other type", config.KeyEd25519, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.signOnCreate(t)
			pending := testKey(t, tc.pending)
			if err := h.keys.Save(pending); err != nil {
				t.Fatal(err)
			}
			res, err := h.issuer.Issue(h.ctx(t), testRequest())
			if err != nil {
				t.Fatal(err)
			}
			if got := samePublicKey(res.Key.Public(), pending.Public()); got != tc.reuse {
				t.Errorf("pending key reused = %v, want %v", got, tc.reuse)
			}
			if kt, _ := KeyTypeOf(res.Key); kt != config.KeyECDSAP256 {
				t.Errorf("key type %s, want %s", kt, config.KeyECDSAP256)
			}
			if stored, _ := h.keys.Load(); stored != res.Key {
				t.Error("the key used is not the one kept pending")
			}
		})
	}
}

func TestDoneForgetsThePendingKeyAndDeletesTheCSROnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name        string
		deleteCSR   bool
		gone        bool // someone else deleted the CSR already
		replacedUID bool // the name now holds another object
		wantDeleted bool
		wantExists  bool
	}{
		{name: "keep", deleteCSR: false, wantExists: true},
		{name: "delete", deleteCSR: true, wantDeleted: true},
		{name: "delete, already gone", deleteCSR: true, gone: true},
		{name: "delete, replaced", deleteCSR: true, replacedUID: true, wantExists: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.signOnCreate(t)
			req := testRequest()
			res, err := h.issuer.Issue(h.ctx(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.gone || tc.replacedUID {
				if err := h.client.DeleteCSR(t.Context(), req.Name, res.CSR.UID); err != nil {
					t.Fatal(err)
				}
			}
			if tc.replacedUID {
				h.client.put(res.CSR)
			}
			_, before := h.client.calls()
			if err := h.issuer.Done(t.Context(), res, tc.deleteCSR); err != nil {
				t.Fatalf("Done: %v", err)
			}
			if key, _ := h.keys.Load(); key != nil {
				t.Error("the pending key is still kept")
			}
			_, after := h.client.calls()
			if deleted := len(after) > len(before); deleted != tc.wantDeleted {
				t.Errorf("CSR deleted = %v, want %v", deleted, tc.wantDeleted)
			}
			_, err = h.client.GetCSR(t.Context(), req.Name)
			if exists := err == nil; exists != tc.wantExists {
				t.Errorf("CSR exists after Done = %v", exists)
			}
		})
	}
}
