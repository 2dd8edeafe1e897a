package docgen

import (
	"errors"
	"slices"
	"testing"
)

func TestSpliceRewritesOnlyBetweenTheMarkers(t *testing.T) {
	doc := "a\n  # b\n  old\n  # e\nc\n  # b\n  # e\nd\n"
	got, old, err := Splice(doc, "# b", "# e", []string{"  one\n", "  two\n"})
	want := "a\n  # b\n  one\n  # e\nc\n  # b\n  two\n  # e\nd\n"
	if err != nil || got != want || !slices.Equal(old, []string{"  old\n", ""}) {
		t.Errorf("Splice = %q, %q, %v; want %q", got, old, err, want)
	}
	for _, doc := range []string{"no markers\n", "# e\n# b\n", "# b\n# b\n# e\n", "# b\n# e\n# b\n# e\n# b\n# e\n", "# b\n"} {
		if _, _, err := Splice(doc, "# b", "# e", []string{"x\n", "y\n"}); !errors.Is(err, ErrMarkers) {
			t.Errorf("Splice(%q) = %v, want ErrMarkers", doc, err)
		}
	}
}
