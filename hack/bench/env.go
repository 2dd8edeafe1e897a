package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/localcluster"
	"github.com/csr-agent/csr-agent/manifests"
)

const (
	signerName = "csr-agent.io/pod"
	// tokenTTL outlives any run; no kubelet refreshes the tokens.
	tokenTTL = 6 * time.Hour
)

// The footprint benchmark's pods, the only users the audit log records:
// logging every request would slow the API server down in the other
// benchmarks, and unevenly (the burst's pods are service accounts, the
// administrator of the KCM runs is not).
var idleNamespaces = [2]string{"bench-idle-agent", "bench-idle-reference"}

// auditPolicy logs the metadata of the requests of the footprint pods'
// service account. The first stage is dropped: a request is counted once,
// by its auditID, at the time it was received.
var auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["system:serviceaccount:` + idleNamespaces[0] + `:app", "system:serviceaccount:` + idleNamespaces[1] + `:app"]
- level: None
`

// env is one control plane with the controller running, shared by every
// benchmark of a run, and the programs built for it.
type env struct {
	cluster    *localcluster.Cluster
	work       string // scratch directory of the run
	agent      string // built programs
	reference  string
	ctrlBin    string
	controller *process
	auditLog   string
}

// build compiles the agent, the reference requester and the controller as
// the Makefile and the Dockerfile build them: static and stripped.
func build(ctx context.Context, out string) (agent, reference, controller string, err error) {
	agent, reference, controller = filepath.Join(out, "agent"), filepath.Join(out, "reference"), filepath.Join(out, "controller")
	for pkg, dst := range map[string]string{"./cmd/agent": agent, "./hack/bench/reference": reference, "./cmd/controller": controller} {
		if err := goBuild(ctx, pkg, dst); err != nil {
			return "", "", "", err
		}
	}
	return agent, reference, controller, nil
}

// goBuild builds pkg into dst static and stripped.
func goBuild(ctx context.Context, pkg, dst string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dst, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return nil
}

func setup(ctx context.Context, work string, ctrlEnv []string, logf func(string, ...any)) (*env, error) {
	e := &env{work: work, auditLog: filepath.Join(work, "audit.log")}
	var err error
	logf("building agent, reference and controller (CGO_ENABLED=0 -trimpath -ldflags='-s -w')")
	if e.agent, e.reference, e.ctrlBin, err = build(ctx, filepath.Join(work, "bin")); err != nil {
		return nil, err
	}
	policy := filepath.Join(work, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	logf("starting the local control plane with an audit log")
	e.cluster, err = localcluster.Start(ctx, localcluster.Options{APIServerFlags: map[string]string{
		"audit-policy-file": policy,
		"audit-log-path":    e.auditLog,
		"audit-log-mode":    "blocking", // every entry written before the response
		"audit-log-maxsize": "0",        // no rotation: one file to read
	}})
	if err != nil {
		return nil, err
	}
	if err := e.install(ctx); err != nil {
		return nil, err
	}
	logf("starting the controller")
	if err := e.startController(ctx, ctrlEnv); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) stop() error {
	var errs []string
	if e.controller != nil {
		if err := e.controller.stop(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if e.cluster != nil {
		if err := e.cluster.Stop(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// install applies the controller's RBAC and the agent's ClusterRoles as
// shipped, and binds the agent's roles to every service account (each
// benchmark pod has its own).
func (e *env) install(ctx context.Context) error {
	if _, err := manifests.Apply(ctx, e.cluster.Config, fieldManager,
		"controller/namespace.yaml", "controller/serviceaccount.yaml", "controller/rbac.yaml", "controller/flowschema.yaml", "agent-rbac/clusterroles.yaml"); err != nil {
		return err
	}
	// The reference waits as client-go's WaitForCertificate does, with an
	// informer that lists before it watches; the agent's role has no list.
	listCSRs := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "bench:reference"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"list"},
		}},
	}
	if _, err := e.cluster.Client.RbacV1().ClusterRoles().Create(ctx, listCSRs, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating %s: %w", listCSRs.Name, err)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts"}}
	for _, role := range []string{"csr-agent", "csr-agent-namespace", "csr-agent-events", listCSRs.Name} {
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "bench:binding:" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
		if _, err := e.cluster.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("binding %s: %w", role, err)
		}
	}
	return nil
}

// startController runs the controller with its defaults, as its service
// account, with a self-signed CA, as cmd/demo does; one replica, so no
// leader election.
func (e *env) startController(ctx context.Context, extra []string) error {
	kubeconfig, err := e.cluster.ServiceAccountKubeconfig(ctx, "csr-agent-system", "csr-agent-controller", tokenTTL)
	if err != nil {
		return err
	}
	env := []string{
		"KUBECONFIG=" + kubeconfig, "SIGNER_NAME=" + signerName, "CREATE_CA=true", "LEADER_ELECT=false",
		"POD_NAME=bench-controller", "METRICS_ADDR=", "HEALTH_ADDR=", "LOG_FORMAT=text",
	}
	env = append(env, extra...)
	if e.controller, err = startProcess("controller", e.ctrlBin, []string{"run"}, env, filepath.Join(e.work, "controller.log")); err != nil {
		return err
	}
	name := config.DefaultTrustBundleName(signerName)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(wctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if !e.controller.running() {
			return false, e.controller.exited()
		}
		_, err := e.cluster.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, name, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the controller's ClusterTrustBundle: %w\n%s", err, e.controller.logTail())
	}
	return nil
}

// newPod creates a simulated pod in namespace.
func (e *env) newPod(ctx context.Context, namespace string) (*localcluster.Pod, error) {
	return e.cluster.NewPod(ctx, localcluster.PodOptions{Namespace: namespace, TokenTTL: tokenTTL})
}

// podDNSName is the pod-IP DNS name the agent puts in a serving
// certificate by default.
func podDNSName(p *localcluster.Pod) string {
	return strings.ReplaceAll(p.IPs[0], ".", "-") + "." + p.Namespace + ".pod.cluster.local"
}
