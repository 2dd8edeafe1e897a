package writer

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadReturnsWhatWasPublished(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, nil)
	m := newPKI(t).issue(t, newKey(t, "p384"), "sec1")
	published := mustPublish(t, w, m)

	got, err := w.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.Generation != published.Generation || !got.Leaf.Equal(published.Leaf) || len(got.Chain) != 2 || len(got.CAs) != 1 {
		t.Errorf("Load = %q leaf %v, want %q leaf %v", got.Generation, got.Leaf.Subject, published.Generation, published.Leaf.Subject)
	}
	if !got.Leaf.NotAfter.Equal(t0.Add(24 * time.Hour).Truncate(time.Second)) {
		t.Errorf("NotAfter = %v", got.Leaf.NotAfter)
	}
	for name, pair := range map[string][2][]byte{
		"key": {got.KeyPEM, published.KeyPEM}, "chain": {got.ChainPEM, m.ChainPEM},
		"ca": {got.CAPEM, m.CAPEM}, "bundle": {got.BundlePEM, published.BundlePEM},
	} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Errorf("%s differs", name)
		}
	}
	if err := w.Verify(got); err != nil {
		t.Errorf("Verify(Load()) = %v", err)
	}
	// The loaded material republishes as is.
	again := mustPublish(t, w, got.Material())
	if !bytes.Equal(again.KeyPEM, got.KeyPEM) || !bytes.Equal(again.ChainPEM, got.ChainPEM) {
		t.Error("republishing Material() changed the files")
	}
}

func TestLoadOnEmptyDirectoryIsNotFound(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, nil)
	_, err := w.Load()
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrDamaged) {
		t.Errorf("err = %v, want ErrNotFound (an fs.ErrNotExist)", err)
	}
}

func TestLoadReportsDamage(t *testing.T) {
	t.Parallel()
	ca := newPKI(t)
	key := newKey(t, "p256")
	other := ca.issue(t, newKey(t, "p256"), "pkcs8")
	inGen := func(w *Writer, name string) string { return filepath.Join(w.opts.Dir, dataLink, name) }
	overwrite := func(t *testing.T, path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		password bool // the loading Writer has a keystore password
		damage   func(t *testing.T, w *Writer)
		mismatch bool
		msg      string
	}{
		{name: "truncated tls.crt", damage: func(t *testing.T, w *Writer) {
			info, _ := os.Stat(inGen(w, "tls.crt"))
			if err := os.Truncate(inGen(w, "tls.crt"), info.Size()*3/4); err != nil {
				t.Fatal(err)
			}
		}, msg: "chain: 1 of 2 PEM blocks are malformed"},
		{name: "empty tls.crt", damage: func(t *testing.T, w *Writer) {
			overwrite(t, inGen(w, "tls.crt"), nil)
		}, msg: "chain: no PEM block"},
		{name: "tls.key deleted", damage: func(t *testing.T, w *Writer) {
			if err := os.Remove(filepath.Join(w.opts.Dir, "tls.key")); err != nil {
				t.Fatal(err)
			}
		}, msg: "tls.key"},
		{name: "tls.key of another pair", damage: func(t *testing.T, w *Writer) {
			overwrite(t, inGen(w, "tls.key"), other.KeyPEM)
		}, mismatch: true, msg: "does not match"},
		{name: "tls.key re-encoded", damage: func(t *testing.T, w *Writer) {
			overwrite(t, inGen(w, "tls.key"), keyPEM(t, key, "sec1"))
		}, msg: "not a PKCS#8 PEM key as published"},
		{name: "tls.pem of another pair", damage: func(t *testing.T, w *Writer) {
			overwrite(t, inGen(w, "tls.pem"), append(bytes.Clone(other.KeyPEM), other.ChainPEM...))
		}, msg: "tls.pem is not tls.key followed by tls.crt"},
		{name: "garbage ca.crt", damage: func(t *testing.T, w *Writer) {
			overwrite(t, inGen(w, "ca.crt"), []byte("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"))
		}, msg: "CA bundle"},
		{name: "huge tls.crt", damage: func(t *testing.T, w *Writer) {
			overwrite(t, inGen(w, "tls.crt"), make([]byte, maxFileSize+1))
		}, msg: "larger than"},
		{name: "keystore missing", password: true, damage: func(*testing.T, *Writer) {}, msg: "keystore.p12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, _ := newTestWriter(t, nil)
			mustPublish(t, w, ca.issue(t, key, "pkcs8"))
			tc.damage(t, w)
			if tc.password {
				var err error
				if w, err = New(Options{Dir: w.opts.Dir, KeystorePassword: []byte("pw")}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := w.Load()
			if !errors.Is(err, ErrDamaged) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrMismatch) != tc.mismatch || !errContains(err, tc.msg) {
				t.Errorf("err = %v, want ErrDamaged (mismatch %v, not fs.ErrNotExist) mentioning %q", err, tc.mismatch, tc.msg)
			}
		})
	}
}

