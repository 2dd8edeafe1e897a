package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/kube"
	"github.com/csr-agent/csr-agent/internal/writer"
)

const testSigner = "example.com/pods"

// fakeAPI answers the agent's non-CSR reads from fields. The embedded
// issue.Client is nil: a test that reaches the CSR API panics, which is the
// point where it does not expect to.
type fakeAPI struct {
	issue.Client

	mu        sync.Mutex
	bundle    []byte
	bundleErr error
	// cachedBundle, if set, is what a read from the API server's cache
	// answers instead of bundle: one that has not caught up yet.
	cachedBundle []byte
	// cachedErr, if set, fails a read from the API server's cache.
	cachedErr    error
	cachedCalls  int
	pod          *kube.Pod
	podErr       error
	services     []kube.Service
	servicesErr  error
	bundleCalls  int
	podCalls     int
	serviceCalls int
}

var _ API = (*fakeAPI)(nil)

func (f *fakeAPI) TrustBundle(_ context.Context, signerName string, fromCache bool) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bundleCalls++
	if signerName != testSigner {
		return nil, nil
	}
	if fromCache && f.cachedErr != nil {
		f.cachedCalls++
		return nil, f.cachedErr
	}
	if fromCache && f.cachedBundle != nil {
		f.cachedCalls++
		return f.cachedBundle, nil
	}
	return f.bundle, f.bundleErr
}

func (f *fakeAPI) GetPod(_ context.Context, namespace, name string) (*kube.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.podCalls++
	if f.podErr != nil {
		return nil, f.podErr
	}
	return f.pod, nil
}

func (f *fakeAPI) ListServices(_ context.Context, namespace string) ([]kube.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serviceCalls++
	return f.services, f.servicesErr
}

func pod(labels map[string]string) *kube.Pod {
	p := &kube.Pod{}
	p.Metadata.Name, p.Metadata.Labels = "web-0", labels
	return p
}

func service(name string, selector map[string]string) kube.Service {
	var s kube.Service
	s.Metadata.Name, s.Spec.Selector = name, selector
	return s
}

func testConfig(dir string) *config.Agent {
	return &config.Agent{
		PodName:       "web-0",
		PodNamespace:  "shop",
		PodUID:        "uid-1",
		CertDir:       dir,
		SignerName:    testSigner,
		ServiceNames:  config.Services{Names: []string{"web"}},
		ClusterDomain: "cluster.local",
		Usages:        config.UsageServer,
		KeyType:       config.KeyECDSAP256,
		CertDuration:  24 * time.Hour,
		IssueTimeout:  time.Minute,
	}
}

// newTestAgent wires an Agent through New with a writer on a fresh
// directory and the given API and clock.
func newTestAgent(t *testing.T, api *fakeAPI, clk clock.PassiveClock) *Agent {
	t.Helper()
	cfg := testConfig(t.TempDir())
	w, err := writer.New(writer.Options{Dir: cfg.CertDir})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issue.New(issue.Options{Client: api})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg, API: api, Writer: w, Issuer: iss, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newKey(t testing.TB, kt config.KeyType) crypto.Signer {
	t.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kt {
	case config.KeyECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case config.KeyEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no test key of type %s", kt)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// logCapture collects log lines as funcr formats them.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCapture) context(t *testing.T) context.Context {
	return klog.NewContext(t.Context(), funcr.New(func(_, args string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lines = append(c.lines, args)
	}, funcr.Options{}))
}

func (c *logCapture) has(part string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, part) {
			return true
		}
	}
	return false
}
