package writer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// t0 is the fake clock's start; its generation is genAt(t0).
var t0 = time.Date(2026, 11, 26, 22, 30, 0, 123456789, time.UTC)

const firstGen = "..2026_11_26_22_30_00.123456789"

// rsaKey is generated once: RSA key generation under -race takes seconds.
var rsaKey = sync.OnceValue(func() crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		k = rsaKey()
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyPEM encodes k as format: "pkcs8", "pkcs1" (RSA) or "sec1" (ECDSA).
func keyPEM(t testing.TB, k crypto.Signer, format string) []byte {
	t.Helper()
	var (
		typ string
		der []byte
		err error
	)
	switch format {
	case "pkcs8":
		typ = "PRIVATE KEY"
		der, err = x509.MarshalPKCS8PrivateKey(k)
	case "pkcs1":
		typ, der = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))
	case "sec1":
		typ = "EC PRIVATE KEY"
		der, err = x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// testPKI is a root CA and an intermediate, the shape a real signer returns.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	rootPEM, interPEM []byte
}

var serial atomic.Int64 // tests run in parallel

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{rootKey: newKey(t, "p256"), interKey: newKey(t, "p256")}
	p.root, p.rootPEM = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, nil, p.rootKey.Public(), p.rootKey)
	p.inter, p.interPEM = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}, p.root, p.interKey.Public(), p.rootKey)
	return p
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, []byte) {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = t0.Add(-time.Hour), t0.Add(24*time.Hour)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// issue returns material for key: a leaf signed by the intermediate, the
// chain leaf+intermediate, and the root as CA bundle.
func (p *testPKI) issue(t testing.TB, key crypto.Signer, keyFormat string) Material {
	t.Helper()
	_, leafPEM := sign(t, &x509.Certificate{
		Subject:  pkix.Name{CommonName: "pod.ns.svc"},
		DNSNames: []string{"pod.ns.svc", "pod.ns.svc.cluster.local"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, p.inter, key.Public(), p.interKey)
	return Material{
		KeyPEM:   keyPEM(t, key, keyFormat),
		ChainPEM: append(leafPEM, p.interPEM...),
		CAPEM:    p.rootPEM,
	}
}

// newTestWriter is a Writer on a fresh directory with a fake clock.
func newTestWriter(t testing.TB, mod func(*Options)) (*Writer, *testingclock.FakePassiveClock) {
	t.Helper()
	clk := testingclock.NewFakePassiveClock(t0)
	o := Options{Clock: clk}
	if mod != nil {
		mod(&o)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return w, clk
}

// snapshot describes every entry under dir without following symlinks:
// directories, symlink targets, file modes and content hashes.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	s := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			s[rel] = fmt.Sprintf("dir %v", info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			s[rel] = "-> " + target
			return err
		default:
			b, err := os.ReadFile(path)
			sum := sha256.Sum256(b)
			s[rel] = fmt.Sprintf("file %v %s", info.Mode().Perm(), hex.EncodeToString(sum[:8]))
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertTidy checks the steady state: exactly one generation, ..data
// pointing to it, every visible name in want a symlink through ..data, no
// temporary links. It returns the generation.
func assertTidy(t testing.TB, w *Writer, want ...string) string {
	t.Helper()
	dir := w.opts.Dir
	gens, err := generations(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 1 {
		t.Fatalf("generations = %v, want exactly one; tree: %v", gens, snapshot(t, dir))
	}
	if got := w.currentGeneration(); got != gens[0] {
		t.Fatalf("%s -> %q, want %q", dataLink, got, gens[0])
	}
	for _, tmp := range []string{dataTmp, linkTmp} {
		if _, err := os.Lstat(filepath.Join(dir, tmp)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", tmp, err)
		}
	}
	for _, name := range want {
		if target, err := os.Readlink(filepath.Join(dir, name)); err != nil || target != visibleTarget(name) {
			t.Errorf("%s -> %q (%v), want %q", name, target, err, visibleTarget(name))
		}
	}
	return gens[0]
}

var defaultNames = []string{DefaultKeyFile, DefaultCertFile, DefaultCAFile, DefaultBundleFile}

// placeGeneration publishes m elsewhere and moves the generation into w's
// directory under name, without touching ..data: a hand-crafted leftover.
func placeGeneration(t testing.TB, w *Writer, name string, m Material) {
	t.Helper()
	other, _ := newTestWriter(t, nil)
	if _, err := other.Publish(m); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(other.opts.Dir, other.currentGeneration())
	if err := os.Rename(src, filepath.Join(w.opts.Dir, name)); err != nil {
		t.Fatal(err)
	}
}

func mustPublish(t testing.TB, w *Writer, m Material) *Published {
	t.Helper()
	p, err := w.Publish(m)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return p
}

func errContains(err error, subs ...string) bool {
	for _, s := range subs {
		if err == nil || !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}
