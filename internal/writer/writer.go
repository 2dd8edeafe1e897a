package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// generationLayout names generation directories (after the ".." prefix). The
// kubelet uses the same date layout; the fixed-width nanoseconds make name
// order equal time order, and Publish makes time order equal publish order.
const generationLayout = "2006_01_02_15_04_05.000000000"

// Publish validates m and atomically makes it the published generation
// (package documentation, steps 1–8). It returns what it published, for
// Verify.
//
// Invalid material returns an error wrapping ErrInvalid (and ErrMismatch when
// the key is not the leaf's) and leaves the directory untouched. Other errors
// say what failed; if ..data had already been swapped the message says so and
// the new generation is live (Load shows it; Publish or Recover again repairs
// the rest).
func (w *Writer) Publish(m Material) (*Published, error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	p, err := w.render(m)
	if err != nil {
		return nil, err
	}
	dir := w.opts.Dir
	if info, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("publish directory: %w", err)
	} else if !info.IsDir() {
		return nil, fmt.Errorf("publish directory %s: not a directory", dir)
	}

	old := w.currentGeneration()
	gen, err := w.makeGeneration(old)
	if err != nil {
		return nil, fmt.Errorf("creating generation directory: %w", err)
	}
	genPath := filepath.Join(dir, gen)
	if err := w.fill(genPath, p); err != nil {
		return nil, errors.Join(fmt.Errorf("writing generation %s: %w", gen, err), os.RemoveAll(genPath))
	}
	if err := swapSymlink(dir, dataTmp, gen, dataLink); err != nil {
		return nil, errors.Join(fmt.Errorf("swapping %s to %s: %w", dataLink, gen, err), os.RemoveAll(genPath))
	}
	p.Generation = gen

	// From here on the new generation is live: report, never undo.
	var errs []error
	if err := w.linkVisible(); err != nil {
		errs = append(errs, err)
	}
	if err := removeGenerationsExcept(dir, gen); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("after publishing %s: %w", gen, err)
	}
	return p, nil
}

// render is step 1: everything a generation holds, computed in memory.
func (w *Writer) render(m Material) (*Published, error) {
	p, err := parseMaterial(m, ErrInvalid)
	if err != nil {
		return nil, err
	}
	if len(w.opts.KeystorePassword) > 0 {
		enc := pkcs12.Modern.WithRand(w.opts.Rand)
		if p.Keystore, err = enc.Encode(p.Key, p.Leaf, keystoreCAs(p), string(w.opts.KeystorePassword)); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", w.opts.KeystoreFile, err)
		}
	}
	return p, nil
}

type file struct {
	name string
	mode fs.FileMode
	data []byte // nil: not part of this generation
}

// files lists every configured visible name with its content in p.
func (w *Writer) files(p *Published) []file {
	o := w.opts
	return []file{
		{o.KeyFile, o.KeyMode, p.KeyPEM},
		{o.CertFile, o.CertMode, p.ChainPEM},
		{o.CAFile, o.CertMode, p.CAPEM},
		{o.BundleFile, o.KeyMode, p.BundlePEM},
		{o.KeystoreFile, o.KeyMode, p.Keystore},
	}
}

// makeGeneration is step 2 and the mkdir of step 3.
func (w *Writer) makeGeneration(old string) (string, error) {
	t := w.opts.Clock.Now().UTC()
	if prev, ok := generationTime(old); ok && !t.After(prev) {
		t = prev.Add(time.Nanosecond)
	}
	// A crash may have left a directory with the name we want (a frozen
	// test clock, or a clock that stepped back): take the next nanosecond.
	for range 1000 {
		name := ".." + t.Format(generationLayout)
		path := filepath.Join(w.opts.Dir, name)
		err := os.Mkdir(path, genMode)
		if errors.Is(err, fs.ErrExist) {
			t = t.Add(time.Nanosecond)
			continue
		}
		if err != nil {
			return "", err
		}
		// Mkdir's mode went through the umask; readers in other
		// containers must be able to traverse the directory.
		return name, os.Chmod(path, genMode)
	}
	return "", errors.New("no free generation name after 1000 tries")
}

// fill is steps 3–5.
func (w *Writer) fill(genPath string, p *Published) error {
	for _, f := range w.files(p) {
		if f.data != nil {
			if err := writeFile(filepath.Join(genPath, f.name), f.data, f.mode); err != nil {
				return err
			}
		}
	}
	got, err := w.read(genPath)
	if err != nil {
		return fmt.Errorf("reading back: %w", err)
	}
	for i, want := range w.files(p) {
		if !bytes.Equal(w.files(got)[i].data, want.data) {
			return fmt.Errorf("reading back: %s differs from what was written", want.name)
		}
	}
	return nil
}

// writeFile creates path with mode 0600 so key material is never briefly
// more open than intended, then sets the exact mode, which the umask would
// otherwise have narrowed (0664 -> 0644) at creation.
func writeFile(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Chmod(mode)
}

// linkVisible is step 7: every file of the current generation gets its
// visible symlink, and our symlinks to files it lacks are removed.
func (w *Writer) linkVisible() error {
	dir := w.opts.Dir
	var errs []error
	for _, f := range w.files(&Published{}) {
		path := filepath.Join(dir, f.name)
		target := visibleTarget(f.name)
		_, statErr := os.Stat(filepath.Join(dir, target))
		cur, linkErr := os.Readlink(path)
		switch {
		case statErr == nil && (linkErr != nil || cur != target):
			if err := swapSymlink(dir, linkTmp, target, f.name); err != nil {
				errs = append(errs, fmt.Errorf("linking %s: %w", f.name, err))
			}
		case errors.Is(statErr, fs.ErrNotExist) && linkErr == nil && cur == target:
			// Only our own symlink: a regular file an application put
			// there is not ours to delete.
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unlinking %s: %w", f.name, err))
			}
		case statErr != nil && !errors.Is(statErr, fs.ErrNotExist):
			errs = append(errs, statErr)
		}
	}
	return errors.Join(errs...)
}

func visibleTarget(name string) string { return dataLink + "/" + name }

// swapSymlink atomically makes dir/name a symlink to target, through
// dir/tmp: symlink(2) cannot replace, rename(2) can, atomically.
func swapSymlink(dir, tmp, target, name string) error {
	tmpPath := filepath.Join(dir, tmp)
	if err := os.Remove(tmpPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmpPath); err != nil {
		return err
	}
	return os.Rename(tmpPath, filepath.Join(dir, name))
}

// removeGenerationsExcept removes every generation directory but keep: the
// previous one, and any that a killed Publish left behind.
func removeGenerationsExcept(dir, keep string) error {
	gens, err := generations(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gens {
		if g != keep {
			if err := os.RemoveAll(filepath.Join(dir, g)); err != nil {
				errs = append(errs, fmt.Errorf("removing generation: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// generationTime parses a generation name. Only names that round-trip are
// generations, so a ..data pointing at "../.." or a user's "..cache" is never
// taken for one and never removed.
func generationTime(name string) (time.Time, bool) {
	if len(name) < 2 || name[:2] != ".." {
		return time.Time{}, false
	}
	t, err := time.Parse(generationLayout, name[2:])
	if err != nil || ".."+t.Format(generationLayout) != name {
		return time.Time{}, false
	}
	return t, true
}

func isGeneration(name string) bool {
	_, ok := generationTime(name)
	return ok
}
