//go:build e2e

package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// overlay builds manifests/<dir> through its kustomization with the images
// overridden to the suite's local tags, plus extra kustomization lines
// (patches), as `kubectl kustomize` does.
func overlay(t *testing.T, dir string, extra string) []byte {
	t.Helper()
	tmp := t.TempDir()
	abs, err := filepath.Abs(filepath.Join("..", "manifests", dir))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(tmp, abs)
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(productImage, ":")
	appName, appTag, _ := strings.Cut(appImage, ":")
	k := fmt.Sprintf(`resources: [%s]
images:
- {name: ghcr.io/csr-agent/csr-agent, newName: %s, newTag: %q}
- {name: nginxinc/nginx-unprivileged, newName: %s, newTag: %q}
%s`, rel, name, tag, appName, appTag, extra)
	if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubectl(t, nil, "kustomize", tmp)
}

// apply applies kustomized YAML with server-side apply.
func apply(t *testing.T, yaml []byte) {
	t.Helper()
	kubectl(t, yaml, "apply", "--server-side", "--field-manager=e2e", "-f", "-")
}

func kubectl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+node.Cluster.KubeconfigFile)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// eventually polls cond until it holds, failing the test after timeout
// with what it waited for and the last error or state.
func eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			last = err
		}
		if err != nil {
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting %s for %s: %v (last: %v)", timeout, what, err, last)
	}
}

// waitDeployment waits until every replica of the Deployment is updated
// and ready.
func waitDeployment(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "Deployment "+ns+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		s := d.Status
		if s.ObservedGeneration == d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.Replicas == want {
			return true, nil
		}
		return false, fmt.Errorf("%d/%d ready, %d updated, %d total", s.ReadyReplicas, want, s.UpdatedReplicas, s.Replicas)
	})
}

// pods lists the running pods matching selector.
func pods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

// logs returns a container's log, through the API server and the kubelet,
// as `kubectl logs` does.
func logs(t *testing.T, ns, pod, container string) string {
	t.Helper()
	data, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(t.Context())
	if err != nil {
		t.Fatalf("logs of %s/%s/%s: %v", ns, pod, container, err)
	}
	return string(data)
}

// trustBundle is the CA the controller publishes for its signer.
func trustBundle(t *testing.T) string {
	t.Helper()
	var bundle string
	eventually(t, time.Minute, "the controller's ClusterTrustBundle", func(ctx context.Context) (bool, error) {
		ctb, err := client.CertificatesV1().ClusterTrustBundles().Get(ctx, trustBundleName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		bundle = ctb.Spec.TrustBundle
		return bundle != "", nil
	})
	return bundle
}

// restricted is a security context the restricted Pod Security level
// admits.
func restricted() (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	return &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To[int64](65532),
			RunAsGroup:     ptr.To[int64](65532),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}, &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
}

// clientPod runs tls-client in ns with args, the controller's CA mounted
// at /ca/ca.crt, and returns once it has ended: its log, and whether it
// succeeded.
func clientPod(t *testing.T, ns, name string, timeout time.Duration, args ...string) (string, bool) {
	t.Helper()
	startClientPod(t, ns, name, args...)
	return waitClientPod(t, ns, name, timeout)
}

func startClientPod(t *testing.T, ns, name string, args ...string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "e2e-ca", Namespace: ns}, Data: map[string]string{"ca.crt": trustBundle(t)}}
	if _, err := client.CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	startClientPodTrusting(t, ns, name, cm.Name, args...)
}

// startClientPodTrusting starts tls-client with the ca.crt of ConfigMap
// caConfigMap at /ca/ca.crt.
func startClientPodTrusting(t *testing.T, ns, name, caConfigMap string, args ...string) {
	t.Helper()
	ctx := t.Context()
	psc, sc := restricted()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext:              psc,
			Containers: []corev1.Container{{
				Name: "client", Image: clientImage, Args: append([]string{"-ca=/ca/ca.crt"}, args...),
				SecurityContext: sc,
				VolumeMounts:    []corev1.VolumeMount{{Name: "ca", MountPath: "/ca", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "ca", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: caConfigMap}}}}},
		},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitClientPod(t *testing.T, ns, name string, timeout time.Duration) (string, bool) {
	t.Helper()
	var phase corev1.PodPhase
	eventually(t, timeout, "client pod "+name+" to end", func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = p.Status.Phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return true, nil
		}
		return false, fmt.Errorf("phase %s", phase)
	})
	out := logs(t, ns, name, "client")
	// The name is free again for the next check of the same pod.
	if err := client.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	return out, phase == corev1.PodSucceeded
}
