package manifests_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

// access is one request a subject may or may not make.
type access struct {
	verb, group, resource, subresource, namespace, name string
}

func (a access) String() string {
	r := a.resource
	if a.subresource != "" {
		r += "/" + a.subresource
	}
	if a.group != "" {
		r += "." + a.group
	}
	s := a.verb + " " + r
	if a.name != "" {
		s += " " + a.name
	}
	if a.namespace != "" {
		s += " in " + a.namespace
	}
	return s
}

const certificates = "certificates.k8s.io"

// csrs is a request on CertificateSigningRequests.
func csrs(verb string) access {
	return access{verb: verb, group: certificates, resource: "certificatesigningrequests"}
}

// pcrs is a request on PodCertificateRequests of a namespace ("": all).
func pcrs(verb, namespace string) access {
	return access{verb: verb, group: certificates, resource: "podcertificaterequests", namespace: namespace}
}

// signer is a request on a signer name: approve, sign or attest.
func signer(verb, name string) access {
	return access{verb: verb, group: certificates, resource: "signers", name: name}
}

// checkAccess asks the API server, with SubjectAccessReviews, whether the
// service account may make each request, and fails where the answer is not
// want.
func checkAccess(t *testing.T, env *testenv.Env, namespace, sa string, want bool, requests []access) {
	t.Helper()
	user := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, sa)
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	for _, a := range requests {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource,
				Namespace: a.namespace, Name: a.name,
			},
		}}
		got, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != want {
			verdict := "cannot"
			if got.Status.Allowed {
				verdict = "can"
			}
			t.Errorf("%s %s %s (%s)", user, verdict, a, got.Status.Reason)
		}
	}
}

