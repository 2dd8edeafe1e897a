package manifests_test

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/csr-agent/csr-agent/internal/config"
)

// downwardAPI is what every agent container must get from the downward API:
// the pod's identity, which the controller checks against the pod-bound
// token, and its IPs.
var downwardAPI = map[string]string{
	"POD_NAME":      "metadata.name",
	"POD_NAMESPACE": "metadata.namespace",
	"POD_UID":       "metadata.uid",
	"POD_IPS":       "status.podIPs",
}

// agentContainer is one container running the agent in an example.
type agentContainer struct {
	where  string // example/workload/container
	tmpl   *corev1.PodTemplateSpec
	c      corev1.Container
	native bool // an init container with restartPolicy: Always
}

func agentContainers(t *testing.T) []agentContainer {
	t.Helper()
	var out []agentContainer
	for _, dir := range kustomizations(t) {
		if !strings.HasPrefix(dir, "examples/") {
			continue
		}
		_, objs := build(t, dir)
		for _, o := range objs {
			tmpl := podTemplate(t, o)
			if tmpl == nil {
				continue
			}
			for i, c := range allContainers(tmpl) {
				if len(c.Command) > 0 && c.Command[0] == "/agent" {
					native := i < len(tmpl.Spec.InitContainers) && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
					out = append(out, agentContainer{where: dir + "/" + o.GetName() + "/" + c.Name, tmpl: tmpl, c: c, native: native})
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no example runs the agent")
	}
	return out
}

func TestExamplesSetEveryDownwardAPIVariable(t *testing.T) {
	for _, a := range agentContainers(t) {
		for name, field := range downwardAPI {
			i := slices.IndexFunc(a.c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
			if i < 0 {
				t.Errorf("%s: %s is not set", a.where, name)
				continue
			}
			if ref := a.c.Env[i].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != field {
				t.Errorf("%s: %s should come from the downward API fieldRef %s", a.where, name, field)
			}
		}
	}
}

// Each agent container's environment, with the downward API resolved as the
// kubelet would, is a configuration the agent accepts: no typo of a
// variable, no value the agent would refuse at start.
func TestExamplesGiveTheAgentAValidConfiguration(t *testing.T) {
	for _, a := range agentContainers(t) {
		t.Run(a.where, func(t *testing.T) {
			isolateEnv(t, config.Docs())
			for _, e := range a.c.Env {
				if !slices.ContainsFunc(config.Docs(), func(v config.Var) bool { return v.Name == e.Name }) {
					t.Errorf("%s is not an agent variable", e.Name)
				}
				t.Setenv(e.Name, resolve(t, e))
			}
			if _, err := config.FromEnv(); err != nil {
				t.Errorf("the agent would refuse this configuration:\n%v", err)
			}
		})
	}
}

func TestExamplesKeepTheKeyInMemoryAndGateNativeSidecarsOnIt(t *testing.T) {
	for _, a := range agentContainers(t) {
		certDir := envValue(a.c, "CERT_DIR")
		if certDir == "" {
			certDir = defaultOf(t, config.Docs(), "CERT_DIR")
		}
		i := slices.IndexFunc(a.c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == certDir })
		if i < 0 {
			t.Errorf("%s mounts nothing at CERT_DIR %s", a.where, certDir)
			continue
		}
		v := a.tmpl.Spec.Volumes[slices.IndexFunc(a.tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == a.c.VolumeMounts[i].Name })]
		if v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("%s: volume %s at CERT_DIR is not an emptyDir with medium Memory", a.where, v.Name)
		}
		if !a.native {
			continue
		}
		p := a.c.StartupProbe
		switch {
		case p == nil:
			t.Errorf("%s: a native sidecar without a startup probe does not hold back the app", a.where)
		case p.Exec != nil:
			if !slices.Equal(p.Exec.Command, []string{"/agent", "probe"}) {
				t.Errorf("%s: startup probe runs %q, want /agent probe", a.where, p.Exec.Command)
			}
		case p.HTTPGet != nil:
			if p.HTTPGet.Path != "/readyz" || portOf(t, a.c, p.HTTPGet.Port.String()) != httpPort(t, a.c) {
				t.Errorf("%s: startup probe gets %s on port %s, want /readyz on HTTP_ADDR's port", a.where, p.HTTPGet.Path, p.HTTPGet.Port.String())
			}
		default:
			t.Errorf("%s: startup probe is neither /agent probe nor /readyz", a.where)
		}
	}
}

func TestControllerDeploymentGivesAValidConfigurationMatchingItsRBAC(t *testing.T) {
	_, objs := build(t, "controller")
	deploy := find(t, objs, "Deployment", "csr-agent-controller")
	if n := convert[appsv1.Deployment](t, deploy).Spec.Replicas; n == nil || *n < 2 {
		t.Errorf("replicas = %v, want at least 2 (a standby)", n)
	}
	checkControllerConfig(t, objs)
}

// checkControllerConfig checks that the controller's Deployment among objs
// gives it a configuration it accepts, with probes on its health port, and
// that its RBAC names the objects that configuration names. It returns the
// configuration.
func checkControllerConfig(t *testing.T, objs []*unstructured.Unstructured) *config.Controller {
	t.Helper()
	deploy := find(t, objs, "Deployment", "csr-agent-controller")
	tmpl := podTemplate(t, deploy)
	ctr := container(t, tmpl, "controller")
	isolateEnv(t, config.ControllerDocs())
	for _, e := range ctr.Env {
		if !slices.ContainsFunc(config.ControllerDocs(), func(v config.Var) bool { return v.Name == e.Name }) {
			t.Errorf("%s is not a controller variable", e.Name)
		}
		ns := deploy.GetNamespace()
		if e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
			t.Setenv(e.Name, ns)
			continue
		}
		t.Setenv(e.Name, resolve(t, e))
	}
	cfg, err := config.ControllerFromEnv()
	if err != nil {
		t.Fatalf("the controller would refuse this configuration:\n%v", err)
	}
	if !cfg.LeaderElect {
		t.Error("LEADER_ELECT is off: two replicas would both sign")
	}
	for _, probe := range []*corev1.Probe{ctr.LivenessProbe, ctr.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil {
			t.Fatal("controller needs HTTP liveness and readiness probes")
		}
		if got, want := portOf(t, ctr, probe.HTTPGet.Port.String()), addrPort(t, cfg.HealthAddr); got != want {
			t.Errorf("probe on port %d, HEALTH_ADDR listens on %d", got, want)
		}
	}

	// RBAC names the objects the configuration names.
	cluster := convert[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", "csr-agent-controller"))
	ns := convert[rbacv1.Role](t, find(t, objs, "Role", "csr-agent-controller"))
	for _, c := range []struct{ resource, name string }{
		{"signers", cfg.SignerName},
		{"clustertrustbundles", cfg.TrustBundleName},
	} {
		if !namedIn(cluster.Rules, c.resource, c.name) {
			t.Errorf("ClusterRole does not grant %s %q, which the configuration uses", c.resource, c.name)
		}
	}
	for _, c := range []struct{ resource, name, namespace, want string }{
		{"secrets", cfg.CASecretName, cfg.CASecretNamespace, deploy.GetNamespace()},
		{"leases", cfg.LeaseName, cfg.LeaseNamespace, deploy.GetNamespace()},
	} {
		if !namedIn(ns.Rules, c.resource, c.name) || c.namespace != ns.Namespace {
			t.Errorf("Role in %s does not grant %s %s/%s, which the configuration uses", ns.Namespace, c.resource, c.namespace, c.name)
		}
	}
	return cfg
}

func namedIn(rules []rbacv1.PolicyRule, resource, name string) bool {
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, resource) && slices.Contains(r.ResourceNames, name)
	})
}

