// Command promql-selectors reads a JSON array of PromQL expressions on
// stdin and writes, for each, what it reads from the time series database:
// every vector selector (metric name and label matchers) and every label
// name it groups or matches on. A test of the main module compares them with
// the metrics the agent and the controller really expose, without the main
// module depending on Prometheus's server module (which would raise the
// versions of dependencies the shipped binaries are built with).
//
// Output: a JSON array, one element per expression, in input order:
//
//	{"expr": "...", "error": "", "selectors": [{"name": "m", "matchers": [{"label": "l", "type": "=~", "value": "v"}]}], "labels": ["l"]}
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type matcher struct {
	Label string `json:"label"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Name     string    `json:"name"`
	Matchers []matcher `json:"matchers"`
}

type result struct {
	Expr      string     `json:"expr"`
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
	// Labels are the label names of by/without clauses and of on/ignoring/
	// group_left/group_right modifiers.
	Labels []string `json:"labels"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "promql-selectors:", err)
		os.Exit(1)
	}
}

func run() error {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		return fmt.Errorf("reading a JSON array of expressions: %w", err)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		out = append(out, inspect(p, e))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func inspect(p parser.Parser, expr string) result {
	r := result{Expr: expr, Selectors: []selector{}, Labels: []string{}}
	ast, err := p.ParseExpr(expr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			s := selector{Name: n.Name, Matchers: []matcher{}}
			for _, m := range n.LabelMatchers {
				if m.Name == labels.MetricName {
					continue
				}
				s.Matchers = append(s.Matchers, matcher{Label: m.Name, Type: m.Type.String(), Value: m.Value})
			}
			r.Selectors = append(r.Selectors, s)
		case *parser.AggregateExpr:
			r.Labels = append(r.Labels, n.Grouping...)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				r.Labels = append(r.Labels, n.VectorMatching.MatchingLabels...)
				r.Labels = append(r.Labels, n.VectorMatching.Include...)
			}
		}
		return nil
	})
	slices.Sort(r.Labels)
	r.Labels = slices.Compact(r.Labels)
	return r
}
