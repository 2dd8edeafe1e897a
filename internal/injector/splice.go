package injector

import (
	"errors"
	"fmt"
	"strings"
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
