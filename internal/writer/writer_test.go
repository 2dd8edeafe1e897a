package writer

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

func TestPublishWritesEveryFileThroughData(t *testing.T) {
	t.Parallel()
	ca := newPKI(t)
	for _, tc := range []struct{ kind, format string }{
		{"p256", "pkcs8"}, {"p256", "sec1"}, {"p384", "pkcs8"},
		{"rsa", "pkcs8"}, {"rsa", "pkcs1"}, {"ed25519", "pkcs8"},
	} {
		t.Run(tc.kind+"/"+tc.format, func(t *testing.T) {
			t.Parallel()
			w, _ := newTestWriter(t, nil)
			key := newKey(t, tc.kind)
			m := ca.issue(t, key, tc.format)
			p := mustPublish(t, w, m)

			if gen := assertTidy(t, w, defaultNames...); gen != firstGen || p.Generation != gen {
				t.Errorf("generation = %q (returned %q), want %q", gen, p.Generation, firstGen)
			}
			pkcs8 := keyPEM(t, key, "pkcs8")
			for _, f := range []struct {
				name string
				want []byte
				mode fs.FileMode
			}{
				{"tls.key", pkcs8, 0o600},
				{"tls.crt", m.ChainPEM, 0o644},
				{"ca.crt", m.CAPEM, 0o644},
				{"tls.pem", append(bytes.Clone(pkcs8), m.ChainPEM...), 0o600},
			} {
				path := filepath.Join(w.opts.Dir, f.name)
				got, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(got, f.want) {
					t.Errorf("%s = %q (%v), want %q", f.name, got, err, f.want)
				}
				if info, err := os.Stat(path); err != nil || info.Mode().Perm() != f.mode {
					t.Errorf("%s mode = %v (%v), want %v", f.name, info.Mode().Perm(), err, f.mode)
				}
			}
			if _, err := os.Lstat(filepath.Join(w.opts.Dir, DefaultKeystoreFile)); !os.IsNotExist(err) {
				t.Errorf("keystore published without a password (%v)", err)
			}
			bundle, _ := os.ReadFile(filepath.Join(w.opts.Dir, "tls.pem"))
			if _, err := tls.X509KeyPair(bundle, bundle); err != nil {
				t.Errorf("tls.pem does not load as a pair: %v", err)
			}
			if !p.Leaf.Equal(p.Chain[0]) || len(p.Chain) != 2 || len(p.CAs) != 1 || p.Leaf.DNSNames[0] != "pod.ns.svc" {
				t.Errorf("Published = leaf %v, chain %d, CAs %d", p.Leaf.Subject, len(p.Chain), len(p.CAs))
			}
		})
	}
}

func TestPublishAppliesConfiguredNamesAndModes(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, func(o *Options) {
		o.KeyFile, o.CertFile, o.CAFile, o.BundleFile = "key.pem", "cert.pem", "root.pem", "both.pem"
		o.KeyMode, o.CertMode = 0o640, 0o444
	})
	mustPublish(t, w, newPKI(t).issue(t, newKey(t, "p256"), "pkcs8"))
	gen := assertTidy(t, w, "key.pem", "cert.pem", "root.pem", "both.pem")
	want := map[string]string{
		"..data": "-> " + gen, "key.pem": "-> ..data/key.pem", "cert.pem": "-> ..data/cert.pem",
		"root.pem": "-> ..data/root.pem", "both.pem": "-> ..data/both.pem", gen: "dir -rwxr-xr-x",
	}
	got := snapshot(t, w.opts.Dir)
	for name, mode := range map[string]string{"key.pem": "-rw-r-----", "both.pem": "-rw-r-----", "cert.pem": "-r--r--r--", "root.pem": "-r--r--r--"} {
		entry := got[filepath.Join(gen, name)]
		if !strings.HasPrefix(entry, "file "+mode+" ") {
			t.Errorf("%s = %q, want mode %s", name, entry, mode)
		}
		delete(got, filepath.Join(gen, name))
	}
	for name, entry := range want {
		if got[name] != entry {
			t.Errorf("%s = %q, want %q", name, got[name], entry)
		}
		delete(got, name)
	}
	if len(got) != 0 {
		t.Errorf("unexpected entries: %v", got)
	}
}

