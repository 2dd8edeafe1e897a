package writer

import (
	"bytes"
	"crypto/tls"
	"errors"
	"os"
	"testing"
)

// FuzzPublish feeds arbitrary key and chain bytes to Publish: it must not
// panic, must reject with ErrInvalid and leave the directory empty, or
// publish a pair that loads and matches.
func FuzzPublish(f *testing.F) {
	ca := newPKI(f)
	good := ca.issue(f, newKey(f, "p256"), "pkcs8")
	other := ca.issue(f, newKey(f, "ed25519"), "pkcs8")
	f.Add(good.KeyPEM, good.ChainPEM)
	f.Add(other.KeyPEM, good.ChainPEM)
	f.Add(keyPEM(f, newKey(f, "rsa"), "pkcs1"), other.ChainPEM)
	f.Add(good.KeyPEM, good.ChainPEM[:len(good.ChainPEM)/2])
	f.Add(good.KeyPEM, append(bytes.Clone(good.ChainPEM), good.KeyPEM...))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), []byte("-----BEGIN CERTIFICATE-----"))
	f.Add([]byte{}, []byte{})

	f.Fuzz(func(t *testing.T, key, chain []byte) {
		// tmpfs: the fuzzer replays inputs thousands of times while
		// minimizing.
		w, _ := newTestWriter(t, func(o *Options) { o.Dir = memTempDir(t) })
		p, err := w.Publish(Material{KeyPEM: key, ChainPEM: chain, CAPEM: good.CAPEM})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Publish failed without ErrInvalid: %v", err)
			}
			if entries, _ := os.ReadDir(w.opts.Dir); len(entries) != 0 {
				t.Fatalf("rejected material left %d entries behind", len(entries))
			}
			return
		}
		loaded, err := w.Load()
		if err != nil {
			t.Fatalf("published material does not load: %v", err)
		}
		if _, err := tls.X509KeyPair(loaded.BundlePEM, loaded.BundlePEM); err != nil {
			t.Fatalf("published tls.pem is not a pair: %v", err)
		}
		if !bytes.Equal(loaded.ChainPEM, chain) || !loaded.Leaf.Equal(p.Leaf) {
			t.Fatal("published chain differs from the input")
		}
	})
}
