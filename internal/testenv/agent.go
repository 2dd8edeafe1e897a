package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csr-agent/csr-agent/manifests"
)

// The agent's ClusterRoles, as manifests/agent-rbac ships them.
const (
	// AgentRole: request, watch and delete its CSRs; read trust bundles.
	AgentRole = "csr-agent"
	// AgentNamespaceRole: SERVICE_NAMES=auto (get its Pod, list Services).
	AgentNamespaceRole = "csr-agent-namespace"
	// AgentEventsRole: Events on its Pod.
	AgentEventsRole = "csr-agent-events"
)

// AgentAccess says which of the optional agent roles a pod gets besides
// AgentRole.
type AgentAccess struct {
	ServiceNamesAuto bool // AgentNamespaceRole
	Events           bool // AgentEventsRole
}

// GrantAgent gives the pod's service account the agent's rights exactly as
// shipped: it applies manifests/agent-rbac and the admission policies of
// manifests/admission to the control plane (once, waiting until the API
// server enforces the policies) and binds the roles as
// manifests/agent-rbac/example-binding does. Tests that pass with it prove
// the shipped RBAC is enough.
func (e *Env) GrantAgent(t testing.TB, pod *Pod, access AgentAccess) {
	t.Helper()
	e.agentOnce.Do(func() { e.agentErr = e.installAgent(context.Background()) })
	if e.agentErr != nil {
		t.Fatalf("installing the agent's RBAC and admission policies: %v", e.agentErr)
	}
	e.BindClusterRole(t, pod, AgentRole)
	if access.ServiceNamesAuto {
		e.BindClusterRoleInNamespace(t, pod, AgentNamespaceRole)
	}
	if access.Events {
		e.BindClusterRoleInNamespace(t, pod, AgentEventsRole)
	}
}

func (e *Env) installAgent(ctx context.Context) error {
	if _, err := manifests.Apply(ctx, e.Config, "testenv", "agent-rbac/clusterroles.yaml",
		"admission/pod-requests.yaml", "admission/extra-names.yaml"); err != nil {
		return err
	}
	return e.waitPodRequestsPolicy(ctx)
}

// waitPodRequestsPolicy waits until the API server enforces
// csr-agent-pod-requests: policies take effect a moment after they are
// created. It probes as a pod bound to the agent's role, trying to take a
// name reserved for another pod.
func (e *Env) waitPodRequestsPolicy(ctx context.Context) error {
	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return err
	}
	probe, err := e.cluster.NewPod(ctx, PodOptions{Namespace: ns, Name: "admission-probe"})
	if err != nil {
		return err
	}
	if err := e.bind(ctx, probe, AgentRole, ""); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(probe.Config)
	if err != nil {
		return err
	}
	request, err := ProbeRequest()
	if err != nil {
		return err
	}
	csrs := client.CertificatesV1().CertificateSigningRequests()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		csr := &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "csr-agent-" + string(uuid.NewUUID())},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request: request, SignerName: "example.com/admission-probe",
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			},
		}
		_, err := csrs.Create(ctx, csr, metav1.CreateOptions{})
		switch {
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "csr-agent-pod-requests"):
			return true, nil
		case err == nil:
			// Not enforced yet.
			return false, e.Client.CertificatesV1().CertificateSigningRequests().Delete(ctx, csr.Name, metav1.DeleteOptions{})
		default:
			return false, nil // forbidden by RBAC until the binding is seen
		}
	})
	if err != nil {
		return fmt.Errorf("waiting for the API server to enforce csr-agent-pod-requests: %w", err)
	}
	return nil
}

// ProbeRequest is a PEM certificate request with a throwaway key, for tests
// that only need the API server to accept a CSR's spec.request.
func ProbeRequest() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "probe"}}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// BindClusterRole binds a ClusterRole to the pod's service account
// cluster-wide (a ClusterRoleBinding).
func (e *Env) BindClusterRole(t testing.TB, pod *Pod, role string) {
	t.Helper()
	if err := e.bind(context.Background(), pod, role, ""); err != nil {
		t.Fatal(err)
	}
}

// BindClusterRoleInNamespace binds a ClusterRole to the pod's service
// account in its own namespace only (a RoleBinding).
func (e *Env) BindClusterRoleInNamespace(t testing.TB, pod *Pod, role string) {
	t.Helper()
	if err := e.bind(context.Background(), pod, role, pod.Namespace); err != nil {
		t.Fatal(err)
	}
}

func (e *Env) bind(ctx context.Context, pod *Pod, role, namespace string) error {
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}
	meta := metav1.ObjectMeta{GenerateName: "testenv-", Namespace: namespace}
	var err error
	if namespace == "" {
		_, err = e.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: []rbacv1.Subject{subject(pod)}}, metav1.CreateOptions{})
	} else {
		_, err = e.Client.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: []rbacv1.Subject{subject(pod)}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("binding ClusterRole %s to %s/%s: %w", role, pod.Namespace, pod.ServiceAccount, err)
	}
	return nil
}