// Not parallel: the umask is per process, and no other test of this
// package runs while a sequential one does.
func TestPublishModesDoNotDependOnUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	w, _ := newTestWriter(t, func(o *Options) { o.KeyMode = 0o640 })
	mustPublish(t, w, newPKI(t).issue(t, newKey(t, "p256"), "pkcs8"))
	gen := assertTidy(t, w, defaultNames...)
	got := snapshot(t, w.opts.Dir)
	for name, want := range map[string]string{
		gen: "dir -rwxr-xr-x", filepath.Join(gen, "tls.key"): "file -rw-r-----", filepath.Join(gen, "tls.crt"): "file -rw-r--r--",
	} {
		if !strings.HasPrefix(got[name], want) {
			t.Errorf("%s = %q under umask 077, want %q", name, got[name], want)
		}
	}
}

func TestRepublishSwapsContentAndRemovesPreviousGeneration(t *testing.T) {
	t.Parallel()
	w, clk := newTestWriter(t, nil)
	ca := newPKI(t)
	a, b := ca.issue(t, newKey(t, "p256"), "pkcs8"), ca.issue(t, newKey(t, "p384"), "pkcs8")
	first := mustPublish(t, w, a)

	clk.SetTime(t0.Add(time.Hour))
	second := mustPublish(t, w, b)
	if gen := assertTidy(t, w, defaultNames...); gen != "..2026_11_26_23_30_00.123456789" {
		t.Errorf("generation = %q", gen)
	}
	if _, err := os.Stat(filepath.Join(w.opts.Dir, first.Generation)); !os.IsNotExist(err) {
		t.Errorf("previous generation still there (%v)", err)
	}
	got, _ := os.ReadFile(filepath.Join(w.opts.Dir, "tls.crt"))
	if !bytes.Equal(got, b.ChainPEM) {
		t.Error("tls.crt still holds the first chain")
	}

	// A clock that steps back (or stands still) must not make a newer
	// generation sort first: Recover picks the newest by name.
	clk.SetTime(t0)
	third := mustPublish(t, w, a)
	if third.Generation <= second.Generation {
		t.Errorf("generation %q does not sort after %q", third.Generation, second.Generation)
	}
	assertTidy(t, w, defaultNames...)
}

