package issue

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	"github.com/csr-agent/csr-agent/internal/pki/pkitest"

	"github.com/csr-agent/csr-agent/internal/config"
)

// waitLimit bounds every wait on another goroutine; reaching it is a failure,
// never the expected path.
const waitLimit = 30 * time.Second

var allKeyTypes = []config.KeyType{
	config.KeyECDSAP256, config.KeyECDSAP384, config.KeyRSA2048,
	config.KeyRSA3072, config.KeyRSA4096, config.KeyEd25519,
}

// generated holds one key per type, made with GenerateKey on first use:
// RSA-4096 generation takes seconds under -race.
var generated = func() map[config.KeyType]func() (crypto.Signer, error) {
	m := make(map[config.KeyType]func() (crypto.Signer, error))
	for _, kt := range allKeyTypes {
		m[kt] = sync.OnceValues(func() (crypto.Signer, error) { return GenerateKey(kt, rand.Reader) })
	}
	return m
}()

func testKey(t testing.TB, kt config.KeyType) crypto.Signer {
	t.Helper()
	key, err := generated[kt]()
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", kt, err)
	}
	return key
}

// freshKey is a key no other test holds.
func freshKey(t testing.TB) crypto.Signer {
	t.Helper()
	key, err := GenerateKey(config.KeyECDSAP256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// testCA plays the signer.
type testCA struct{ *pkitest.CA }

func newCA(t testing.TB) *testCA { return &testCA{pkitest.NewCA(t)} }

// issue returns the chain (leaf, then CA) for pub.
func (ca *testCA) issue(t testing.TB, pub crypto.PublicKey, dnsNames ...string) []byte {
	t.Helper()
	return append(ca.Issue(t, pub, pkitest.Leaf{CN: "leaf", DNSNames: dnsNames}), ca.PEM()...)
}

// sign marks csr approved and issued for the key in its request, as an
// approver and a signer would.
func (ca *testCA) sign(t testing.TB, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	pub, err := requestPublicKey(csr.Spec.Request)
	if err != nil {
		t.Fatal(err)
	}
	out := withCondition(csr, certificatesv1.CertificateApproved, "AutoApproved", "test approver")
	out.Status.Certificate = ca.issue(t, pub)
	return out
}

func withCondition(csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType, reason, msg string) *certificatesv1.CertificateSigningRequest {
	out := csr.DeepCopy()
	out.Status.Conditions = append(out.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: typ, Status: "True", Reason: reason, Message: msg,
	})
	return out
}

// fakeClient is an in-memory API holding CSRs. Every watch it opens is
// handed to the test on watches, which then plays the API server's events.
type fakeClient struct {
	mu       sync.Mutex
	csrs     map[string]*certificatesv1.CertificateSigningRequest
	uids     int
	creates  []*certificatesv1.CertificateSigningRequest
	deletes  []string
	onCreate func(*certificatesv1.CertificateSigningRequest) // runs under mu on the stored object
	watches  chan *watch.FakeWatcher
	// watchedFrom holds the resourceVersion of every watch opened.
	watchedFrom []string
	// watchErr, if set, is the answer to every watch request.
	watchErr error
	// gone holds CSRs deleted by onCreate, for a watch to replay.
	gone map[string]*certificatesv1.CertificateSigningRequest
}

var _ Client = (*fakeClient)(nil)

func newFakeClient() *fakeClient {
	return &fakeClient{
		csrs:    make(map[string]*certificatesv1.CertificateSigningRequest),
		gone:    make(map[string]*certificatesv1.CertificateSigningRequest),
		watches: make(chan *watch.FakeWatcher, 16),
	}
}

var csrResource = certificatesv1.Resource("certificatesigningrequests")

// put stores csr as if someone else had created it, giving it a UID.
func (f *fakeClient) put(csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	stored := csr.DeepCopy()
	f.uids++
	stored.UID = types.UID(fmt.Sprintf("uid-%d", f.uids))
	stored.ResourceVersion = fmt.Sprint(f.uids)
	f.csrs[stored.Name] = stored
	return stored.DeepCopy()
}

func (f *fakeClient) CreateCSR(_ context.Context, csr *certificatesv1.CertificateSigningRequest) (*certificatesv1.CertificateSigningRequest, error) {
	if _, err := f.GetCSR(context.Background(), csr.Name); err == nil {
		return nil, apierrors.NewAlreadyExists(csrResource, csr.Name)
	}
	stored := f.put(csr)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, stored.DeepCopy())
	if f.onCreate != nil {
		// What onCreate does happens after the create, as a later change
		// that a watch from the created object's resourceVersion replays.
		f.uids++
		later := f.csrs[stored.Name]
		f.onCreate(later)
		later.ResourceVersion = fmt.Sprint(f.uids)
		if _, ok := f.csrs[stored.Name]; !ok {
			f.gone[stored.Name] = later
		}
	}
	return stored, nil
}