// isolateEnv unsets every documented variable for the test, so that only
// what the manifest sets is seen.
func isolateEnv(t *testing.T, vars []config.Var) {
	t.Helper()
	for _, v := range vars {
		t.Setenv(v.Name, "") // restores the original value after the test
		if err := os.Unsetenv(v.Name); err != nil {
			t.Fatal(err)
		}
	}
}

// resolve is the value the kubelet would give a variable, with sample pod
// facts for the downward API.
func resolve(t *testing.T, e corev1.EnvVar) string {
	t.Helper()
	if e.ValueFrom == nil {
		return e.Value
	}
	if e.ValueFrom.FieldRef == nil {
		t.Fatalf("%s: only literal values and fieldRefs are expected", e.Name)
	}
	sample := map[string]string{
		"metadata.name":      "store-0",
		"metadata.namespace": "csr-agent-examples",
		"metadata.uid":       "1c9f4c55-7d4e-4f39-9d0c-3f6c2b7f6a11",
		"status.podIPs":      "10.244.1.7,fd00:10:244:1::7",
		"status.podIP":       "10.244.1.7",
	}
	v, ok := sample[e.ValueFrom.FieldRef.FieldPath]
	if !ok {
		t.Fatalf("%s: unexpected fieldRef %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
	}
	return v
}

func defaultOf(t *testing.T, vars []config.Var, name string) string {
	t.Helper()
	i := slices.IndexFunc(vars, func(v config.Var) bool { return v.Name == name })
	if i < 0 {
		t.Fatalf("no variable %s", name)
	}
	return vars[i].Default
}

// httpPort is the port of the agent's HTTP_ADDR in c.
func httpPort(t *testing.T, c corev1.Container) int {
	t.Helper()
	addr := envValue(c, "HTTP_ADDR")
	if addr == "" {
		addr = defaultOf(t, config.Docs(), "HTTP_ADDR")
	}
	return addrPort(t, addr)
}

func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// portOf resolves a probe's port, a number or a named container port.
func portOf(t *testing.T, c corev1.Container, port string) int {
	t.Helper()
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, port)
	return 0
}
