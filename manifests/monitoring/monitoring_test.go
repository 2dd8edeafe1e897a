package monitoring_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

var update = flag.Bool("update", false, "regenerate prometheusrule.yaml from rules.yaml")

type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func readYAML(t *testing.T, file string, into any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func alerts(t *testing.T) []rule {
	t.Helper()
	var f rulesFile
	readYAML(t, "rules.yaml", &f)
	var out []rule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("rules.yaml has no alert")
	}
	return out
}

func promtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), testenv.Tool(t, "promtool", "promtool"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestRulesPassPromtoolCheck(t *testing.T) {
	promtool(t, "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
}

// rules.test.yaml, run by Prometheus's own rule-test engine.
func TestAlertsFireAndStaySilentAsTheirUnitTestsSay(t *testing.T) {
	promtool(t, "test", "rules", "rules.test.yaml")
}

// A test that only ever expects silence would pass for an alert that can
// never fire, and one that only expects firing for an alert that always
// fires.
func TestEveryAlertIsTestedFiringAndSilent(t *testing.T) {
	var tests struct {
		RuleFiles          []string `json:"rule_files"`
		EvaluationInterval string   `json:"evaluation_interval"`
		Tests              []struct {
			Name        string `json:"name"`
			Interval    string `json:"interval"`
			InputSeries []any  `json:"input_series"`
			AlertTests  []struct {
				EvalTime  string `json:"eval_time"`
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, "rules.test.yaml", &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertTests {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts(t) {
		if !fires[a.Alert] {
			t.Errorf("%s: no test where it fires", a.Alert)
		}
		if !silent[a.Alert] {
			t.Errorf("%s: no test where it stays silent", a.Alert)
		}
	}
}

// An alert says how bad it is, what happened, and where to read what to do:
// a section of README.md named after it.
func TestEveryAlertHasASeverityASummaryAndARunbookSection(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	const runbook = "https://github.com/csr-agent/csr-agent/blob/main/manifests/monitoring/README.md#"
	seen := map[string]bool{}
	for _, a := range alerts(t) {
		if seen[a.Alert] {
			t.Errorf("%s: two alerts of that name", a.Alert)
		}
		seen[a.Alert] = true
		if s := a.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
			t.Errorf("%s: severity %q, want critical, warning or info", a.Alert, s)
		}
		for _, k := range []string{"summary", "description"} {
			if a.Annotations[k] == "" {
				t.Errorf("%s: no %s", a.Alert, k)
			}
		}
		if want := runbook + strings.ToLower(a.Alert); a.Annotations["runbook_url"] != want {
			t.Errorf("%s: runbook_url %q, want %q", a.Alert, a.Annotations["runbook_url"], want)
		}
		if !regexp.MustCompile(`(?m)^### ` + a.Alert + `$`).Match(readme) {
			t.Errorf("%s: README.md has no section \"### %s\"", a.Alert, a.Alert)
		}
	}
}

// prometheusrule.yaml is rules.yaml's groups under a PrometheusRule's spec,
// comments and all; `go test ./manifests/monitoring -update` rewrites it.
func TestPrometheusRuleHoldsTheRulesFile(t *testing.T) {
	source, err := os.ReadFile("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := prometheusRule(t, source)
	if *update {
		if err := os.WriteFile("prometheusrule.yaml", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var fromRules, fromCR struct {
		Groups any `json:"groups"`
		Spec   struct {
			Groups any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(source, &fromRules); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(got, &fromCR); err != nil {
		t.Fatal(err)
	}
	if fromRules.Groups == nil || !reflect.DeepEqual(fromRules.Groups, fromCR.Spec.Groups) {
		t.Error("prometheusrule.yaml does not hold the groups of rules.yaml: run `go test ./manifests/monitoring -run TestPrometheusRuleHoldsTheRulesFile -update`")
	}
	if !bytes.Equal(got, want) {
		t.Error("prometheusrule.yaml is not as generated from rules.yaml: run `go test ./manifests/monitoring -run TestPrometheusRuleHoldsTheRulesFile -update`")
	}
}

const prometheusRuleHeader = `# Generated from rules.yaml by ` + "`go test ./manifests/monitoring -update`" + `:
# edit rules.yaml, then regenerate. The same alerts for the Prometheus
# operator; its ruleSelector may ask for a label (e.g. release), which an
# overlay adds.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: csr-agent
  namespace: csr-agent-system
  labels:
    app.kubernetes.io/name: csr-agent
    app.kubernetes.io/part-of: csr-agent
spec:
`

// prometheusRule indents the rules file from its groups key on (its header
// comment stays behind) under spec.
func prometheusRule(t *testing.T, rules []byte) []byte {
	t.Helper()
	i := bytes.Index(rules, []byte("\ngroups:\n"))
	if i < 0 {
		t.Fatal("rules.yaml has no top-level groups key")
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for line := range strings.Lines(string(rules[i+1:])) {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes()
}

// The dashboard imports anywhere: every panel queries through the data
// source variable (no data source uid of one Grafana baked in), has a
// query, and fits the 24-column grid; panel ids are unique.
func TestDashboardPanelsQueryThroughTheDataSourceVariable(t *testing.T) {
	data, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct{ Type, UID string }
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID         int         `json:"id"`
			Type       string      `json:"type"`
			Title      string      `json:"title"`
			Datasource *datasource `json:"datasource"`
			GridPos    struct{ X, W int }
			Targets    []struct {
				Expr       string      `json:"expr"`
				Datasource *datasource `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatal("no uid or no panels")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%q: outside the 24-column grid", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%q: no query", p.Title)
		}
		sources := []*datasource{p.Datasource}
		for _, q := range p.Targets {
			sources = append(sources, q.Datasource)
		}
		for _, ds := range sources {
			if ds == nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
				t.Errorf("%q: data source %+v, want prometheus ${datasource}", p.Title, ds)
			}
		}
		for _, q := range p.Targets {
			if strings.TrimSpace(q.Expr) == "" {
				t.Errorf("%q: an empty query", p.Title)
			}
		}
	}
}
