package manifests_test

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

const (
	podSigner        = "csr-agent.io/pod"
	extraNames       = "csr-agent.io/extra-names"
	podRequestsVAP   = "csr-agent-pod-requests"
	extraNamesVAP    = "csr-agent-extra-names"
	otherSigner      = "kubernetes.io/kube-apiserver-client"
	extraNamesSample = "legacy.example.com"
)

// csrClient creates and deletes CSRs as one identity.
type csrClient struct {
	t    *testing.T
	who  string
	csrs interface {
		Create(context.Context, *certificatesv1.CertificateSigningRequest, metav1.CreateOptions) (*certificatesv1.CertificateSigningRequest, error)
		Update(context.Context, *certificatesv1.CertificateSigningRequest, metav1.UpdateOptions) (*certificatesv1.CertificateSigningRequest, error)
		Delete(context.Context, string, metav1.DeleteOptions) error
		Get(context.Context, string, metav1.GetOptions) (*certificatesv1.CertificateSigningRequest, error)
	}
}

func clientAs(t *testing.T, who string, cfg *rest.Config) *csrClient {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &csrClient{t: t, who: who, csrs: c.CertificatesV1().CertificateSigningRequests()}
}

// newCSR is a valid request for signer under name ("" for a generated one).
func newCSR(t *testing.T, name, signer string, annotations map[string]string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	request, err := testenv.ProbeRequest()
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: request, SignerName: signer,
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	if name == "" {
		csr.GenerateName = "csr-"
	}
	return csr
}

// create creates the CSR and fails the test if it is refused.
func (c *csrClient) create(csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	c.t.Helper()
	got, err := c.csrs.Create(c.t.Context(), csr, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("%s cannot create csr %s%s for %s: %v", c.who, csr.Name, csr.GenerateName, csr.Spec.SignerName, err)
	}
	return got
}

// refused fails the test unless err is the admission policy's refusal.
func refused(t *testing.T, what string, err error, policy string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: allowed", what)
	case !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), policy):
		t.Errorf("%s: refused, but not by %s: %v", what, policy, err)
	}
}

// agentPod is a pod whose service account is bound to the agent's
// ClusterRole as shipped, and a client with its pod-bound token.
func agentPod(t *testing.T, env *testenv.Env, opts testenv.PodOptions) (*testenv.Pod, *csrClient) {
	t.Helper()
	pod := env.NewPod(t, opts)
	env.GrantAgent(t, pod, testenv.AgentAccess{})
	return pod, clientAs(t, "pod "+pod.Namespace+"/"+pod.Name, pod.Config)
}

// serviceAccountClient authenticates as the pod's service account with a
// token that is not bound to the pod.
func serviceAccountClient(t *testing.T, env *testenv.Env, pod *testenv.Pod) *csrClient {
	t.Helper()
	path := env.ServiceAccountKubeconfig(t, pod.Namespace, pod.ServiceAccount)
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return clientAs(t, "unbound token of "+pod.Username(), cfg)
}

// grantUser gives a user (a client certificate) rules cluster-wide.
func grantUser(t *testing.T, env *testenv.Env, user string, rules ...rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := t.Context()
	role, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}, Rules: rules}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return env.User(t, user)
}

// eventually retries op until it succeeds: RBAC bindings take a moment to
// reach the authorizer.
func eventually(t *testing.T, what string, op func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = op(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, last)
	}
}

func TestAdmissionPoliciesTypeCheckCleanly(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	for _, name := range []string{podRequestsVAP, extraNamesVAP} {
		var policy *admissionregistrationv1.ValidatingAdmissionPolicy
		eventually(t, "type checking "+name, func(ctx context.Context) error {
			var err error
			policy, err = env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			if err == nil && (policy.Status.TypeChecking == nil || policy.Status.ObservedGeneration != policy.Generation) {
				err = apierrors.NewServiceUnavailable("not type-checked yet")
			}
			return err
		})
		for _, w := range policy.Status.TypeChecking.ExpressionWarnings {
			t.Errorf("%s: %s: %s", name, w.FieldRef, w.Warning)
		}
		if policy.Spec.FailurePolicy == nil || *policy.Spec.FailurePolicy != admissionregistrationv1.Fail {
			t.Errorf("%s: failurePolicy %v, want Fail", name, policy.Spec.FailurePolicy)
		}
		binding, err := env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the binding of %s: %v", name, err)
		}
		if binding.Spec.PolicyName != name || len(binding.Spec.ValidationActions) != 1 || binding.Spec.ValidationActions[0] != admissionregistrationv1.Deny {
			t.Errorf("binding %s: policy %q, actions %v; want %s, [Deny]", name, binding.Spec.PolicyName, binding.Spec.ValidationActions, name)
		}
	}
}

