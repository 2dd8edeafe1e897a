package manifests_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/csr-agent/csr-agent/internal/injector"
)

// The monitors of manifests/monitoring scrape what the other manifests
// expose: the controller's metrics Service by its labels and port name, and
// every agent by the name of its HTTP port, whether the injector added it
// or an example declares it. A renamed port would silence every alert.
func TestMonitorsScrapeTheControllerAndEveryAgent(t *testing.T) {
	_, objs := build(t, "monitoring")
	sm := find(t, objs, "ServiceMonitor", "csr-agent-controller")
	_, controller := build(t, "controller")
	svc := convert[corev1.Service](t, find(t, controller, "Service", "csr-agent-controller-metrics"))
	selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if len(selector) == 0 {
		t.Error("the ServiceMonitor selects no labels")
	}
	for k, v := range selector {
		if svc.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the metrics Service does not have", k, v)
		}
	}
	if svc.Namespace != sm.GetNamespace() {
		t.Errorf("the ServiceMonitor is in %s, the Service in %s", sm.GetNamespace(), svc.Namespace)
	}
	if got := endpointPorts(t, sm, "endpoints"); len(got) != 1 || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == got[0] }) {
		t.Errorf("the ServiceMonitor scrapes ports %v, the Service has %v", got, svc.Spec.Ports)
	}

	scraped := endpointPorts(t, find(t, objs, "PodMonitor", "csr-agent"), "podMetricsEndpoints")
	if !slices.Contains(scraped, injector.HTTPPortName) {
		t.Errorf("the PodMonitor does not scrape the injected agent's port %s", injector.HTTPPortName)
	}
	_, examples := build(t, "examples")
	for _, o := range examples {
		tmpl := podTemplate(t, o)
		if tmpl == nil {
			continue
		}
		for _, c := range allContainers(tmpl) {
			if !strings.HasPrefix(c.Image, image+":") || !slices.Contains(c.Command, "sidecar") {
				continue
			}
			for _, p := range c.Ports {
				if p.ContainerPort == injector.HTTPPort && !slices.Contains(scraped, p.Name) {
					t.Errorf("%s/%s: the agent's port %q is not scraped by the PodMonitor (%v)", o.GetName(), c.Name, p.Name, scraped)
				}
			}
		}
	}
}

func endpointPorts(t *testing.T, o *unstructured.Unstructured, field string) []string {
	t.Helper()
	eps, _, err := unstructured.NestedSlice(o.Object, "spec", field)
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, e := range eps {
		if p, ok := e.(map[string]any)["port"].(string); ok {
			ports = append(ports, p)
		}
	}
	return ports
}