// The example binding: service account my-app/my-app.
func TestAgentServiceAccountCanRequestCertificatesButNotIssueThem(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	const ns, sa = "my-app", "my-app"
	checkAccess(t, env, ns, sa, true, []access{
		csrs("create"), csrs("get"), csrs("watch"), csrs("delete"),
		{verb: "get", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"},
		{verb: "list", group: certificates, resource: "clustertrustbundles"},
		{verb: "watch", group: certificates, resource: "clustertrustbundles"},
		{verb: "get", resource: "pods", namespace: ns, name: "my-app-0"},
		{verb: "list", resource: "services", namespace: ns},
		{verb: "create", resource: "events", namespace: ns},
	})
	checkAccess(t, env, ns, sa, false, []access{
		// Pod certificate requests are the kubelet's and the controller's.
		pcrs("create", ns), pcrs("list", ns),
		{verb: "update", group: certificates, resource: "podcertificaterequests", subresource: "status", namespace: ns, name: "any"},
		// Issuing is for the controller and for people.
		{verb: "update", group: certificates, resource: "certificatesigningrequests", subresource: "approval", name: "any"},
		{verb: "update", group: certificates, resource: "certificatesigningrequests", subresource: "status", name: "any"},
		csrs("update"), csrs("patch"), csrs("list"),
		signer("approve", "csr-agent.io/pod"), signer("sign", "csr-agent.io/pod"),
		signer("approve", "csr-agent.io/*"), signer("attest", "csr-agent.io/pod"),
		signer("approve", "kubernetes.io/kube-apiserver-client"), signer("sign", "kubernetes.io/kube-apiserver-client"),
		// No secrets, and nothing in other namespaces.
		{verb: "get", resource: "secrets", namespace: ns, name: "any"},
		{verb: "list", resource: "secrets", namespace: ns},
		{verb: "get", resource: "secrets", namespace: "csr-agent-system", name: "csr-agent-ca"},
		{verb: "get", resource: "pods", namespace: "kube-system", name: "any"},
		{verb: "list", resource: "services", namespace: "kube-system"},
		{verb: "list", resource: "pods", namespace: ns},
		{verb: "create", resource: "events", namespace: "kube-system"},
		// Trust bundles are the controller's to publish.
		{verb: "create", group: certificates, resource: "clustertrustbundles"},
		{verb: "update", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"},
	})
}

func TestControllerCanIssueOnlyForItsSignerAndReadOnlyItsCA(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	const ns, sa = "csr-agent-system", "csr-agent-controller"
	checkAccess(t, env, ns, sa, true, []access{
		csrs("get"), csrs("list"), csrs("watch"),
		{verb: "update", group: certificates, resource: "certificatesigningrequests", subresource: "approval", name: "any"},
		{verb: "update", group: certificates, resource: "certificatesigningrequests", subresource: "status", name: "any"},
		signer("approve", "csr-agent.io/pod"), signer("sign", "csr-agent.io/pod"), signer("attest", "csr-agent.io/pod"),
		{verb: "create", group: certificates, resource: "clustertrustbundles"},
		{verb: "get", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"},
		{verb: "update", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"},
		{verb: "list", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"},  // the retirement marker
		{verb: "watch", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"}, // is watched by name
		{verb: "list", resource: "pods"}, {verb: "watch", resource: "pods"}, {verb: "get", resource: "pods", namespace: "my-app", name: "any"},
		{verb: "list", resource: "services"}, {verb: "watch", resource: "services"}, {verb: "list", resource: "services", namespace: "my-app"},
		{verb: "create", group: "events.k8s.io", resource: "events", namespace: "my-app"},
		{verb: "patch", group: "events.k8s.io", resource: "events", namespace: "my-app", name: "any"},
		// Pod certificates: watch the kubelets' requests, write their status,
		// read the service accounts requests name.
		pcrs("list", ""), pcrs("watch", ""),
		{verb: "update", group: certificates, resource: "podcertificaterequests", subresource: "status", namespace: "my-app", name: "any"},
		{verb: "get", resource: "serviceaccounts", namespace: "my-app", name: "any"},
		{verb: "list", resource: "serviceaccounts"}, {verb: "watch", resource: "serviceaccounts"},
		// Its CA: the informer lists and watches it by name.
		{verb: "get", resource: "secrets", namespace: ns, name: "csr-agent-ca"},
		{verb: "list", resource: "secrets", namespace: ns, name: "csr-agent-ca"},
		{verb: "watch", resource: "secrets", namespace: ns, name: "csr-agent-ca"},
		{verb: "create", resource: "secrets", namespace: ns}, // CREATE_CA
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "csr-agent-controller"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "csr-agent-controller"},
		{verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: ns},
		// Whether the extra-names annotation is guarded by admission.
		{verb: "get", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicies", name: "csr-agent-extra-names"},
		{verb: "get", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicybindings", name: "csr-agent-extra-names"},
	})
	checkAccess(t, env, ns, sa, false, []access{
		// Admission policies: read its own guard only, change none.
		{verb: "get", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicies", name: "other"},
		{verb: "list", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicies"},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicies", name: "csr-agent-extra-names"},
		{verb: "delete", group: "admissionregistration.k8s.io", resource: "validatingadmissionpolicybindings", name: "csr-agent-extra-names"},
		// Never a kubernetes.io signer, nor another signer of the domain.
		signer("approve", "kubernetes.io/kube-apiserver-client"), signer("sign", "kubernetes.io/kube-apiserver-client"),
		signer("approve", "kubernetes.io/kube-apiserver-client-kubelet"), signer("sign", "kubernetes.io/kube-apiserver-client-kubelet"),
		signer("approve", "kubernetes.io/kubelet-serving"), signer("sign", "kubernetes.io/kubelet-serving"),
		signer("approve", "kubernetes.io/legacy-unknown"), signer("attest", "kubernetes.io/kube-apiserver-client"),
		signer("approve", "csr-agent.io/other"), signer("approve", "csr-agent.io/*"),
		// Requests are made by pods; the controller never makes or removes one.
		csrs("create"), csrs("delete"), csrs("update"),
		// Nor a pod certificate request, which only kubelets make, nor its spec.
		pcrs("create", "my-app"), pcrs("delete", "my-app"), pcrs("update", "my-app"), pcrs("patch", "my-app"),
		{verb: "patch", group: certificates, resource: "podcertificaterequests", subresource: "status", namespace: "my-app", name: "any"},
		// Service accounts: read, never changed, no tokens.
		{verb: "update", resource: "serviceaccounts", namespace: "my-app", name: "any"},
		{verb: "create", resource: "serviceaccounts", subresource: "token", namespace: "my-app", name: "any"},
		// No other Secret, anywhere, and its CA is read-only.
		{verb: "get", resource: "secrets", namespace: ns, name: "other"},
		{verb: "list", resource: "secrets", namespace: ns},
		{verb: "watch", resource: "secrets", namespace: ns},
		{verb: "get", resource: "secrets", namespace: "kube-system", name: "any"},
		{verb: "list", resource: "secrets"},
		{verb: "update", resource: "secrets", namespace: ns, name: "csr-agent-ca"},
		{verb: "delete", resource: "secrets", namespace: ns, name: "csr-agent-ca"},
		{verb: "create", resource: "secrets", namespace: "my-app"},
		// Other trust bundles, other leases, writes to pods.
		{verb: "update", group: certificates, resource: "clustertrustbundles", name: "kubernetes.io:kube-apiserver-serving:x"},
		{verb: "delete", group: certificates, resource: "clustertrustbundles", name: "csr-agent.io:pod:ca"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: ns, name: "other"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system", name: "kube-controller-manager"},
		{verb: "update", resource: "pods", namespace: "my-app", name: "any"},
		{verb: "create", resource: "pods", subresource: "exec", namespace: "my-app", name: "any"},
	})
}

// bindInNamespace binds a shipped ClusterRole to a service account of the
// namespace, alone.
func bindInNamespace(t *testing.T, env *testenv.Env, namespace, sa, role string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: sa}},
	}
	if _, err := env.Client.RbacV1().RoleBindings(namespace).Create(t.Context(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Each optional namespace role grants one need: csr-agent-namespace what
// SERVICE_NAMES=auto reads, csr-agent-events the Events.
func TestAgentNamespaceRolesGrantOnlyTheirOwnNeed(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	const ns = "my-app"
	bindInNamespace(t, env, ns, "auto-only", "csr-agent-namespace")
	bindInNamespace(t, env, ns, "events-only", "csr-agent-events")
	auto := []access{
		{verb: "get", resource: "pods", namespace: ns, name: "my-app-0"},
		{verb: "list", resource: "services", namespace: ns},
	}
	events := []access{{verb: "create", resource: "events", namespace: ns}}
	never := []access{
		{verb: "list", resource: "pods", namespace: ns}, {verb: "watch", resource: "pods", namespace: ns},
		{verb: "get", resource: "services", namespace: ns, name: "web"}, {verb: "watch", resource: "services", namespace: ns},
		{verb: "update", resource: "pods", namespace: ns, name: "my-app-0"},
		{verb: "patch", resource: "events", namespace: ns, name: "any"},
		{verb: "create", group: "events.k8s.io", resource: "events", namespace: ns},
		{verb: "get", resource: "pods", namespace: "kube-system", name: "any"},
		csrs("create"), csrs("delete"),
	}
	// The authorizer learns of new bindings from a watch.
	for sa, a := range map[string]access{"auto-only": auto[0], "events-only": events[0]} {
		eventually(t, "binding of "+sa, func(ctx context.Context) error {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: "system:serviceaccount:" + ns + ":" + sa, Groups: []string{"system:serviceaccounts", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Resource: a.resource, Namespace: a.namespace, Name: a.name},
			}}
			got, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err == nil && !got.Status.Allowed {
				err = fmt.Errorf("%s not yet allowed to %s", sa, a)
			}
			return err
		})
	}
	checkAccess(t, env, ns, "auto-only", true, auto)
	checkAccess(t, env, ns, "auto-only", false, append(slices.Clone(never), events...))
	checkAccess(t, env, ns, "events-only", true, events)
	checkAccess(t, env, ns, "events-only", false, append(slices.Clone(never), auto...))
}