func (f *fakeClient) GetCSR(_ context.Context, name string) (*certificatesv1.CertificateSigningRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	csr, ok := f.csrs[name]
	if !ok {
		return nil, apierrors.NewNotFound(csrResource, name)
	}
	return csr.DeepCopy(), nil
}

func (f *fakeClient) DeleteCSR(_ context.Context, name string, uid types.UID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	csr, ok := f.csrs[name]
	switch {
	case !ok:
		return apierrors.NewNotFound(csrResource, name)
	case csr.UID != uid:
		return apierrors.NewConflict(csrResource, name, fmt.Errorf("uid %s, precondition %s", csr.UID, uid))
	}
	delete(f.csrs, name)
	f.deletes = append(f.deletes, name)
	return nil
}

// WatchCSR opens a watch the test plays events on. Like the API server, it
// first replays a change made after opts.ResourceVersion (see onCreate).
func (f *fakeClient) WatchCSR(_ context.Context, name string, opts metav1.ListOptions) (watch.Interface, error) {
	w := watch.NewFakeWithChanSize(1, false)
	f.mu.Lock()
	f.watchedFrom = append(f.watchedFrom, opts.ResourceVersion)
	if err := f.watchErr; err != nil {
		f.mu.Unlock()
		return nil, err
	}
	from, _ := strconv.Atoi(opts.ResourceVersion)
	if csr, ok := f.csrs[name]; ok && rv(csr) > from {
		w.Modify(csr.DeepCopy())
	} else if csr, ok := f.gone[name]; ok && rv(csr) > from {
		w.Delete(csr.DeepCopy())
	}
	f.mu.Unlock()
	f.watches <- w
	return w, nil
}

func rv(csr *certificatesv1.CertificateSigningRequest) int {
	n, _ := strconv.Atoi(csr.ResourceVersion)
	return n
}

func (f *fakeClient) calls() (creates []*certificatesv1.CertificateSigningRequest, deletes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(creates, f.creates...), append(deletes, f.deletes...)
}

// resourceVersions returns the resourceVersion each watch started from.
func (f *fakeClient) resourceVersions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.watchedFrom...)
}

// nextWatch returns the next watch the issuer opens.
func (f *fakeClient) nextWatch(t testing.TB) *watch.FakeWatcher {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(waitLimit):
		t.Fatal("the issuer never opened a watch")
		return nil
	}
}

// logCapture collects log lines (message and key/value pairs, as funcr
// formats them) from any goroutine.
type logCapture struct {
	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

func newLogCapture() *logCapture { return &logCapture{notify: make(chan struct{}, 1)} }

func (c *logCapture) logger() klog.Logger {
	return funcr.New(func(_, args string) {
		c.mu.Lock()
		c.lines = append(c.lines, args)
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}, funcr.Options{})
}

// count is the number of lines containing all of parts.
func (c *logCapture) count(parts ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if containsAll(l, parts) {
			n++
		}
	}
	return n
}

// waitFor waits until n lines contain all of parts.
func (c *logCapture) waitFor(t testing.TB, n int, parts ...string) {
	t.Helper()
	deadline := time.After(waitLimit)
	for c.count(parts...) < n {
		select {
		case <-c.notify:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("no %d log lines with %q; got:\n%s", n, parts, strings.Join(c.lines, "\n"))
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// waiting is an Issue under way: its CSR created, its first watch open.
type waiting struct {
	req   Request
	done  <-chan outcome
	watch *watch.FakeWatcher
}

// startWaiting starts Issue for testRequest() and returns once it watches.
func (h *harness) startWaiting(t *testing.T) waiting {
	t.Helper()
	req := testRequest()
	done := h.issueAsync(h.ctx(t), req)
	return waiting{req: req, done: done, watch: h.client.nextWatch(t)}
}

// stored is the CSR called name as the fake API holds it.
func (f *fakeClient) stored(t *testing.T, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csr, err := f.GetCSR(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// store replaces the CSR the fake API holds, or removes it (csr nil), as
// someone else's write would, without telling any watch.
func (f *fakeClient) store(name string, csr *certificatesv1.CertificateSigningRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if csr == nil {
		delete(f.csrs, name)
		return
	}
	f.csrs[name] = csr
}

// refuseWatches makes every watch request fail with err; nil allows them.
func (f *fakeClient) refuseWatches(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchErr = err
}
