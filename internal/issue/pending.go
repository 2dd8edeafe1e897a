package issue

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyStore keeps the key of a request that is still pending, so that an agent
// restarted while waiting resumes its own CSR instead of leaving it orphaned.
type KeyStore interface {
	// Load returns the pending key, or nil if there is none.
	Load() (crypto.Signer, error)
	Save(crypto.Signer) error
	Clear() error
}

// FileKeyStore keeps the pending key in one file (mode 0600) of the
// certificate directory, next to where the key will be published anyway.
type FileKeyStore struct {
	Path string
}

var _ KeyStore = (*FileKeyStore)(nil)

// Load returns nil, nil when no key is pending. A damaged file is treated as
// no key: the next request simply uses a fresh one.
func (s *FileKeyStore) Load() (crypto.Signer, error) {
	data, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pending key: %w", err)
	}
	key, err := DecodeKey(data)
	if err != nil {
		return nil, nil //nolint:nilerr // a torn write leaves garbage; start over
	}
	return key, nil
}

// Save writes the key atomically (temporary file, rename). It is not
// fsynced: after a power cut, a torn pending key only means a new request.
func (s *FileKeyStore) Save(key crypto.Signer) error {
	data, err := EncodeKey(key)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.Path), ".pending-key-*")
	if err != nil {
		return fmt.Errorf("saving pending key: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("saving pending key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("saving pending key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving pending key: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.Path); err != nil {
		return fmt.Errorf("saving pending key: %w", err)
	}
	return nil
}

// Clear removes the pending key once its certificate is published.
func (s *FileKeyStore) Clear() error {
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing pending key: %w", err)
	}
	return nil
}

// MemoryKeyStore keeps nothing across restarts.
type MemoryKeyStore struct{ key crypto.Signer }

var _ KeyStore = (*MemoryKeyStore)(nil)

func (s *MemoryKeyStore) Load() (crypto.Signer, error) { return s.key, nil }
func (s *MemoryKeyStore) Save(k crypto.Signer) error   { s.key = k; return nil }
func (s *MemoryKeyStore) Clear() error                 { s.key = nil; return nil }
