package testenv

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// Tool returns the path of a tool the Makefile builds into the bin
// directory for tests (e.g. promtool, with `make promtool`). A missing
// tool skips the test on a developer's machine, and fails it in CI (CI=true),
// where `make test` builds it first: a check that silently stops running
// would pass for ever.
func Tool(t testing.TB, name, makeTarget string) string {
	t.Helper()
	path, err := localcluster.ToolPath(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		msg := name + " not in the bin directory (" + path + "): run `make " + makeTarget + "` (make test does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}