// A pod running the agent, bound to the shipped role, attacks the request
// of another pod: of another namespace and service account, or of the same
// service account. Every attack is refused by csr-agent-pod-requests.
func TestAgentsCannotDeleteOrSquatEachOthersRequests(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	ns := env.NewNamespace(t)
	victim, victimClient := agentPod(t, env, testenv.PodOptions{Namespace: ns, ServiceAccount: "app"})
	_, sibling := agentPod(t, env, testenv.PodOptions{Namespace: ns, ServiceAccount: "app"})
	other, stranger := agentPod(t, env, testenv.PodOptions{ServiceAccount: "other"})
	unbound := serviceAccountClient(t, env, victim)
	victimName := issue.CSRName(victim.Namespace, victim.Name, victim.UID)
	otherName := issue.CSRName(other.Namespace, other.Name, other.UID)

	t.Run("squatting the name of another pod's request", func(t *testing.T) {
		for _, attacker := range []*csrClient{stranger, sibling, unbound} {
			for _, signer := range []string{podSigner, otherSigner} {
				_, err := attacker.csrs.Create(t.Context(), newCSR(t, victimName, signer, nil), metav1.CreateOptions{})
				refused(t, attacker.who+" creates "+victimName+" for "+signer, err, podRequestsVAP)
			}
		}
	})
	t.Run("a request for csr-agent.io/pod under a name not its own", func(t *testing.T) {
		for _, name := range []string{"", "csr-agent-" + other.Name, otherName + "-2"} {
			_, err := stranger.csrs.Create(t.Context(), newCSR(t, name, podSigner, nil), metav1.CreateOptions{})
			refused(t, stranger.who+" creates "+name+" for "+podSigner, err, podRequestsVAP)
		}
	})

	mine := victimClient.create(newCSR(t, victimName, podSigner, nil))
	if len(mine.Spec.Extra["authentication.kubernetes.io/pod-uid"]) != 1 {
		t.Fatalf("csr %s records no pod-uid: %v", mine.Name, mine.Spec.Extra)
	}
	t.Run("deleting another pod's request", func(t *testing.T) {
		for _, attacker := range []*csrClient{stranger, sibling, unbound} {
			err := attacker.csrs.Delete(t.Context(), victimName, metav1.DeleteOptions{})
			refused(t, attacker.who+" deletes "+victimName, err, podRequestsVAP)
		}
		if _, err := env.Client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), victimName, metav1.GetOptions{}); err != nil {
			t.Errorf("the victim's request is gone: %v", err)
		}
	})
	t.Run("requests of other identities are no pod's to delete", func(t *testing.T) {
		people := env.Client.CertificatesV1().CertificateSigningRequests()
		kubelets, err := people.Create(t.Context(), newCSR(t, "", otherSigner, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// A token of the agent's service account that is not bound to a
		// pod (a namespace editor can mint one) holds the same delete
		// verb: it must not reach requests it did not make either.
		for _, attacker := range []*csrClient{stranger, unbound} {
			err = attacker.csrs.Delete(t.Context(), kubelets.Name, metav1.DeleteOptions{})
			refused(t, attacker.who+" deletes an administrator's "+kubelets.Name, err, podRequestsVAP)
		}
	})

	// What the policy lets through: a pod's own request, under its name,
	// for any signer; its own deletion; other signers' requests under
	// other names.
	theirs := stranger.create(newCSR(t, otherName, podSigner, nil))
	if err := stranger.csrs.Delete(t.Context(), theirs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &theirs.UID}}); err != nil {
		t.Errorf("%s cannot delete its own request: %v", stranger.who, err)
	}
	stranger.create(newCSR(t, otherName, otherSigner, nil))
	stranger.create(newCSR(t, "", otherSigner, nil))
	if err := victimClient.csrs.Delete(t.Context(), victimName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptrUID(mine.UID)}}); err != nil {
		t.Errorf("%s cannot delete its own request: %v", victimClient.who, err)
	}
}

func ptrUID(u types.UID) *types.UID { return &u }

// The policy must never stand in the way of kubelets' own requests, of
// kube-controller-manager's CSR cleaner (which deletes anyone's requests,
// and may run in a pod), or of administrators.
func TestPodRequestsPolicyNeverBlocksKubeletsCleanerOrAdministrators(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	pod, podClient := agentPod(t, env, testenv.PodOptions{})
	name := issue.CSRName(pod.Namespace, pod.Name, pod.UID)

	node := clientAs(t, "kubelet", grantUser(t, env, "system:node:"+testenv.NodeName,
		rbacv1.PolicyRule{APIGroups: []string{certificates}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create"}}))
	eventually(t, "a kubelet creates its own request", func(ctx context.Context) error {
		_, err := node.csrs.Create(ctx, newCSR(t, "", "kubernetes.io/kube-apiserver-client-kubelet", nil), metav1.CreateOptions{})
		return err
	})

	// A cleaner running in a pod: its token is pod-bound, and it may list
	// every CSR.
	cleanerPod := env.NewPod(t, testenv.PodOptions{Namespace: "kube-system", ServiceAccount: "certificate-controller"})
	env.Grant(t, cleanerPod, rbacv1.PolicyRule{APIGroups: []string{certificates}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "list", "watch", "delete"}})
	cleaner := clientAs(t, "cleaner in a pod", cleanerPod.Config)
	podClient.create(newCSR(t, name, podSigner, nil))
	eventually(t, "the CSR cleaner deletes a pod's request", func(ctx context.Context) error {
		return cleaner.csrs.Delete(ctx, name, metav1.DeleteOptions{})
	})

	admins := clientAs(t, "administrator", env.Config)
	podClient.create(newCSR(t, name, podSigner, nil))
	if err := admins.csrs.Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("an administrator cannot delete a pod's request: %v", err)
	}

	// The controller, with its shipped RBAC, approves a pod's request that
	// carries extra names an administrator granted.
	csr := podClient.create(newCSR(t, name, podSigner, nil))
	csr.Annotations = map[string]string{extraNames: extraNamesSample}
	csr, err := admins.csrs.Update(t.Context(), csr, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("an administrator cannot grant extra names: %v", err)
	}
	// Pod Security keeps simulated pods out of csr-agent-system, so the
	// token is not bound to a pod; approval updates are not matched anyway.
	controllerCfg, err := clientcmd.BuildConfigFromFlags("", env.ServiceAccountKubeconfig(t, "csr-agent-system", "csr-agent-controller"))
	if err != nil {
		t.Fatal(err)
	}
	controller, err := kubernetes.NewForConfig(controllerCfg)
	if err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: "True", Reason: "AutoApproved", Message: "test",
	})
	if _, err := controller.CertificatesV1().CertificateSigningRequests().UpdateApproval(t.Context(), csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Errorf("the controller cannot approve a pod's request: %v", err)
	}
}

