package controller

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/yaml"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/renew"
	"github.com/csr-agent/csr-agent/internal/status"
	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/internal/writer"
	"github.com/csr-agent/csr-agent/manifests"
)

// targetLabels are added by Prometheus's Kubernetes service discovery (the
// usual relabelling) to every series it scrapes, not by the programs: the
// alerts' descriptions and the dashboard's namespace filter use them.
var targetLabels = []string{"namespace", "pod", "container", "instance", "job"}

// exposed is what a registry exposes: per series name (a histogram's
// _bucket, _sum and _count apart), its label names and the values seen.
type exposed map[string]map[string][]string

// TestAlertsAndDashboardQueryOnlyExposedMetrics parses every PromQL
// expression of manifests/monitoring (alerts and dashboard panels) with
// Prometheus's parser and checks each metric name, label matcher and
// grouping label against the series the controller and the agent really
// expose: renaming a metric or a label breaks this test, not a dashboard.
func TestAlertsAndDashboardQueryOnlyExposedMetrics(t *testing.T) {
	have := controllerSeries(t)
	for name, labels := range agentSeries(t) {
		have[name] = labels
	}
	exprs := monitoringExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("found %d expressions in manifests/monitoring, expected the alerts' and the dashboard's", len(exprs))
	}
	for _, r := range selectors(t, exprs) {
		for _, problem := range have.check(r) {
			t.Errorf("%s\n  in: %s", problem, r.Expr)
		}
	}
}

// The check itself: a misspelt metric, an unknown label and a label value
// never exposed are each caught.
func TestQueryCheckCatchesRenamedMetricsAndLabels(t *testing.T) {
	have := exposed{"csr_agent_ready": {"result": {"success"}}}
	for _, tc := range []struct {
		r    query
		want string
	}{
		{query{Selectors: []selector{{Name: "csr_agent_reddy"}}}, `metric "csr_agent_reddy" is exposed by neither`},
		{query{Selectors: []selector{{Name: "csr_agent_ready", Matchers: []matcher{{Label: "reslt", Type: "=", Value: "x"}}}}}, `label "reslt"`},
		{query{Selectors: []selector{{Name: "csr_agent_ready", Matchers: []matcher{{Label: "result", Type: "=", Value: "sucess"}}}}}, `value "sucess"`},
		{query{Selectors: []selector{{Name: "csr_agent_ready", Matchers: []matcher{{Label: "result", Type: "=~", Value: "fail.*"}}}}}, `matches no value`},
		{query{Selectors: []selector{{Name: "csr_agent_ready"}}, Labels: []string{"reslt"}}, `groups by "reslt"`},
		{query{Error: "parse error"}, "does not parse"},
	} {
		problems := have.check(tc.r)
		if len(problems) != 1 || !strings.Contains(problems[0], tc.want) {
			t.Errorf("%+v: problems %q, want one containing %q", tc.r, problems, tc.want)
		}
	}
	ok := query{Selectors: []selector{{Name: "csr_agent_ready", Matchers: []matcher{
		{Label: "result", Type: "=", Value: "success"}, {Label: "namespace", Type: "=~", Value: "$namespace"},
	}}}, Labels: []string{"result", "pod"}}
	if problems := have.check(ok); len(problems) != 0 {
		t.Errorf("a valid query: %q", problems)
	}
}

// controllerSeries exercises every metric of the controller's registry, so
// that each vector has a series, and gathers it.
func controllerSeries(t *testing.T) exposed {
	t.Helper()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	t.Cleanup(queue.ShutDown)
	m := newMetrics(queue, queue)
	r := newRetireMetrics(m.registry)
	for _, res := range []string{resultApproved, resultDenied, resultFailed} {
		m.decisions.WithLabelValues(res, approve.ReasonApproved).Inc()
		m.pcrDecisions.WithLabelValues(res, ReasonSigningFailed).Inc()
	}
	m.issued.Inc()
	m.pcrIssued.Inc()
	m.signDuration.Observe(0.001)
	m.issueLatency.Observe(1)
	m.pcrIssueLatency.Observe(1)
	m.caNotAfter.Set(float64(time.Now().Unix()))
	m.leader.Set(1)
	m.deferred.Inc()
	for _, s := range []string{"signing", "staged", "retiring"} {
		r.anchors.WithLabelValues(s).Set(1)
	}
	r.nextDrop.Set(1)
	r.dropped.WithLabelValues("Expired").Inc()
	r.refused.WithLabelValues("Invalid").Set(0)
	r.refused.WithLabelValues("SigningAnchor").Set(0)
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return seriesOf(families)
}

// agentSeries exercises the agent's hand-written metrics and parses what
// its /metrics serves.
func agentSeries(t *testing.T) exposed {
	t.Helper()
	m := status.NewMetrics()
	// The renewal results and republish reasons are always all exposed;
	// a notification hook's series appear with its first run.
	m.Notified("url", nil)
	m.Notified("signal", errors.New("no such process"))
	m.Current(&writer.Published{Leaf: &x509.Certificate{NotAfter: time.Now()}})
	m.Due(time.Now())
	m.Renewal(renew.ResultSuccess, time.Second, time.Now())
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if err := status.WriteReady(&b, true); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(&b)
	if err != nil {
		t.Fatalf("the agent's metrics do not parse: %v", err)
	}
	var list []*dto.MetricFamily
	for _, f := range families {
		list = append(list, f)
	}
	return seriesOf(list)
}

