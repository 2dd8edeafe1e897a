package injector

import (
	"fmt"
	"strings"
)

// MarkdownTable renders Annotations as the README's annotation table,
// ending in a newline.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Annotation | Variable | Form | Description |\n")
	b.WriteString("| --- | --- | --- | --- |\n")
	for _, a := range Annotations {
		v := "`" + a.Var + "`"
		if a.Secret {
			v += " (from the Secret)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", a.Name, v, markdownEscape(a.Form), markdownEscape(a.Desc))
	}
	return b.String()
}

// markdownEscape keeps placeholders such as <svc> visible (GitHub would take
// them for HTML tags) and pipes from ending the cell.
var markdownEscape = strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`).Replace

// The rendered blocks are spliced between these lines of the policies'
// YAML, at the indentation of the list they are part of.
const (
	BeginMarker = "# generated:begin by internal/injector; edit Annotations there, then: go test ./internal/injector -update"
	EndMarker   = "# generated:end"
)

// MutatingVariables renders the mutating policy's variables that depend on
// Annotations, as YAML list items indented by indent:
//
//	settings        [annotation, variable] of the plain settings
//	secretSettings  [annotation, variable, SecretRefPattern] of the settings
//	                read from a Secret
func MutatingVariables(indent string) string {
	var plain, secret []string
	for _, a := range Annotations {
		if a.Secret {
			secret = append(secret, "["+celString(a.Name)+", "+celString(a.Var)+", "+celString(SecretRefPattern)+"]")
		} else {
			plain = append(plain, "["+celString(a.Name)+", "+celString(a.Var)+"]")
		}
	}
	return variable(indent, "settings", plain) + variable(indent, "secretSettings", secret)
}

// ValidatingVariables renders the validating policy's list of known
// annotations, as a YAML list item indented by indent.
func ValidatingVariables(indent string) string {
	names := make([]string, len(Annotations))
	for i, a := range Annotations {
		names[i] = celString(a.Name)
	}
	return variable(indent, "known", names)
}

// Validations renders one validation per annotation, as YAML list items
// indented by indent: an opted-in pod whose annotation the agent would
// refuse is rejected with a message naming the annotation and its form.
// The values are checked as CEL comprehension variables (v), since the API
// server's CEL has no let-binding.
func Validations(indent string) string {
	var b strings.Builder
	for _, a := range Annotations {
		fmt.Fprintf(&b, "%s- expression: |-\n%s    variables.annotations.all(k, v, k != %s || (%s))\n",
			indent, indent, celString(a.Name), a.Check)
		fmt.Fprintf(&b, "%s  message: %s\n", indent, yamlString(fmt.Sprintf("annotation %s must be %s", a.Name, a.Form)))
		fmt.Fprintf(&b, "%s  reason: Invalid\n", indent)
	}
	return b.String()
}

func variable(indent, name string, items []string) string {
	return fmt.Sprintf("%s- name: %s\n%s  expression: |-\n%s    [%s]\n", indent, name, indent, indent, strings.Join(items, ", "))
}

// celString quotes s as a CEL string literal; the values here hold no
// quote or backslash (a test holds it), so single quotes suffice.
func celString(s string) string { return "'" + s + "'" }

// yamlString quotes s as a YAML double-quoted scalar.
func yamlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
