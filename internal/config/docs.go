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
	Form         string
	Desc         string
}

// Docs lists every variable in declaration order.
func Docs() []Var {
	out := make([]Var, len(fields))
	for i, f := range fields {
		out[i] = f.Var
	}
	return out
}

// Usage prints every variable with its default, form and meaning, for
// `agent help`. Write errors are ignored: there is nowhere left to report them.
func Usage(w io.Writer) {
	fmt.Fprintln(w, "Environment variables (an empty value is an error unless noted):")
	for _, v := range Docs() {
		fmt.Fprintf(w, "\n  %s  %s\n      %s\n      Form: %s\n", v.Name, defaultText(v, `default %q`), descText(v), v.Form)
	}
}

// MarkdownTable renders the variables as the README's configuration table,
// ending in a newline.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Default | Form | Description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, v := range Docs() {
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
	if v.EmptyIsUnset {
		return v.Desc + " Empty is the same as unset."
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
func Unknown(environ []string) []string {
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if slices.ContainsFunc(fields, func(f field) bool { return f.Name == name }) {
			continue
		}
		for _, f := range fields {
			if editDistance(name, f.Name) <= 2 {
				warnings = append(warnings, fmt.Sprintf("%s is not an agent variable; did you mean %s?", name, f.Name))
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
