package writer

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

func TestRecoverRepairsInterruptedPublish(t *testing.T) {
	t.Parallel()
	ca := newPKI(t)
	a := ca.issue(t, newKey(t, "p256"), "pkcs8")
	b := ca.issue(t, newKey(t, "p256"), "pkcs8")
	c := ca.issue(t, newKey(t, "p256"), "pkcs8")
	noCA := a
	noCA.CAPEM = nil

	// Generation names around firstGen (22:30), which Publish(a) takes.
	const (
		at2100 = "..2026_11_26_21_00_00.000000000"
		at2200 = "..2026_11_26_22_00_00.000000000"
		at2300 = "..2026_11_26_23_00_00.000000000"
	)
	incomplete := func(t *testing.T, w *Writer, name string) {
		t.Helper()
		must(t, os.Mkdir(filepath.Join(w.opts.Dir, name), 0o755))
		must(t, os.WriteFile(filepath.Join(w.opts.Dir, name, "tls.key"), a.KeyPEM[:20], 0o600))
	}
	dir := func(w *Writer, name string) string { return filepath.Join(w.opts.Dir, name) }

	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, w *Writer)
		live    *Material // nil: nothing published afterwards
		links   []string
		foreign []string // entries that must survive
	}{
		{name: "empty directory", setup: func(*testing.T, *Writer) {}},
		{name: "dangling temporary links", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, a)
			must(t, os.Symlink(at2300, dir(w, dataTmp)))
			must(t, os.Symlink("..data/tls.key", dir(w, linkTmp)))
		}, live: &a},
		{name: "stray generations beside the live one", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, a)
			placeGeneration(t, w, at2200, b) // complete but older
			incomplete(t, w, at2300)         // newer but cut short
		}, live: &a},
		{name: "visible links missing", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, a)
			must(t, os.Remove(dir(w, "tls.crt")))
			must(t, os.Remove(dir(w, "tls.pem")))
		}, live: &a},
		{name: "..data points to a deleted generation", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, a)
			placeGeneration(t, w, at2100, c)
			placeGeneration(t, w, at2200, b)
			incomplete(t, w, at2300)
			must(t, os.RemoveAll(dir(w, firstGen)))
		}, live: &b},
		{name: "..data missing", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, a)
			must(t, os.Remove(dir(w, dataLink)))
		}, live: &a},
		{name: "..data dangling and nothing valid", setup: func(t *testing.T, w *Writer) {
			incomplete(t, w, at2300)
			must(t, os.Symlink(at2200, dir(w, dataLink)))
		}},
		{name: "stale link to a file the generation lacks", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, noCA)
			must(t, os.Symlink("..data/ca.crt", dir(w, "ca.crt")))
		}, live: &noCA, links: []string{"tls.key", "tls.crt", "tls.pem"}},
		{name: "foreign entries left alone", setup: func(t *testing.T, w *Writer) {
			mustPublish(t, w, a)
			must(t, os.Mkdir(dir(w, "..cache"), 0o755))
			must(t, os.Mkdir(dir(w, "..2026_11_26_23_00_00"), 0o755)) // not our layout
			must(t, os.WriteFile(dir(w, "app.log"), nil, 0o644))
		}, live: &a, foreign: []string{"..cache", "..2026_11_26_23_00_00", "app.log"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, _ := newTestWriter(t, nil)
			tc.setup(t, w)
			if err := w.Recover(); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			for _, name := range tc.foreign {
				if _, err := os.Lstat(dir(w, name)); err != nil {
					t.Errorf("Recover removed %s: %v", name, err)
				}
			}
			p, err := w.Load()
			if tc.live == nil {
				gens, _ := generations(w.opts.Dir)
				if !errors.Is(err, ErrNotFound) || len(gens) != 0 || w.currentGeneration() != "" {
					t.Errorf("Load = %v, generations %v, %s -> %q; want nothing published", err, gens, dataLink, w.currentGeneration())
				}
				return
			}
			links := tc.links
			if links == nil {
				links = defaultNames
			}
			assertTidy(t, w, links...)
			if err != nil || !bytes.Equal(p.ChainPEM, tc.live.ChainPEM) {
				t.Fatalf("Load = %v, want the expected pair live", err)
			}
			if err := w.Verify(p); err != nil {
				t.Errorf("Verify after Recover: %v", err)
			}
			// Recover is idempotent.
			before := snapshot(t, w.opts.Dir)
			must(t, w.Recover())
			if after := snapshot(t, w.opts.Dir); !maps.Equal(before, after) {
				t.Errorf("second Recover changed the tree: %v -> %v", before, after)
			}
		})
	}
}

func TestRecoverKeepsLiveGenerationEvenWhenDamaged(t *testing.T) {
	t.Parallel()
	w, _ := newTestWriter(t, nil)
	ca := newPKI(t)
	p := mustPublish(t, w, ca.issue(t, newKey(t, "p256"), "pkcs8"))
	placeGeneration(t, w, "..2026_11_26_22_00_00.000000000", ca.issue(t, newKey(t, "p256"), "pkcs8"))
	must(t, os.Truncate(filepath.Join(w.opts.Dir, p.Generation, "tls.crt"), 0))

	must(t, w.Recover())
	if gen := assertTidy(t, w, defaultNames...); gen != p.Generation {
		t.Errorf("live generation = %q, want %q kept", gen, p.Generation)
	}
	if _, err := w.Load(); !errors.Is(err, ErrDamaged) {
		t.Errorf("Load = %v, want ErrDamaged so the caller republishes", err)
	}
}

func TestRecoverRefusesForeignLayout(t *testing.T) {
	t.Parallel()
	for _, name := range []string{dataLink, dataTmp} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, _ := newTestWriter(t, nil)
			must(t, os.Mkdir(filepath.Join(w.opts.Dir, name), 0o755))
			before := snapshot(t, w.opts.Dir)
			if err := w.Recover(); !errors.Is(err, ErrDamaged) || !errContains(err, name+" is not a symlink") {
				t.Errorf("Recover = %v, want ErrDamaged naming %s", err, name)
			}
			if after := snapshot(t, w.opts.Dir); !maps.Equal(before, after) {
				t.Errorf("Recover changed the tree: %v -> %v", before, after)
			}
		})
	}
}
