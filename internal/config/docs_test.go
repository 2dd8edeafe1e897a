package config

import (
	"bytes"
	"flag"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the configuration table in the README between its markers")

const (
	readmeBegin = "<!-- agent-config:begin -->"
	readmeEnd   = "<!-- agent-config:end -->"
)

// TestREADMEListsEveryVariable keeps the README table rendered from the
// struct tags. `go test ./internal/config -run TestREADME -update` rewrites
// the block between the markers, and nothing else.
func TestREADMEListsEveryVariable(t *testing.T) {
	checkREADME(t, readmeBegin, readmeEnd, MarkdownTable())
}

// checkREADME compares the README's text between the begin and end marker
// lines with table, and with -update rewrites it.
func checkREADME(t *testing.T, begin, end, table string) {
	path := filepath.Join("..", "..", "README.md")
	const fix = "go test ./internal/config -run TestREADME -update"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the README must carry the configuration table between %s and %s lines; "+
			"create it with the markers, then run: %s\n(%v)", begin, end, fix, err)
	}
	got, block, ok := spliceTable(string(b), begin, end, table)
	switch {
	case !ok:
		t.Fatalf("%s needs exactly one %s line followed by one %s line where the configuration table goes; "+
			"add them, then run: %s", path, begin, end, fix)
	case got == string(b):
	case *update:
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		t.Errorf("the configuration table in %s is out of date; run: %s\n--- in the README:\n%s\n--- generated:\n%s",
			path, fix, block, table)
	}
}

// spliceTable returns doc with the text between the markers replaced by a
// newline and the table, the text that was there, and whether the markers
// were found, once each and in order.
func spliceTable(doc, beginMarker, endMarker, table string) (string, string, bool) {
	begin, end := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	if begin < 0 || end < begin || strings.Count(doc, beginMarker) != 1 || strings.Count(doc, endMarker) != 1 {
		return "", "", false
	}
	start := begin + len(beginMarker)
	return doc[:start] + "\n" + table + doc[end:], doc[start:end], true
}

func TestUpdateRewritesOnlyBetweenTheMarkers(t *testing.T) {
	doc := "# csr-agent\n\n" + readmeBegin + "\nold table\n" + readmeEnd + "\n\n## Security\n"
	got, old, ok := spliceTable(doc, readmeBegin, readmeEnd, "| new |\n")
	want := "# csr-agent\n\n" + readmeBegin + "\n| new |\n" + readmeEnd + "\n\n## Security\n"
	if !ok || got != want || old != "\nold table\n" {
		t.Errorf("spliceTable = %q, %q, %v; want %q", got, old, ok, want)
	}
	for _, doc := range []string{"no markers", readmeEnd + readmeBegin, readmeBegin + readmeEnd + readmeBegin + readmeEnd} {
		if _, _, ok := spliceTable(doc, readmeBegin, readmeEnd, "| new |\n"); ok {
			t.Errorf("spliceTable(%q) accepted misplaced markers", doc)
		}
	}
}

func TestPackageDocNamesEveryVariable(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	for _, v := range append(Docs(), ControllerDocs()...) {
		if !strings.Contains(doc, v.Name) {
			t.Errorf("the package doc does not mention %s", v.Name)
		}
	}
}

func TestEveryVariableIsDocumented(t *testing.T) {
	checkDocumented(t, Docs())
	checkDocumented(t, ControllerDocs())
}

func checkDocumented(t *testing.T, vars []Var) {
	seen := make(map[string]bool)
	for _, v := range vars {
		if v.Name == "" || v.Form == "" || v.Desc == "" {
			t.Errorf("%+v lacks a name, form or description tag", v)
		}
		if seen[v.Name] {
			t.Errorf("%s is declared twice", v.Name)
		}
		seen[v.Name] = true
		if v.Required && v.Default != "" {
			t.Errorf("%s is required and has a default", v.Name)
		}
	}
}

func TestUsagePrintsEveryVariableWithItsDefault(t *testing.T) {
	var agent, controller bytes.Buffer
	Usage(&agent)
	ControllerUsage(&controller)
	checkUsage(t, agent.String(), Docs())
	checkUsage(t, controller.String(), ControllerDocs())
}

func checkUsage(t *testing.T, usage string, vars []Var) {
	for _, v := range vars {
		want := "\n  " + v.Name + "  " + defaultText(v, `default %q`) + "\n"
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
}

func TestMarkdownTableEscapesPlaceholders(t *testing.T) {
	table := MarkdownTable()
	if strings.Contains(table, "<svc>") || !strings.Contains(table, "&lt;svc&gt;") {
		t.Errorf("placeholders would render as HTML tags:\n%s", table)
	}
	if n := strings.Count(table, "\n"); n != len(Docs())+2 {
		t.Errorf("table has %d lines, want a header, a rule and one row per variable", n)
	}
}