func TestVerifyDetectsDrift(t *testing.T) {
	t.Parallel()
	ca := newPKI(t)
	m := ca.issue(t, newKey(t, "p256"), "pkcs8")
	noCA := m
	noCA.CAPEM = nil
	for _, tc := range []struct {
		name  string
		m     Material
		drift func(t *testing.T, w *Writer)
		msg   string
	}{
		{"nothing changed", m, func(*testing.T, *Writer) {}, ""},
		{"foreign file at an unpublished name", noCA, func(t *testing.T, w *Writer) {
			must(t, os.WriteFile(filepath.Join(w.opts.Dir, "ca.crt"), []byte("mine"), 0o644))
		}, ""},
		{"visible link deleted", m, func(t *testing.T, w *Writer) {
			must(t, os.Remove(filepath.Join(w.opts.Dir, "tls.key")))
		}, "tls.key: not a symlink"},
		{"..data deleted", m, func(t *testing.T, w *Writer) {
			must(t, os.Remove(filepath.Join(w.opts.Dir, dataLink)))
		}, "tls.crt: open"},
		{"file truncated", m, func(t *testing.T, w *Writer) {
			must(t, os.Truncate(filepath.Join(w.opts.Dir, "tls.crt"), 10))
		}, "tls.crt: content differs"},
		{"link replaced by a copy", m, func(t *testing.T, w *Writer) {
			path := filepath.Join(w.opts.Dir, "tls.pem")
			data, err := os.ReadFile(path)
			must(t, err)
			must(t, os.Remove(path))
			must(t, os.WriteFile(path, data, 0o600))
		}, "tls.pem: not a symlink"},
		{"key mode widened", m, func(t *testing.T, w *Writer) {
			must(t, os.Chmod(filepath.Join(w.opts.Dir, "tls.key"), 0o644))
		}, "tls.key: mode 0644, want 0600"},
		{"stale ca.crt link", noCA, func(t *testing.T, w *Writer) {
			must(t, os.Symlink("..data/ca.crt", filepath.Join(w.opts.Dir, "ca.crt")))
		}, "ca.crt: linked but not published"},
		{"replaced by another publish", m, func(t *testing.T, w *Writer) {
			mustPublish(t, w, ca.issue(t, newKey(t, "p256"), "pkcs8"))
		}, "content differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, _ := newTestWriter(t, nil)
			p := mustPublish(t, w, tc.m)
			tc.drift(t, w)
			err := w.Verify(p)
			if tc.msg == "" {
				if err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrDrift) || !errContains(err, tc.msg) {
				t.Errorf("Verify = %v, want ErrDrift mentioning %q", err, tc.msg)
			}
			// Republishing what was expected heals every kind of drift.
			healed := mustPublish(t, w, p.Material())
			if err := w.Verify(healed); err != nil {
				t.Errorf("Verify after republish = %v", err)
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