func seriesOf(families []*dto.MetricFamily) exposed {
	have := exposed{}
	add := func(name string, labels map[string][]string, extra ...string) {
		l := map[string][]string{}
		for k, v := range labels {
			l[k] = v
		}
		for _, k := range extra {
			l[k] = nil
		}
		have[name] = l
	}
	for _, f := range families {
		labels := map[string][]string{}
		for _, s := range f.GetMetric() {
			for _, lp := range s.GetLabel() {
				if !slices.Contains(labels[lp.GetName()], lp.GetValue()) {
					labels[lp.GetName()] = append(labels[lp.GetName()], lp.GetValue())
				}
			}
		}
		name := f.GetName()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(name+"_bucket", labels, "le")
			add(name+"_sum", labels)
			add(name+"_count", labels)
		case dto.MetricType_SUMMARY:
			add(name, labels, "quantile")
			add(name+"_sum", labels)
			add(name+"_count", labels)
		default:
			add(name, labels)
		}
	}
	return have
}

// check returns what is wrong with one parsed expression.
func (have exposed) check(r query) []string {
	if r.Error != "" {
		return []string{"does not parse: " + r.Error}
	}
	var problems []string
	known := map[string]bool{}
	for _, l := range targetLabels {
		known[l] = true
	}
	for _, s := range r.Selectors {
		labels, ok := have[s.Name]
		if !ok {
			problems = append(problems, `metric "`+s.Name+`" is exposed by neither the agent nor the controller`)
			continue
		}
		for l := range labels {
			known[l] = true
		}
		for _, m := range s.Matchers {
			values, ok := labels[m.Label]
			switch {
			case slices.Contains(targetLabels, m.Label):
			case !ok:
				problems = append(problems, `metric "`+s.Name+`" has no label "`+m.Label+`"`)
			case strings.Contains(m.Value, "$"), values == nil: // a dashboard variable; le
			case m.Type == "=" && !slices.Contains(values, m.Value):
				problems = append(problems, `metric "`+s.Name+`" never has `+m.Label+` value "`+m.Value+`" (exposed: `+strings.Join(values, ", ")+`)`)
			case m.Type == "=~" && !slices.ContainsFunc(values, regexp.MustCompile("^(?:"+m.Value+")$").MatchString):
				problems = append(problems, `metric "`+s.Name+`": `+m.Label+`=~"`+m.Value+`" matches no value (exposed: `+strings.Join(values, ", ")+`)`)
			}
		}
	}
	for _, l := range r.Labels {
		if !known[l] {
			problems = append(problems, `groups by "`+l+`", a label none of its metrics has`)
		}
	}
	return problems
}

// monitoringExprs returns the alerts' and the dashboard's expressions, the
// dashboard's interval variables replaced by a duration so that they parse.
func monitoringExprs(t *testing.T) []string {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(readManifest(t, "monitoring/rules.yaml"), &rules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	var dashboard any
	if err := json.Unmarshal(readManifest(t, "monitoring/dashboard.json"), &dashboard); err != nil {
		t.Fatal(err)
	}
	intervals := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	labelValues := regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)$`)
	walkJSON(dashboard, func(key string, v string) {
		switch key {
		case "expr":
			exprs = append(exprs, intervals.Replace(v))
		case "definition": // a variable's label_values(selector, label)
			if m := labelValues.FindStringSubmatch(v); m != nil {
				exprs = append(exprs, "count by ("+m[2]+") ("+m[1]+")")
			} else {
				t.Errorf("dashboard variable %q: only label_values(selector, label) is checked", v)
			}
		}
	})
	return exprs
}

func readManifest(t *testing.T, name string) []byte {
	t.Helper()
	data, err := fs.ReadFile(manifests.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func walkJSON(v any, f func(key, value string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok {
				f(k, s)
			} else {
				walkJSON(e, f)
			}
		}
	case []any:
		for _, e := range v {
			walkJSON(e, f)
		}
	}
}

// query is what promql-selectors (tools/promtool) reports of one
// expression.
type query struct {
	Expr      string     `json:"expr"`
	Error     string     `json:"error"`
	Selectors []selector `json:"selectors"`
	Labels    []string   `json:"labels"`
}

type selector struct {
	Name     string    `json:"name"`
	Matchers []matcher `json:"matchers"`
}

type matcher struct {
	Label string `json:"label"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// selectors parses the expressions with Prometheus's own parser, in the
// tools module, which keeps the Prometheus server module out of this one.
func selectors(t *testing.T, exprs []string) []query {
	t.Helper()
	in, err := json.Marshal(exprs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), testenv.Tool(t, "promql-selectors", "promtool"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promql-selectors: %v\n%s", err, stderr.Bytes())
	}
	var qs []query
	if err := json.Unmarshal(out, &qs); err != nil {
		t.Fatal(err)
	}
	if len(qs) != len(exprs) {
		t.Fatalf("promql-selectors answered %d queries for %d expressions", len(qs), len(exprs))
	}
	return qs
}