// csr-agent-extra-names: the annotation that grants a pod more names is
// written only by someone who may approve for the signer.
func TestOnlyApproversSetTheExtraNamesAnnotation(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	pod, podClient := agentPod(t, env, testenv.PodOptions{})
	name := issue.CSRName(pod.Namespace, pod.Name, pod.UID)
	grant := map[string]string{extraNames: extraNamesSample}

	_, err := podClient.csrs.Create(t.Context(), newCSR(t, name, podSigner, grant), metav1.CreateOptions{})
	refused(t, "a pod creates its request with "+extraNames, err, extraNamesVAP)
	csr := podClient.create(newCSR(t, name, podSigner, nil))

	updateCSRs := rbacv1.PolicyRule{APIGroups: []string{certificates}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"get", "update"}}
	approve := func(signer string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{certificates}, Resources: []string{"signers"}, ResourceNames: []string{signer}, Verbs: []string{"approve"}}
	}
	updater := clientAs(t, "user with update on CSRs", grantUser(t, env, "csr-updater", updateCSRs))
	approver := clientAs(t, "approver of csr-agent.io/pod", grantUser(t, env, "pod-approver", updateCSRs, approve(podSigner)))
	domainApprover := clientAs(t, "approver of csr-agent.io/*", grantUser(t, env, "domain-approver", updateCSRs, approve("csr-agent.io/*")))
	otherApprover := clientAs(t, "approver of another signer", grantUser(t, env, "other-approver", updateCSRs, approve("example.com/pod")))

	annotate := func(c *csrClient, value *string) error {
		return wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			cur, err := c.csrs.Get(ctx, csr.Name, metav1.GetOptions{})
			if err == nil {
				if cur.Annotations == nil {
					cur.Annotations = map[string]string{}
				}
				if value == nil {
					delete(cur.Annotations, extraNames)
				} else {
					cur.Annotations[extraNames] = *value
				}
				cur.Annotations["example.com/note"] = c.who
				_, err = c.csrs.Update(ctx, cur, metav1.UpdateOptions{})
			}
			// Retry until the binding reaches the authorizer and on
			// conflicts; the policy's refusal is an answer.
			if err != nil && (strings.Contains(err.Error(), extraNamesVAP) || ctx.Err() != nil) {
				return false, err
			}
			return err == nil, nil
		})
	}
	value := extraNamesSample
	for _, c := range []*csrClient{updater, otherApprover} {
		refused(t, c.who+" sets "+extraNames, annotate(c, &value), extraNamesVAP)
	}
	// Without the annotation, updating is RBAC's business alone.
	if err := annotate(updater, nil); err != nil {
		t.Errorf("%s cannot update a request without %s: %v", updater.who, extraNames, err)
	}
	if err := annotate(approver, &value); err != nil {
		t.Errorf("%s cannot set %s: %v", approver.who, extraNames, err)
	}
	// Left as it is, the annotation needs no right to approve; changed, it
	// does.
	if err := annotate(updater, &value); err != nil {
		t.Errorf("%s cannot update a request whose %s it leaves alone: %v", updater.who, extraNames, err)
	}
	changed := value + ",more.example.com"
	refused(t, updater.who+" changes "+extraNames, annotate(updater, &changed), extraNamesVAP)
	if err := annotate(domainApprover, &changed); err != nil {
		t.Errorf("%s cannot change %s: %v", domainApprover.who, extraNames, err)
	}
	// A pod's token has no update at all.
	cur, err := podClient.csrs.Get(t.Context(), csr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Annotations[extraNames] = "evil.example.com"
	if _, err := podClient.csrs.Update(t.Context(), cur, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("%s updates its request's %s: %v", podClient.who, extraNames, err)
	}
}
