package controller_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/clock"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/testenv"
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

// grantControllerRBAC is the controller's least privilege, as a deployment
// manifest would grant it to the controller's service account.
func (s *setup) grantControllerRBAC(t *testing.T, user string) {
	t.Helper()
	ctx := t.Context()
	rbac := s.env.Client.RbacV1()
	cluster := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval", "certificatesigningrequests/status"}, Verbs: []string{"update"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{s.signer}, Verbs: []string{"approve", "sign", "attest"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, Verbs: []string{"create"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, ResourceNames: []string{s.bundleName}, Verbs: []string{"get", "list", "watch", "update"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		},
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: s.ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{s.caSecret.Name}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}}, // CREATE_CA only
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"controller"}, Verbs: []string{"get", "update"}},
		},
	}
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
	clock    clock.PassiveClock
}

// start runs a controller for s until the test ends (or stop is called)
// and checks that it stopped cleanly.
func (s *setup) start(t *testing.T, o startOptions) *instance {
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
		TrustBundleName: s.bundleName, Clock: o.clock,
	}
	if o.caDir != "" {
		opts.CASecret, opts.CADir, opts.CAPollInterval = types.NamespacedName{}, o.caDir, 50*time.Millisecond
	}
	if o.identity != "" {
		// Short timings so a standby takes over within a test's patience;
		// a graceful stop releases the Lease, which needs none of them.
		opts.LeaderElection = &controller.LeaderElection{
			Namespace: s.ns, Name: "controller", Identity: o.identity,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
		}
	}
	c, err := controller.New(opts)
	if err != nil {
		t.Fatal(err)
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
