package config

import (
	"bytes"
	"flag"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csr-agent/csr-agent/internal/docgen"
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
	t.Helper()
	docgen.Check(t, filepath.Join("..", "..", "README.md"), begin, end, []string{table}, *update,
		"go test ./internal/config -run TestREADME -update")
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
