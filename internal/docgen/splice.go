// Package docgen keeps the generated blocks of checked-in files (README
// tables, policy CEL) in step with the Go tables they are rendered from:
// the tests that own each block splice it in between marker lines, and
// fail, or with -update rewrite the file, when it drifted.
package docgen

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// ErrMarkers means a document does not hold its generated blocks' marker
// lines as expected.
var ErrMarkers = errors.New("generated blocks' markers misplaced")

// Splice returns doc with the lines between the i-th begin marker line and
// the following end marker line replaced by blocks[i], for every block, and
// the text that was there. Each begin line must be followed by its end line
// before the next begin, and there must be exactly len(blocks) pairs: a
// marker lost in an edit is an error, never a block written somewhere else.
// A block is whole lines, each ending in a newline.
func Splice(doc, begin, end string, blocks []string) (string, []string, error) {
	lines := strings.SplitAfter(doc, "\n")
	var out strings.Builder
	var old []string
	inside := false
	var cur strings.Builder
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == begin:
			if inside {
				return "", nil, fmt.Errorf("%w: %q twice without %q", ErrMarkers, begin, end)
			}
			if len(old) == len(blocks) {
				return "", nil, fmt.Errorf("%w: more than %d %q lines", ErrMarkers, len(blocks), begin)
			}
			inside = true
			cur.Reset()
			out.WriteString(line)
		case trimmed == end:
			if !inside {
				return "", nil, fmt.Errorf("%w: %q without %q", ErrMarkers, end, begin)
			}
			inside = false
			old = append(old, cur.String())
			out.WriteString(blocks[len(old)-1])
			out.WriteString(line)
		case inside:
			cur.WriteString(line)
		default:
			out.WriteString(line)
		}
	}
	if inside || len(old) != len(blocks) {
		return "", nil, fmt.Errorf("%w: want %d pairs of %q and %q lines, found %d", ErrMarkers, len(blocks), begin, end, len(old))
	}
	return out.String(), old, nil
}

// Check fails t when the blocks between the begin and end marker lines of
// the file at path differ from blocks, or when the markers are misplaced;
// with update it rewrites the blocks instead. fix is the command that runs
// the calling test with -update, named in the failure.
func Check(t testing.TB, path, begin, end string, blocks []string, update bool, fix string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s must hold its generated blocks between %s and %s lines: %v", path, begin, end, err)
	}
	got, old, err := Splice(string(b), begin, end, blocks)
	switch {
	case err != nil:
		t.Errorf("%s: %v; put the marker lines back, then run: %s", path, err, fix)
	case got == string(b):
	case update:
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		t.Errorf("%s is out of date; run: %s\n--- in the file:\n%s\n--- generated:\n%s",
			path, fix, strings.Join(old, "\n"), strings.Join(blocks, "\n"))
	}
}
