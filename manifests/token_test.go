package manifests_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// serviceAccountDir is where client-go's in-cluster configuration
// (rest.InClusterConfig) reads the token and the CA bundle of the API
// server: token and ca.crt. The agent without KUBECONFIG uses it.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// tokenVolumes names the pod's volumes that carry a service-account token.
func tokenVolumes(tmpl *corev1.PodTemplateSpec) map[string]bool {
	out := map[string]bool{}
	for _, v := range tmpl.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				out[v.Name] = true
			}
		}
	}
	return out
}

// Only the agent's container holds the pod's API credentials: the
// application's containers get no token, by default or by volume.
func TestExamplesMountTheTokenOnlyInTheAgent(t *testing.T) {
	seen := map[*corev1.PodTemplateSpec]bool{}
	for _, a := range agentContainers(t) {
		tokens := tokenVolumes(a.tmpl)
		var mounted *corev1.VolumeMount
		for i, m := range a.c.VolumeMounts {
			if tokens[m.Name] {
				mounted = &a.c.VolumeMounts[i]
			}
		}
		switch {
		case mounted == nil:
			t.Errorf("%s: the agent mounts no service-account token", a.where)
		case mounted.MountPath != serviceAccountDir || !mounted.ReadOnly:
			t.Errorf("%s: token mounted at %s (read-only %t), want read-only at %s, where client-go's in-cluster config reads it",
				a.where, mounted.MountPath, mounted.ReadOnly, serviceAccountDir)
		}
		if mounted != nil {
			checkTokenVolume(t, a.where, a.tmpl, mounted.Name)
		}
		if seen[a.tmpl] {
			continue
		}
		seen[a.tmpl] = true
		if m := a.tmpl.Spec.AutomountServiceAccountToken; m == nil || *m {
			t.Errorf("%s: automountServiceAccountToken is not false: every container would get the token", a.where)
		}
		for _, c := range allContainers(a.tmpl) {
			if len(c.Command) > 0 && c.Command[0] == "/agent" {
				continue
			}
			for _, m := range c.VolumeMounts {
				if tokens[m.Name] || strings.HasPrefix(m.MountPath, "/var/run/secrets/kubernetes.io") {
					t.Errorf("%s: container %s mounts the service-account token (%s)", a.where, c.Name, m.Name)
				}
			}
		}
	}
}

// checkTokenVolume checks that the volume holds what rest.InClusterConfig
// reads: the token and the API server's CA bundle.
func checkTokenVolume(t *testing.T, where string, tmpl *corev1.PodTemplateSpec, name string) {
	t.Helper()
	files := map[string]bool{}
	for _, v := range tmpl.Spec.Volumes {
		if v.Name != name {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				files[src.ServiceAccountToken.Path] = true
			}
			if src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt" {
				for _, item := range src.ConfigMap.Items {
					files[item.Path] = true
				}
			}
		}
	}
	for _, f := range []string{"token", "ca.crt"} {
		if !files[f] {
			t.Errorf("%s: volume %s lacks %s, which the in-cluster configuration reads", where, name, f)
		}
	}
}
