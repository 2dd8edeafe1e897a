// Package monitoring holds csr-agent's Prometheus alerts and Grafana
// dashboard; it has no code, only files and their tests:
//
//	rules.yaml           the alerts, a Prometheus rules file (the source)
//	prometheusrule.yaml  the same groups as a PrometheusRule, generated
//	rules.test.yaml      unit tests of the alerts for `promtool test rules`
//	scrape.yaml          a ServiceMonitor (controller) and a PodMonitor (agents)
//	dashboard.json       the Grafana dashboard
//	kustomization.yaml   the PrometheusRule and the dashboard's ConfigMap,
//	                     opt-in: `kubectl apply -k manifests/monitoring`
//	README.md            the runbook, one section per alert
//
// The tests run promtool (built by `make bin/promtool` from the version
// pinned in tools/promtool) to check the rules and run their unit tests, and
// prove that prometheusrule.yaml carries exactly rules.yaml's groups.
// internal/controller's tests check every metric and label the alerts and
// the dashboard query against what the agent and the controller expose.
package monitoring
