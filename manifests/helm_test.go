package manifests_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// The chart and manifests/ are two ways to install the same objects: each
// kustomize build a user may apply has a set of chart values rendering the
// same objects, with Helm's standard labels as the only difference. So the
// two can never drift.
func TestHelmChartRendersWhatKustomizeBuilds(t *testing.T) {
	for _, c := range []struct {
		name   string
		values map[string]any
		dir    func(t *testing.T) string
	}{
		{"defaults, as manifests/", nil, func(*testing.T) string { return "." }},
		{"injector.enabled, as the injector component", map[string]any{"injector": map[string]any{"enabled": true}}, injectorOverlay},
		{"ca.source secret, as the own-ca component", map[string]any{"ca": map[string]any{"source": "secret"}},
			func(t *testing.T) string { return overlay(t, ".", "components/own-ca") }},
		{"both", map[string]any{"injector": map[string]any{"enabled": true}, "ca": map[string]any{"source": "secret"}},
			func(t *testing.T) string { return overlay(t, ".", "injector", "components/own-ca") }},
		{"monitoring.enabled, as manifests/ and manifests/monitoring", map[string]any{"monitoring": map[string]any{"enabled": true}},
			func(t *testing.T) string { return resources(t, ".", "monitoring") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, want := build(t, c.dir(t))
			checkSameObjects(t, mustRenderChart(t, c.values), want)
		})
	}
}

// The chart cannot read files outside its directory, so it carries copies
// of the monitoring files; they must be the originals.
func TestHelmChartMonitoringFilesAreManifestsMonitoring(t *testing.T) {
	for _, name := range []string{"rules.yaml", "dashboard.json"} {
		src := filepath.Join(repoRoot(t), "manifests", "monitoring", name)
		copied := filepath.Join(chartDir(t), "files", name)
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(copied)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s differs from %s; run: cp %s %s", copied, src, "manifests/monitoring/"+name, "charts/csr-agent/files/")
		}
	}
}

// helm lint --strict: no warning, no error, with the defaults and with
// every optional part on.
func TestHelmChartLintsClean(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range map[string]map[string]any{
		"defaults": nil,
		"everything on": {
			"injector":   map[string]any{"enabled": true},
			"ca":         map[string]any{"source": "secret"},
			"monitoring": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			result := lint.RunAll(chartDir(t), values, "default", lint.WithKubeVersion(kv))
			for _, m := range result.Messages {
				if m.Severity >= support.WarningSev {
					t.Error(m)
				} else {
					t.Log(m)
				}
			}
		})
	}
}

// The defaults render objects the API server accepts as they are (and Pod
// Security finds nothing to warn about); every other combination is
// accepted by a server-side dry run, which compiles the policies' CEL too.
func TestHelmChartIsAcceptedByTheAPIServer(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env) // the namespace, for the dry runs
	out, _, err := renderChart(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The manager of every other apply of this package: the fields stay
	// with one manager, and the later dry runs of the kustomize builds meet
	// no conflict.
	kubectl(t, env.KubeconfigFile, out, "apply", "--server-side", "--force-conflicts", "--field-manager=manifests-test", "-f", "-")

	// A dry run does not create the namespace the next objects need.
	values := nonDefaults(t)
	values["namespace"] = map[string]any{"name": "csr-agent-system", "create": false}
	out, _, err = renderChart(t, values)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, env.KubeconfigFile, out, "apply", "--server-side", "--dry-run=server", "--force-conflicts", "--field-manager=manifests-test", "-f", "-")
}

// nonDefaults changes every value that an object other than the one
// holding it must follow.
func nonDefaults(t *testing.T) map[string]any {
	t.Helper()
	return map[string]any{
		"namespace":     map[string]any{"name": "certs", "create": true},
		"image":         map[string]any{"repository": "registry.example/pki/csr-agent", "tag": "v9.8.7"},
		"signerName":    "example.com/workload",
		"maxExpiration": "2h",
		"ca":            map[string]any{"source": "secret", "secretName": "pki-ca"},
		"controller":    map[string]any{"replicas": 1},
		"metrics":       map[string]any{"enabled": false},
		"injector":      map[string]any{"enabled": true},
	}
}

