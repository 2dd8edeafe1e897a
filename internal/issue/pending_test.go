package issue

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/csr-agent/csr-agent/internal/config"
)

func TestFileKeyStoreLoadsWhatItSaved(t *testing.T) {
	store := &FileKeyStore{Path: filepath.Join(t.TempDir(), ".pending.key")}
	key := freshKey(t)
	if err := store.Save(key); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(store.Path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode(); mode != 0o600 {
		t.Errorf("mode = %v, want -rw-------", mode)
	}
	got, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || !samePublicKey(key.Public(), got.Public()) {
		t.Error("loaded key is not the saved one")
	}
}

func TestFileKeyStoreSaveReplacesTheKeyAndLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	store := &FileKeyStore{Path: filepath.Join(dir, ".pending.key")}
	if err := store.Save(freshKey(t)); err != nil {
		t.Fatal(err)
	}
	second := testKey(t, config.KeyEd25519)
	if err := store.Save(second); err != nil {
		t.Fatal(err)
	}
	got, err := store.Load()
	if err != nil || got == nil || !samePublicKey(second.Public(), got.Public()) {
		t.Fatalf("Load after the second Save = %v, %v; want the second key", got, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != ".pending.key" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only .pending.key", names)
	}
}

func TestFileKeyStoreReportsNoKeyForAMissingOrDamagedFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte // nil: no file
	}{
		{"missing", nil},
		{"empty", []byte{}},
		{"garbage", []byte("\x00\x01 not PEM")},
		{"torn PEM", []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &FileKeyStore{Path: filepath.Join(t.TempDir(), ".pending.key")}
			if tc.content != nil {
				if err := os.WriteFile(store.Path, tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key, err := store.Load()
			if key != nil || err != nil {
				t.Errorf("Load = %T, %v; want nil, nil", key, err)
			}
		})
	}
}

func TestFileKeyStoreLoadReportsAnUnreadableFile(t *testing.T) {
	// A directory in the key's place cannot be read as a file: a real
	// problem, unlike a missing file.
	store := &FileKeyStore{Path: t.TempDir()}
	if key, err := store.Load(); err == nil {
		t.Errorf("Load = %T, nil; want an error", key)
	}
}

func TestFileKeyStoreClearRemovesTheKeyAndIsIdempotent(t *testing.T) {
	store := &FileKeyStore{Path: filepath.Join(t.TempDir(), ".pending.key")}
	if err := store.Save(freshKey(t)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := store.Clear(); err != nil {
			t.Fatalf("Clear #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(store.Path); !os.IsNotExist(err) {
		t.Errorf("key file still there: %v", err)
	}
	if key, err := store.Load(); key != nil || err != nil {
		t.Errorf("Load after Clear = %T, %v; want nil, nil", key, err)
	}
}

func TestFileKeyStoreSaveFailsInAMissingDirectory(t *testing.T) {
	store := &FileKeyStore{Path: filepath.Join(t.TempDir(), "gone", ".pending.key")}
	if err := store.Save(freshKey(t)); err == nil {
		t.Error("Save into a missing directory succeeded")
	}
}

func TestMemoryKeyStoreHoldsOneKeyUntilCleared(t *testing.T) {
	var store MemoryKeyStore
	if key, err := store.Load(); key != nil || err != nil {
		t.Fatalf("empty store Load = %T, %v", key, err)
	}
	key := freshKey(t)
	if err := store.Save(key); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Load(); got != key {
		t.Error("Load did not return the saved key")
	}
	if err := store.Clear(); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Load(); got != nil {
		t.Error("Load after Clear returned a key")
	}
}