func TestPublishWithoutCABundleUnlinksCAFile(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, nil)
	m := newPKI(t).issue(t, newKey(t, "p256"), "pkcs8")
	mustPublish(t, w, m)
	m.CAPEM = []byte("\n \n")
	p := mustPublish(t, w, m)
	assertTidy(t, w, "tls.key", "tls.crt", "tls.pem")
	if _, err := os.Lstat(filepath.Join(w.opts.Dir, "ca.crt")); !os.IsNotExist(err) {
		t.Errorf("ca.crt still visible (%v)", err)
	}
	if p.CAPEM != nil || p.CAs != nil {
		t.Errorf("Published has a CA bundle: %q", p.CAPEM)
	}
	if err := w.Verify(p); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestPublishReplacesForeignFileAtVisibleName(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, nil)
	if err := os.WriteFile(filepath.Join(w.opts.Dir, "tls.crt"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := mustPublish(t, w, newPKI(t).issue(t, newKey(t, "p256"), "pkcs8"))
	assertTidy(t, w, defaultNames...)
	if err := w.Verify(p); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestPublishRejectsBadMaterialAndChangesNothing(t *testing.T) {
	t.Parallel()
	ca := newPKI(t)
	good := ca.issue(t, newKey(t, "p256"), "pkcs8")
	other := ca.issue(t, newKey(t, "p256"), "pkcs8")
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	x25519DER, _ := x509.MarshalPKCS8PrivateKey(x25519)
	leafOnly, _ := pem.Decode(good.ChainPEM)

	with := func(f func(*Material)) Material {
		m := good
		f(&m)
		return m
	}
	for _, tc := range []struct {
		name     string
		m        Material
		mismatch bool
		msg      string
	}{
		{"key of another certificate", with(func(m *Material) { m.KeyPEM = other.KeyPEM }), true, "does not match"},
		{"RSA key for ECDSA certificate", with(func(m *Material) { m.KeyPEM = keyPEM(t, newKey(t, "rsa"), "pkcs1") }), true, "does not match"},
		{"garbage key", with(func(m *Material) { m.KeyPEM = []byte("not a key") }), false, "key: no PEM block"},
		{"empty key", with(func(m *Material) { m.KeyPEM = nil }), false, "key: no PEM block"},
		{"two keys", with(func(m *Material) { m.KeyPEM = append(bytes.Clone(good.KeyPEM), other.KeyPEM...) }), false, "exactly one"},
		{"certificate as key", with(func(m *Material) { m.KeyPEM = ca.rootPEM }), false, "not a private key"},
		{"encrypted legacy key", with(func(m *Material) {
			m.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
		}), false, "headers"},
		{"X25519 key", with(func(m *Material) { m.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519DER}) }), false, "unsupported"},
		{"corrupt key DER", with(func(m *Material) { m.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("xx")}) }), false, "parsing"},
		{"empty chain", with(func(m *Material) { m.ChainPEM = nil }), false, "chain: no PEM block"},
		{"garbage chain", with(func(m *Material) { m.ChainPEM = []byte("garbage") }), false, "chain: no PEM block"},
		{"truncated chain", with(func(m *Material) { m.ChainPEM = good.ChainPEM[:len(good.ChainPEM)/3] }), false, "chain:"},
		{"corrupt certificate DER", with(func(m *Material) {
			m.ChainPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafOnly.Bytes[:40]})
		}), false, "chain: PEM block 1"},
		{"private key inside chain", with(func(m *Material) { m.ChainPEM = append(bytes.Clone(good.ChainPEM), good.KeyPEM...) }), false, `"PRIVATE KEY", want CERTIFICATE`},
		{"malformed block inside chain", with(func(m *Material) {
			m.ChainPEM = append(bytes.Clone(good.ChainPEM), "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"...)
		}), false, "malformed"},
		{"garbage CA bundle", with(func(m *Material) { m.CAPEM = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") }), false, "CA bundle"},
		{"oversized chain", with(func(m *Material) { m.ChainPEM = bytes.Repeat([]byte{'\n'}, maxFileSize+1) }), false, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, state := range []string{"empty", "published"} {
				w, _ := newTestWriter(t, nil)
				if state == "published" {
					mustPublish(t, w, other)
				}
				before := snapshot(t, w.opts.Dir)
				_, err := w.Publish(tc.m)
				if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrMismatch) != tc.mismatch || !errContains(err, tc.msg) {
					t.Errorf("%s dir: err = %v, want ErrInvalid (mismatch %v) mentioning %q", state, err, tc.mismatch, tc.msg)
				}
				if after := snapshot(t, w.opts.Dir); !maps.Equal(before, after) {
					t.Errorf("%s dir changed:\nbefore %v\nafter  %v", state, before, after)
				}
			}
		})
	}
}

func TestPublishKeepsTextBetweenCertificateBlocks(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, nil)
	m := newPKI(t).issue(t, newKey(t, "p256"), "pkcs8")
	m.ChainPEM = append([]byte("subject=CN = pod.ns.svc\n"), m.ChainPEM...)
	m.CAPEM = append([]byte("# Issuer: test root\n"), m.CAPEM...)
	p := mustPublish(t, w, m)
	got, _ := os.ReadFile(filepath.Join(w.opts.Dir, "tls.crt"))
	if !bytes.Equal(got, m.ChainPEM) {
		t.Errorf("tls.crt = %q, want the chain verbatim", got)
	}
	if _, err := tls.X509KeyPair(p.BundlePEM, p.BundlePEM); err != nil {
		t.Errorf("tls.pem: %v", err)
	}
}

