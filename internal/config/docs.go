package config

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Var documents one variable, as declared by the tags of its spec field.
type Var struct {
	Name         string
	Default      string // "" when the variable has no default
	Required     bool
	EmptyIsUnset bool // set to "" means the same as unset; otherwise "" is an error
	// EmptyDisables: set to "" turns the feature off, unlike unset, which
	// takes the default.
	EmptyDisables bool
	Form          string
	Desc          string
}

// Docs lists every agent variable in declaration order.
func Docs() []Var { return fields.docs() }

// Usage prints every agent variable with its default, form and meaning, for
// `agent help`. Write errors are ignored: there is nowhere left to report them.
func Usage(w io.Writer) { usage(w, Docs()) }

// MarkdownTable renders the agent variables as the README's configuration
// table, ending in a newline.
func MarkdownTable() string { return markdownTable(Docs()) }

func usage(w io.Writer, vars []Var) {
	fmt.Fprintln(w, "Environment variables (an empty value is an error unless noted):")
	for _, v := range vars {
		fmt.Fprintf(w, "\n  %s  %s\n      %s\n      Form: %s\n", v.Name, defaultText(v, `default %q`), descText(v), v.Form)
	}
}

func markdownTable(vars []Var) string {
	var b strings.Builder
	b.WriteString("| Variable | Default | Form | Description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n",
			v.Name, defaultText(v, "`%s`"), markdownEscape(v.Form), markdownEscape(descText(v)))
	}
	return b.String()
}

func defaultText(v Var, format string) string {
	switch {
	case v.Required:
		return "required"
	case v.Default != "":
		return fmt.Sprintf(format, v.Default)
	default:
		return "optional"
	}
}

func descText(v Var) string {
	switch {
	case v.EmptyIsUnset:
		return v.Desc + " Empty is the same as unset."
	case v.EmptyDisables:
		return v.Desc + " Empty turns it off."
	}
	return v.Desc
}

// markdownEscape keeps placeholders such as <svc> visible (GitHub would take
// them for HTML tags) and pipes from ending the cell.
var markdownEscape = strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`).Replace

// Unknown returns a warning for each variable in environ (os.Environ form)
// that is not an agent variable but is at most two edits from one, such as
// SERVICE_NAME for SERVICE_NAMES: with no prefix to tell our variables from
// the container's others, a likely typo is all that can be flagged.
func Unknown(environ []string) []string { return fields.unknown(environ, "an agent") }

// unknown flags the likely typos of vs's variables in environ; program
// completes "is not ... variable".
func (vs varSet) unknown(environ []string, program string) []string {
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if slices.ContainsFunc(vs, func(f field) bool { return f.Name == name }) {
			continue
		}
		for _, f := range vs {
			if editDistance(name, f.Name) <= 2 {
				warnings = append(warnings, fmt.Sprintf("%s is not %s variable; did you mean %s?", name, program, f.Name))
				break
			}
		}
	}
	return warnings
}

// editDistance is the Levenshtein distance, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
