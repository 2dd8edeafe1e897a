package testenv

import (
	"context"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Grant gives the pod's service account rules cluster-wide (a ClusterRole
// and a ClusterRoleBinding), as an operator would with RBAC.
func (e *Env) Grant(t testing.TB, pod *Pod, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	role, err := e.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-"}, Rules: rules,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating cluster role: %v", err)
	}
	_, err = e.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject(pod)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("binding cluster role: %v", err)
	}
}

// GrantInNamespace gives the pod's service account rules in its own
// namespace only (a Role and a RoleBinding).
func (e *Env) GrantInNamespace(t testing.TB, pod *Pod, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	role, err := e.Client.RbacV1().Roles(pod.Namespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-", Namespace: pod.Namespace}, Rules: rules,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating role: %v", err)
	}
	_, err = e.Client.RbacV1().RoleBindings(pod.Namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-", Namespace: pod.Namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject(pod)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("binding role: %v", err)
	}
}

func subject(p *Pod) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: p.Namespace, Name: p.ServiceAccount}
}