// A changed signer name, namespace, image or CA Secret reaches every object
// that names it: no object keeps a default, the controller accepts its
// configuration, and its RBAC names what that configuration uses.
func TestHelmChartValuesReachEveryObject(t *testing.T) {
	objs := mustRenderChart(t, nonDefaults(t))
	for _, o := range objs {
		data, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		for _, stale := range []string{"csr-agent.io/pod", "csr-agent.io/*", "csr-agent.io:pod", "csr-agent-system", "csr-agent-ca", "ghcr.io/"} {
			if strings.Contains(string(data), stale) {
				t.Errorf("%s still holds %q", objectID(o), stale)
			}
		}
		if ns := o.GetNamespace(); ns != "" && ns != "certs" {
			t.Errorf("%s is not in namespace certs", objectID(o))
		}
	}

	cfg := checkControllerConfig(t, objs)
	if cfg.SignerName != "example.com/workload" || cfg.TrustBundleName != config.DefaultTrustBundleName("example.com/workload") ||
		cfg.CreateCA || cfg.CASecretName != "pki-ca" || cfg.MaxExpiration.String() != "2h0m0s" || cfg.MetricsAddr != "" {
		t.Errorf("controller configuration %+v does not follow the values", cfg)
	}
	for _, o := range objs {
		if o.GetKind() == "Role" && ruleGrants(t, o, "secrets", "create") {
			t.Errorf("Role %s may create Secrets with ca.source secret", o.GetName())
		}
		if o.GetKind() == "Service" || o.GetKind() == "PodDisruptionBudget" {
			t.Errorf("%s is rendered with metrics off and one replica", objectID(o))
		}
	}

	// The admission policies check the signer the controller signs for.
	for _, name := range []string{"csr-agent-pod-requests", "csr-agent-extra-names"} {
		data, err := json.Marshal(find(t, objs, "ValidatingAdmissionPolicy", name).Object["spec"])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "'example.com/workload'") {
			t.Errorf("ValidatingAdmissionPolicy %s does not check signer example.com/workload", name)
		}
	}
	extra, err := json.Marshal(find(t, objs, "ValidatingAdmissionPolicy", "csr-agent-extra-names").Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(extra), "'example.com/*'") {
		t.Error("csr-agent-extra-names does not accept approvers of the signer's domain wildcard example.com/*")
	}

	// Injected agents run the image and ask the signer.
	for where, image := range imagesOf(t, objs) {
		if image != "registry.example/pki/csr-agent:v9.8.7" {
			t.Errorf("%s runs %s", where, image)
		}
	}
	cm := convert[corev1.ConfigMap](t, find(t, objs, "ConfigMap", "csr-agent-injector"))
	if cm.Data["image"] != "registry.example/pki/csr-agent:v9.8.7" {
		t.Errorf("injected agents run %s", cm.Data["image"])
	}
	mutating, err := json.Marshal(find(t, objs, "MutatingAdmissionPolicy", "csr-agent-injector").Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mutating), "{name: 'SIGNER_NAME', value: 'example.com/workload'}") {
		t.Error("injected agents are not told SIGNER_NAME example.com/workload")
	}
}

// The chart's defaults are the programs' defaults: an agent told nothing
// asks the signer the controller signs for, the trust bundle named in the
// controller's RBAC is the one it publishes.
func TestHelmChartDefaultsAreTheProgramsDefaults(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		SignerName    string `json:"signerName"`
		MaxExpiration string `json:"maxExpiration"`
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		vars []config.Var
		name string
		want string
	}{
		{config.Docs(), "SIGNER_NAME", values.SignerName},
		{config.ControllerDocs(), "SIGNER_NAME", values.SignerName},
		{config.ControllerDocs(), "MAX_EXPIRATION", values.MaxExpiration},
	} {
		if got := defaultOf(t, c.vars, c.name); got != c.want {
			t.Errorf("%s defaults to %q, the chart's values to %q", c.name, got, c.want)
		}
	}
	// The injected agent is told its signer only when it is not the
	// agent's default: with the defaults it must not be (as in manifests/).
	mutating, err := json.Marshal(find(t, mustRenderChart(t, map[string]any{"injector": map[string]any{"enabled": true}}),
		"MutatingAdmissionPolicy", "csr-agent-injector").Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mutating), "SIGNER_NAME") {
		t.Error("the default render tells injected agents SIGNER_NAME")
	}
	for _, signer := range []string{"csr-agent.io/pod", "example.com/workload", "a.b.c/x.y"} {
		role := convert[rbacv1.ClusterRole](t, find(t, mustRenderChart(t, map[string]any{"signerName": signer}), "ClusterRole", "csr-agent-controller"))
		if want := config.DefaultTrustBundleName(signer); !namedIn(role.Rules, "clustertrustbundles", want) {
			t.Errorf("signer %s: the controller's ClusterRole does not name the bundle %s it publishes", signer, want)
		}
	}
}

// Values land in objects and in the policies' CEL: a value that could
// change what a policy checks, or that the controller would refuse, is
// refused by the chart, naming the value, and renders nothing.
func TestHelmChartRefusesHostileValues(t *testing.T) {
	for _, c := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"a quote in the signer name", map[string]any{"signerName": "csr-agent.io/pod') || true || ('"}, "signerName"},
		{"a signer name without a path", map[string]any{"signerName": "csr-agent.io"}, "signerName"},
		{"a signer name with two paths", map[string]any{"signerName": "csr-agent.io/pod/x"}, "signerName"},
		{"an invalid namespace", map[string]any{"namespace": map[string]any{"name": "Kube_System"}}, "namespace"},
		{"an unknown CA source", map[string]any{"ca": map[string]any{"source": "vault"}}, "source"},
		{"a maximum lifetime that is not a duration", map[string]any{"maxExpiration": "1 day"}, "maxExpiration"},
		{"a misspelt value", map[string]any{"controller": map[string]any{"replica": 3}}, "replica"},
		{"metrics on the health port", map[string]any{"metrics": map[string]any{"port": 8081}}, "port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, objs, err := renderChart(t, c.values)
			if err == nil {
				t.Fatalf("the chart rendered %d objects", len(objs))
			}
			if len(out) > 0 {
				t.Errorf("a refused render still output %d bytes", len(out))
			}
			if msg := renderError(err); !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not name %s", msg, c.want)
			}
		})
	}
}
