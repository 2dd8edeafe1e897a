package writer

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"software.sslmate.com/src/go-pkcs12"
)

// loadAttempts bounds Load's retries when ..data moves during a read. Each
// retry needs a whole Publish to complete during one Load, so three is
// plenty; a Writer republishing faster than that is a bug elsewhere.
const loadAttempts = 3

// errChurn tells tests that Load gave up because of concurrent publishes.
var errChurn = errors.New(dataLink + " kept changing while loading")

// Load reads what is published through the visible names, as an application
// would, and checks it: the key matches the leaf, tls.pem is tls.key followed
// by tls.crt, ca.crt parses if present, and keystore.p12 (when a password is
// configured) holds the same key and leaf.
//
// It returns an error wrapping ErrNotFound when none of the key, certificate
// and bundle exists, and one wrapping ErrDamaged for anything else that is
// wrong (with ErrMismatch also for a key/leaf mismatch).
func (w *Writer) Load() (*Published, error) {
	var err error
	for range loadAttempts {
		before := w.currentGeneration()
		var p *Published
		p, err = w.read(w.opts.Dir)
		if after := w.currentGeneration(); after != before {
			// A publish swapped ..data during the reads, so they may span
			// two generations (or hit the removed old one): read again.
			// Generation names are never reused, so an unchanged ..data
			// means every read resolved to the same generation.
			continue
		}
		if err != nil {
			return nil, err
		}
		p.Generation = before
		return p, nil
	}
	return nil, fmt.Errorf("%w: %w (last: %w)", ErrDamaged, errChurn, err)
}

// Verify reports whether the visible files are exactly what expected (from
// Publish or Load) describes: every name a symlink through ..data, the same
// bytes, the configured mode, and no symlink of ours to a ca.crt or
// keystore.p12 that expected does not have. Each difference is an error
// wrapping ErrDrift, joined. Use it in a self-healing loop: any error means
// republish (Publish(expected.Material()) restores the files).
func (w *Writer) Verify(expected *Published) error {
	var errs []error
	drift := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{ErrDrift, name}, args...)...))
	}
	for _, f := range w.files(expected) {
		path := filepath.Join(w.opts.Dir, f.name)
		if f.data == nil {
			// Only our own symlink counts, as only it would be removed
			// by Publish: a file the application put there is not drift.
			if target, err := os.Readlink(path); err == nil && target == visibleTarget(f.name) {
				drift(f.name, "linked but not published")
			}
			continue
		}
		if target, err := os.Readlink(path); err != nil || target != visibleTarget(f.name) {
			drift(f.name, "not a symlink to %s (%v)", visibleTarget(f.name), err)
			continue
		}
		got, info, err := readFile(path)
		switch {
		case err != nil:
			drift(f.name, "%v", err)
		case !bytes.Equal(got, f.data):
			drift(f.name, "content differs (%d bytes, published %d)", len(got), len(f.data))
		case info.Mode().Perm() != f.mode:
			drift(f.name, "mode %#o, want %#o", uint32(info.Mode().Perm()), uint32(f.mode))
		}
	}
	return errors.Join(errs...)
}

// currentGeneration returns ..data's target, or "" when there is none.
func (w *Writer) currentGeneration() string {
	target, err := os.Readlink(filepath.Join(w.opts.Dir, dataLink))
	if err != nil {
		return ""
	}
	return target
}

// read loads and validates the files named by the options under base: the
// visible directory for Load, a generation's directory for Publish's
// read-back and Recover's choice.
func (w *Writer) read(base string) (*Published, error) {
	o := w.opts
	var missing int
	get := func(name string) ([]byte, error) {
		b, _, err := readFile(filepath.Join(base, name))
		if errors.Is(err, fs.ErrNotExist) {
			missing++
		}
		return b, err
	}
	keyPEM, keyErr := get(o.KeyFile)
	chainPEM, chainErr := get(o.CertFile)
	bundlePEM, bundleErr := get(o.BundleFile)
	if missing == 3 {
		return nil, ErrNotFound
	}
	// %v, not %w: a partly missing generation is damage, and must not
	// satisfy errors.Is(err, fs.ErrNotExist) like ErrNotFound does.
	if err := errors.Join(keyErr, chainErr, bundleErr); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDamaged, err) //nolint:errorlint // see above
	}
	caPEM, caErr := get(o.CAFile)
	if caErr != nil && !errors.Is(caErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrDamaged, caErr) //nolint:errorlint // damage, not absence
	}
	p, err := parseMaterial(Material{KeyPEM: keyPEM, ChainPEM: chainPEM, CAPEM: caPEM}, ErrDamaged)
	if err != nil {
		return nil, err
	}
	// tls.key on disk is what Publish rendered, so re-rendering it must give
	// the same bytes; anything else is a foreign or edited file.
	if !bytes.Equal(p.KeyPEM, keyPEM) {
		return nil, fmt.Errorf("%w: %s is not a PKCS#8 PEM key as published", ErrDamaged, o.KeyFile)
	}
	if !bytes.Equal(bundlePEM, p.BundlePEM) {
		return nil, fmt.Errorf("%w: %s is not %s followed by %s", ErrDamaged, o.BundleFile, o.KeyFile, o.CertFile)
	}
	if len(o.KeystorePassword) > 0 {
		if p.Keystore, err = get(o.KeystoreFile); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDamaged, err) //nolint:errorlint // damage, not absence
		}
		if err := checkKeystore(p, o.KeystorePassword); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, o.KeystoreFile, err)
		}
	}
	return p, nil
}

func checkKeystore(p *Published, password []byte) error {
	key, leaf, _, err := pkcs12.DecodeChain(p.Keystore, string(password))
	if err != nil {
		return err
	}
	if !leaf.Equal(p.Leaf) {
		return errors.New("holds a different certificate")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("unsupported private key type %T", key)
	}
	return checkPair(signer, p.Leaf)
}

// keystoreCAs is the chain stored with the key in keystore.p12: the
// intermediates, then the CA bundle's certificates not already there. This is
// what cert-manager does; Java reads them as the key entry's chain.
// go-pkcs12 cannot mark trusted-certificate entries in a store that holds a
// key, so peers' trust anchors stay in ca.crt.
func keystoreCAs(p *Published) []*x509.Certificate {
	cas := append([]*x509.Certificate(nil), p.Chain[1:]...)
	for _, ca := range p.CAs {
		dup := false
		for _, c := range cas {
			dup = dup || c.Equal(ca)
		}
		if !dup {
			cas = append(cas, ca)
		}
	}
	return cas
}

// readFile reads at most maxFileSize bytes of path and its mode, following
// symlinks.
func readFile(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", filepath.Base(path))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxFileSize {
		return nil, nil, fmt.Errorf("%s: larger than %d bytes", filepath.Base(path), maxFileSize)
	}
	return b, info, nil
}
