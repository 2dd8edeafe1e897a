package writer

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// readStats counts one reader strategy's outcomes.
type readStats struct {
	ok, retry, bad atomic.Int64
	firstBad       atomic.Pointer[error]
}

// record checks a read byte for byte against the published pairs: stricter
// than tls.X509KeyPair, and cheap enough under -race to leave the CPU to the
// writer.
func (s *readStats) record(certPEM, keyPEM []byte, err error, known []*Published) {
	if errors.Is(err, fs.ErrNotExist) {
		// The reader resolved ..data just before the previous generation
		// was removed: documented as "retry", not a torn pair.
		s.retry.Add(1)
		return
	}
	if err == nil {
		err = errors.New("pair is not one that was published")
		for _, p := range known {
			if bytes.Equal(certPEM, p.ChainPEM) && bytes.Equal(keyPEM, p.KeyPEM) ||
				bytes.Equal(certPEM, p.BundlePEM) && bytes.Equal(keyPEM, p.BundlePEM) {
				err = nil
			}
		}
	}
	if err != nil {
		if _, tlsErr := tls.X509KeyPair(certPEM, keyPEM); tlsErr != nil {
			err = tlsErr
		}
		s.bad.Add(1)
		s.firstBad.CompareAndSwap(nil, &err)
		return
	}
	s.ok.Add(1)
}

// TestReadersNeverSeeMixedPairs republishes two alternating key pairs as
// fast as possible while readers load them the ways the package doc
// recommends (tls.pem; ..data resolved once) and the way it warns against
// (tls.crt then tls.key through the visible names).
func TestReadersNeverSeeMixedPairs(t *testing.T) {
	publishes := 2000
	if testing.Short() {
		publishes = 200
	}
	// The real clock, on tmpfs: this test is about what readers see, and a
	// busy disk would only make it slower.
	w, err := New(Options{Dir: memTempDir(t)})
	must(t, err)
	ca := newPKI(t)
	materials := []Material{ca.issue(t, newKey(t, "p256"), "pkcs8"), ca.issue(t, newKey(t, "ed25519"), "pkcs8")}
	var known []*Published
	for _, m := range materials {
		known = append(known, mustPublish(t, w, m))
	}
	dir := w.opts.Dir

	var bundle, pinned, naive, load readStats
	readers := map[*readStats]func() ([]byte, []byte, error){
		&load: func() ([]byte, []byte, error) {
			p, err := w.Load()
			if errors.Is(err, errChurn) {
				// Publishing back to back, faster than any renewal:
				// giving up is Load's documented answer.
				return nil, nil, fs.ErrNotExist
			}
			if err != nil {
				return nil, nil, err
			}
			return p.ChainPEM, p.KeyPEM, nil
		},
		&bundle: func() ([]byte, []byte, error) {
			b, err := os.ReadFile(filepath.Join(dir, "tls.pem"))
			return b, b, err
		},
		&pinned: func() ([]byte, []byte, error) {
			gen, err := os.Readlink(filepath.Join(dir, dataLink))
			if err != nil {
				return nil, nil, err
			}
			c, err := os.ReadFile(filepath.Join(dir, gen, "tls.crt"))
			if err != nil {
				return nil, nil, err
			}
			k, err := os.ReadFile(filepath.Join(dir, gen, "tls.key"))
			return c, k, err
		},
		&naive: func() ([]byte, []byte, error) {
			c, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
			if err != nil {
				return nil, nil, err
			}
			k, err := os.ReadFile(filepath.Join(dir, "tls.key"))
			return c, k, err
		},
	}

	// Readers run freely during publishes but at most readsPerPublish
	// ahead of the writer: spinning readers would take most of the two
	// CPUs and turn seconds into minutes under -race.
	const readsPerPublish = 2
	var prog progress
	prog.advance()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for stats, read := range readers {
		wg.Go(func() {
			for reads := 0; ; {
				n, next := prog.get()
				if reads >= readsPerPublish*n {
					select {
					case <-next:
						continue
					case <-done:
						return
					}
				}
				c, k, err := read()
				stats.record(c, k, err, known)
				reads++
			}
		})
	}
	for i := range publishes {
		if _, err := w.Publish(materials[i%2]); err != nil {
			close(done)
			wg.Wait()
			t.Fatalf("publish %d: %v", i, err)
		}
		prog.advance()
	}
	close(done)
	wg.Wait()

	for name, s := range map[string]*readStats{"tls.pem": &bundle, "..data resolved once": &pinned, "Writer.Load": &load} {
		t.Logf("%s: %d consistent, %d retried, %d bad", name, s.ok.Load(), s.retry.Load(), s.bad.Load())
		if s.bad.Load() != 0 {
			t.Errorf("%s: %d inconsistent reads, first: %v", name, s.bad.Load(), *s.firstBad.Load())
		}
		if s.ok.Load() == 0 {
			t.Errorf("%s: no successful read", name)
		}
	}
	// Not asserted: how often it tears depends on scheduling. It is why the
	// package doc tells readers not to do this.
	t.Logf("tls.crt then tls.key by visible name: %d consistent, %d retried, %d mismatched",
		naive.ok.Load(), naive.retry.Load(), naive.bad.Load())
	assertTidy(t, w, defaultNames...)
}

// progress counts publishes; get's channel is closed at the next one.
type progress struct {
	mu   sync.Mutex
	n    int
	next chan struct{}
}

func (p *progress) advance() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next != nil {
		close(p.next)
	}
	p.n++
	p.next = make(chan struct{})
}

func (p *progress) get() (int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.next
}

// memTempDir is a temporary directory on tmpfs (like an emptyDir with
// medium: Memory) when /dev/shm is usable, else t.TempDir().
func memTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "writer-test-")
	if err != nil {
		t.Logf("no tmpfs (%v), using the default temporary directory", err)
		return t.TempDir()
	}
	t.Cleanup(func() { must(t, os.RemoveAll(dir)) })
	return dir
}
