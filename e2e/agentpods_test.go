//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// agentDeployment creates, in the examples namespace, the smallest pod the
// agent serves: `agent init` writes the pair for its pod IPs, then tls-app
// serves it (it exits if the pair is missing), with a service account bound
// to the shipped agent ClusterRoles. The Deployment and its RBAC go when
// the test ends.
func agentDeployment(t *testing.T, name string, replicas int32) {
	t.Helper()
	ctx := t.Context()
	apply(t, overlay(t, "examples/common", "")) // the namespace, Pod Security restricted
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: examplesNamespace}}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-agent:e2e:" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "csr-agent"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: examplesNamespace}},
	}
	psc, sc := restricted()
	env := []corev1.EnvVar{{Name: "CERT_DIR", Value: "/certs"}}
	for name, field := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid", "POD_IPS": "status.podIPs"} {
		env = append(env, corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: field}}})
	}
	labels := map[string]string{"app": name}
	certs := corev1.VolumeMount{Name: "certs", MountPath: "/certs"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: examplesNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            name,
					SecurityContext:               psc,
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					InitContainers: []corev1.Container{{
						Name: "csr-agent", Image: productImage, Command: []string{"/agent", "init"},
						Env: env, SecurityContext: sc, VolumeMounts: []corev1.VolumeMount{certs},
					}},
					Containers: []corev1.Container{{
						Name: "app", Image: appImage, Args: []string{"-dir=/certs"},
						SecurityContext: sc, VolumeMounts: []corev1.VolumeMount{certs},
						ReadinessProbe: &corev1.Probe{PeriodSeconds: 2, ProbeHandler: corev1.ProbeHandler{
							TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8443)}}},
					}},
					Volumes: []corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
				},
			},
		},
	}
	if _, err := client.CoreV1().ServiceAccounts(examplesNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Not t.Context(): it is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		bg := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}
		for _, err := range []error{
			client.AppsV1().Deployments(examplesNamespace).Delete(ctx, name, bg),
			client.RbacV1().ClusterRoleBindings().Delete(ctx, crb.Name, bg),
			client.CoreV1().ServiceAccounts(examplesNamespace).Delete(ctx, name, bg),
		} {
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cleaning up %s: %v", name, err)
			}
		}
	})
	if _, err := client.AppsV1().Deployments(examplesNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// csrState is what a CSR went through, as seen by csrRecorder.
type csrState struct {
	podUID                   string
	approved, issued, denied bool
}

// csrRecorder follows every CSR of one service account from now on, even
// those the agents delete once stored.
type csrRecorder struct {
	mu   sync.Mutex
	csrs map[string]*csrState
}

func recordCSRs(t *testing.T, serviceAccount string) *csrRecorder {
	t.Helper()
	user := "system:serviceaccount:" + examplesNamespace + ":" + serviceAccount
	list, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(t.Context(), metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	r := &csrRecorder{csrs: map[string]*csrState{}}
	go func() {
		for ev := range w.ResultChan() {
			csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok || csr.Spec.Username != user || ev.Type == watch.Deleted {
				continue
			}
			r.mu.Lock()
			s := r.csrs[csr.Name]
			if s == nil {
				s = &csrState{}
				if uid := csr.Spec.Extra[approve.ExtraPodUID]; len(uid) == 1 {
					s.podUID = uid[0]
				}
				r.csrs[csr.Name] = s
			}
			for _, c := range csr.Status.Conditions {
				s.approved = s.approved || c.Type == certificatesv1.CertificateApproved
				s.denied = s.denied || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed
			}
			s.issued = s.issued || len(csr.Status.Certificate) > 0
			r.mu.Unlock()
		}
	}()
	return r
}

// issued counts the CSRs issued so far.
func (r *csrRecorder) issued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.csrs {
		if s.issued {
			n++
		}
	}
	return n
}

// check reports, for each pod UID, a problem unless exactly one CSR was
// made for it and issued; and any CSR denied or failed.
func (r *csrRecorder) check(podUIDs []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var problems []string
	per := map[string][]*csrState{}
	for name, s := range r.csrs {
		per[s.podUID] = append(per[s.podUID], s)
		if s.denied {
			problems = append(problems, fmt.Sprintf("CSR %s was denied or failed", name))
		}
	}
	for _, uid := range podUIDs {
		if got := per[uid]; len(got) != 1 || !got[0].issued {
			problems = append(problems, fmt.Sprintf("pod %s: %d CSRs, want one issued", uid, len(got)))
		}
	}
	return problems
}

// waitAgentPods waits until replicas pods of the Deployment are ready,
// each app started once, after an agent that ended well at its first run,
// and returns their UIDs.
func waitAgentPods(t *testing.T, name string, replicas int, timeout time.Duration) []string {
	t.Helper()
	waitDeployment(t, examplesNamespace, name, timeout)
	list := pods(t, examplesNamespace, "app="+name)
	if len(list) != replicas {
		t.Fatalf("%d %s pods running, want %d", len(list), name, replicas)
	}
	var uids []string
	for _, p := range list {
		agent, app := container(p, "csr-agent"), container(p, "app")
		if agent.RestartCount != 0 || agent.State.Terminated == nil || agent.State.Terminated.ExitCode != 0 {
			t.Errorf("%s: agent restarted %d times, state %+v", p.Name, agent.RestartCount, agent.State)
		}
		if app.RestartCount != 0 {
			t.Errorf("%s: app restarted %d times: it started before its pair existed", p.Name, app.RestartCount)
		}
		uids = append(uids, string(p.UID))
	}
	return uids
}
