package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// BuildDirName is the directory, inside the control plane's BinDir, that
// tests build the project's programs into. `make test`'s stray check
// (hack/check-no-strays.sh) looks for running processes whose program lies
// under BinDir: an agent or controller a test built and left running is
// found there, as a control-plane process would be.
const BuildDirName = ".test-builds"

var builds struct {
	sync.Mutex
	dirs []string
}

// BuildDir creates a new directory under BinDir()/.test-builds for a test
// to build programs into, removed when Main returns.
func BuildDir(prefix string) (string, error) {
	bin, err := BinDir()
	if err != nil {
		return "", err
	}
	parent := filepath.Join(bin, BuildDirName)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", parent, err)
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", err
	}
	builds.Lock()
	builds.dirs = append(builds.dirs, dir)
	builds.Unlock()
	return dir, nil
}

// removeBuilds removes the directories BuildDir made.
func removeBuilds() {
	builds.Lock()
	defer builds.Unlock()
	for _, dir := range builds.dirs {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}
	builds.dirs = nil
}
