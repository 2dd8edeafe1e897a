// Package manifests holds csr-agent's Kubernetes manifests, for
// `kubectl apply -k`:
//
//	controller/           the controller: namespace, service account, RBAC,
//	                      Deployment (2 replicas, leader election), PDB,
//	                      metrics Service
//	components/own-ca/    a kustomize component: bring your own CA Secret
//	injector/             a kustomize component: admission policies that
//	                      add the agent to pods that opt in (see
//	                      internal/injector)
//	monitoring/           opt-in: alerts (a PrometheusRule, and the same
//	                      rules as a plain file) and a Grafana dashboard
//	agent-rbac/           the ClusterRoles a pod running the agent needs
//	agent-rbac/example-binding/  binding them to one service account
//	admission/            ValidatingAdmissionPolicies: a pod deletes only
//	                      its own CSRs and creates one for csr-agent.io/pod
//	                      only under its own name; only approvers set the
//	                      csr-agent.io/extra-names annotation
//	examples/             every example at once; each subdirectory alone:
//	                      native sidecar, init + sidecar, StatefulSet,
//	                      client certificate, Job, podCertificate volume
//
// The Go package embeds them (FS) so that the demo (cmd/demo) runs the
// controller and the agent with exactly the RBAC shipped here. Its tests
// apply every kustomization to a real API server, prove the RBAC with
// SubjectAccessReviews, check that the examples' agent configuration is
// valid, and check the Dockerfile at the repository root.
package manifests

import "embed"

// FS holds the manifests, with paths as in this directory, e.g.
// "controller/rbac.yaml".
//
//go:embed kustomization.yaml controller components agent-rbac admission examples injector monitoring
var FS embed.FS
