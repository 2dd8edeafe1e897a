package controller_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/manifests"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// trustDomain is the SPIFFE trust domain the tests' controllers allow.
const trustDomain = "example.org"

var signerSeq atomic.Uint32

// setup is one controller's world: its own signer name (so tests sharing
// the control plane never see each other's CSRs), its namespace for the CA
// Secret and the Lease, and a user holding exactly the controller's RBAC.
type setup struct {
	env        *testenv.Env
	signer     string
	ns         string // CA Secret and Lease
	caSecret   types.NamespacedName
	bundleName string
	user       *kubernetes.Clientset // the controller's least-privilege client
	lease      string                // the leader-election Lease in ns; "" is "controller"
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	env := testenv.Shared(t)
	n := signerSeq.Add(1)
	s := &setup{env: env, signer: fmt.Sprintf("t%d.csr-agent.io/pod", n), ns: env.NewNamespace(t)}
	s.caSecret = types.NamespacedName{Namespace: s.ns, Name: "ca"}
	s.bundleName = config.DefaultTrustBundleName(s.signer)
	userName := fmt.Sprintf("csr-agent-controller-%d", n)
	s.grantControllerRBAC(t, userName)
	cfg := env.User(t, userName)
	cfg.QPS, cfg.Burst = 400, 800 // the production defaults
	var err error
	if s.user, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	allowPodsToRequestCertificates(t, env)
	return s
}

// grantControllerRBAC binds the controller's shipped ClusterRole and Role
// (manifests/controller/rbac.yaml) to user, rule for rule; only the names
// the shipped rules are limited to (signer, trust bundle, CA Secret, Lease)
// become this test's own, so tests sharing the control plane stay apart.
func (s *setup) grantControllerRBAC(t *testing.T, user string) {
	t.Helper()
	ctx := t.Context()
	rbac := s.env.Client.RbacV1()
	names := map[string]string{
		approve.SignerName: s.signer,
		config.DefaultTrustBundleName(approve.SignerName): s.bundleName,
		"csr-agent-ca":         s.caSecret.Name,
		"csr-agent-controller": "controller", // the Lease
	}
	cluster, role := shippedControllerRoles(t)
	cluster.ObjectMeta = metav1.ObjectMeta{Name: user}
	cluster.Rules = renamed(cluster.Rules, names)
	role.ObjectMeta = metav1.ObjectMeta{Name: user, Namespace: s.ns}
	role.Rules = renamed(role.Rules, names)
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	ref := func(kind string) rbacv1.RoleRef {
		return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: user}
	}
	for _, err := range []error{
		create(rbac.ClusterRoles().Create(ctx, cluster, metav1.CreateOptions{})),
		create(rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, RoleRef: ref("ClusterRole"), Subjects: subject}, metav1.CreateOptions{})),
		create(rbac.Roles(s.ns).Create(ctx, role, metav1.CreateOptions{})),
		create(rbac.RoleBindings(s.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, RoleRef: ref("Role"), Subjects: subject}, metav1.CreateOptions{})),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// shippedControllerRoles reads the controller's ClusterRole from
// manifests/controller/rbac.yaml, and its Roles (its CA and Lease, and
// creating the CA Secret) as one Role.
func shippedControllerRoles(t *testing.T) (*rbacv1.ClusterRole, *rbacv1.Role) {
	t.Helper()
	data, err := fs.ReadFile(manifests.FS, "controller/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cluster *rbacv1.ClusterRole
	role := &rbacv1.Role{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var meta metav1.TypeMeta
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ClusterRole":
			cluster = &rbacv1.ClusterRole{}
			err = json.Unmarshal(raw, cluster)
		case "Role":
			var r rbacv1.Role
			err = json.Unmarshal(raw, &r)
			role.Rules = append(role.Rules, r.Rules...)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if cluster == nil || len(role.Rules) == 0 {
		t.Fatal("manifests/controller/rbac.yaml holds no ClusterRole or no Role")
	}
	return cluster, role
}

// renamed returns rules with each resource name in names replaced.
func renamed(rules []rbacv1.PolicyRule, names map[string]string) []rbacv1.PolicyRule {
	out := make([]rbacv1.PolicyRule, len(rules))
	for i, r := range rules {
		r.ResourceNames = slices.Clone(r.ResourceNames)
		for j, n := range r.ResourceNames {
			if to, ok := names[n]; ok {
				r.ResourceNames[j] = to
			}
		}
		out[i] = r
	}
	return out
}

// allowPodsToRequestCertificates lets every service account create and read
// CSRs, as the agent's RBAC does.
func allowPodsToRequestCertificates(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := t.Context()
	const name = "csr-agent-test-requesters"
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get", "list", "watch"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:serviceaccounts"}},
	}
	for _, err := range []error{
		create(env.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})),
		create(env.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})),
	} {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func create[T any](_ T, err error) error { return err }

// instance is a running controller.
type instance struct {
	c    *controller.Controller
	stop context.CancelFunc
	done chan error
}

type startOptions struct {
	identity string // non-empty: leader election with short timings
	createCA bool
	caDir    string // non-empty: the CA comes from this directory, not the Secret
	// podCertificates also signs PodCertificateRequests (podcert_test.go).
	podCertificates bool
	clock           clock.PassiveClock
}

// start runs a controller for s until the test ends (or stop is called)
// and checks that it stopped cleanly.
func (s *setup) start(t *testing.T, o startOptions) *instance {
	t.Helper()
	return s.startWith(t, o, nil)
}

// startWith is start with a hook that sees the controller before it runs.
func (s *setup) startWith(t *testing.T, o startOptions, before func(*controller.Controller)) *instance {
	t.Helper()
	policy, err := approve.New(approve.Options{SignerName: s.signer, TrustDomain: trustDomain})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := sign.New(sign.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := controller.Options{
		Client: s.user, Policy: policy, Issuer: issuer, CASecret: s.caSecret, CreateCA: o.createCA,
		TrustBundleName: s.bundleName, PodCertificates: o.podCertificates, Clock: o.clock,
	}
	if o.caDir != "" {
		opts.CASecret, opts.CADir, opts.CAPollInterval = types.NamespacedName{}, o.caDir, 50*time.Millisecond
	}
	if o.identity != "" {
		// Short timings so a standby takes over within a test's patience;
		// a graceful stop releases the Lease, which needs none of them.
		opts.LeaderElection = &controller.LeaderElection{
			Namespace: s.ns, Name: cmp.Or(s.lease, "controller"), Identity: o.identity,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
		}
	}
	c, err := controller.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(c)
	}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	if o.identity != "" {
		logger = logger.WithValues("instance", o.identity)
	}
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	in := &instance{c: c, stop: cancel, done: make(chan error, 1)}
	go func() { in.done <- c.Run(ctx) }()
	t.Cleanup(func() { in.shutdown(t) })
	return in
}

// shutdown stops the controller and waits for Run to return nil.
func (in *instance) shutdown(t *testing.T) {
	t.Helper()
	in.stop()
	select {
	case err, ok := <-in.done:
		if ok && err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
		if ok {
			close(in.done)
		}
	case <-time.After(30 * time.Second):
		t.Error("Run did not return within 30s of its context being cancelled")
	}
}