func TestPublishWritesKeystoreWhenPasswordSet(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"p256", "rsa", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			const password = "s3cret-pässword"
			w, _ := newTestWriter(t, func(o *Options) { o.KeystorePassword = []byte(password) })
			ca := newPKI(t)
			key := newKey(t, kind)
			p := mustPublish(t, w, ca.issue(t, key, "pkcs8"))
			assertTidy(t, w, append(defaultNames, DefaultKeystoreFile)...)

			path := filepath.Join(w.opts.Dir, DefaultKeystoreFile)
			if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
				t.Errorf("keystore mode = %v (%v), want 0600", info.Mode().Perm(), err)
			}
			data, _ := os.ReadFile(path)
			gotKey, leaf, cas, err := pkcs12.DecodeChain(data, password)
			if err != nil {
				t.Fatalf("DecodeChain: %v", err)
			}
			gotDER, _ := x509.MarshalPKCS8PrivateKey(gotKey)
			if wantDER, _ := x509.MarshalPKCS8PrivateKey(key); !bytes.Equal(gotDER, wantDER) {
				t.Error("keystore holds another key")
			}
			if !leaf.Equal(p.Leaf) || len(cas) != 2 || !cas[0].Equal(ca.inter) || !cas[1].Equal(ca.root) {
				t.Errorf("keystore chain = %v + %d CAs, want leaf + intermediate + root", leaf.Subject, len(cas))
			}
			if _, _, _, err := pkcs12.DecodeChain(data, "wrong"); err == nil {
				t.Error("keystore decodes with a wrong password")
			}
			if _, err := w.Load(); err != nil {
				t.Errorf("Load: %v", err)
			}
		})
	}
}

func TestPublishFailsWhenDirectoryIsMissing(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, func(o *Options) { o.Dir = filepath.Join(t.TempDir(), "missing") })
	_, err := w.Publish(newPKI(t).issue(t, newKey(t, "p256"), "pkcs8"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestNewRejectsBadOptionsAllAtOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    Options
		msgs []string
	}{
		{"no directory", Options{}, []string{"Dir must be set"}},
		{"path as name", Options{Dir: "d", KeyFile: "sub/tls.key"}, []string{"KeyFile", "plain file name"}},
		{"reserved name", Options{Dir: "d", CertFile: "..data"}, []string{"CertFile", `must not start with ".."`}},
		{"duplicate name", Options{Dir: "d", BundleFile: "tls.crt"}, []string{`BundleFile "tls.crt" is already used by CertFile`}},
		{"mode with type bits", Options{Dir: "d", CertMode: fs.ModeDir | 0o644}, []string{"CertMode", "permission bits only"}},
		{"unreadable mode", Options{Dir: "d", CertMode: 0o044}, []string{"CertMode", "owner read"}},
		{"group-writable key", Options{Dir: "d", KeyMode: 0o660}, []string{"KeyMode 0660 must not grant 020"}},
		{"executable key", Options{Dir: "d", KeyMode: 0o610}, []string{"KeyMode 0610 must not grant 010"}},
		{"world-writable certificate", Options{Dir: "d", CertMode: 0o646}, []string{"CertMode 0646 must not grant 02"}},
		{"password outside BMP", Options{Dir: "d", KeystorePassword: []byte("key🔑")}, []string{"Basic Multilingual Plane"}},
		{"password not UTF-8", Options{Dir: "d", KeystorePassword: []byte{0xff}}, []string{"UTF-8"}},
		{"several problems", Options{KeyFile: "a/b", KeyMode: 0o602}, []string{"Dir must be set", "KeyFile", "KeyMode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := New(tc.o)
			if w != nil || !errors.Is(err, ErrOptions) || !errContains(err, tc.msgs...) {
				t.Errorf("New = %v, %v; want ErrOptions mentioning %q", w, err, tc.msgs)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	t.Parallel()
	w, err := New(Options{Dir: "d", KeystorePassword: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	o := w.opts
	if o.KeyFile != "tls.key" || o.CertFile != "tls.crt" || o.CAFile != "ca.crt" || o.BundleFile != "tls.pem" ||
		o.KeystoreFile != "keystore.p12" || o.KeyMode != 0o600 || o.CertMode != 0o644 || o.Clock == nil || o.Rand == nil ||
		o.KeystorePassword != nil {
		t.Errorf("defaults not applied: %+v", o)
	}
}
