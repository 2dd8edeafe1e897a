//go:build e2e

package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var webOnce sync.Once

// requireWeb runs the native-sidecar example (the server other examples'
// clients talk to) once.
func requireWeb(t *testing.T) {
	t.Helper()
	requireController(t)
	webOnce.Do(func() {
		apply(t, overlay(t, "examples/native-sidecar", shortRenewal))
		waitDeployment(t, examplesNamespace, "web", 3*time.Minute)
	})
}

// verifyPod runs a client pod that verifies pod's certificate for
// serverName against the controller's CA.
func verifyPod(t *testing.T, pod corev1.Pod, serverName string) {
	t.Helper()
	out, ok := clientPod(t, examplesNamespace, "verify-"+pod.Name, time.Minute, "-addr="+pod.Status.PodIP+":8443", "-server-name="+serverName, "-count=2")
	if !ok || !strings.Contains(out, "hello from "+pod.Name+" over TLS") {
		t.Fatalf("client pod could not verify %s at %s:\n%s", serverName, pod.Status.PodIP, out)
	}
}

func TestTwoContainersExampleServesTLSForItsServiceName(t *testing.T) {
	requireController(t)
	apply(t, overlay(t, "examples/two-containers", ""))
	waitDeployment(t, examplesNamespace, "web-compat", 3*time.Minute)
	for _, p := range pods(t, examplesNamespace, "app=web-compat") {
		if app := container(p, "nginx"); app.RestartCount != 0 {
			t.Errorf("%s: app restarted %d times", p.Name, app.RestartCount)
		}
		verifyPod(t, p, "web-compat."+examplesNamespace+".svc")
	}
}

var storeOnce sync.Once

// requireStore runs the StatefulSet example once.
func requireStore(t *testing.T) {
	t.Helper()
	requireController(t)
	storeOnce.Do(func() {
		apply(t, overlay(t, "examples/statefulset", ""))
		eventually(t, 3*time.Minute, "StatefulSet store ready", func(ctx context.Context) (bool, error) {
			s, err := client.AppsV1().StatefulSets(examplesNamespace).Get(ctx, "store", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if s.Spec.Replicas != nil && s.Status.ReadyReplicas == *s.Spec.Replicas {
				return true, nil
			}
			return false, fmt.Errorf("%d ready", s.Status.ReadyReplicas)
		})
	})
}

func TestStatefulSetPodServesTLSForItsOwnHeadlessName(t *testing.T) {
	requireStore(t)
	for _, p := range pods(t, examplesNamespace, "app=store") {
		verifyPod(t, p, p.Name+".store."+examplesNamespace+".svc.cluster.local")
	}
}

// mtlsWeb is the native-sidecar example again as web-mtls (one pod), its
// app refusing clients without a certificate of ca.crt; the kubelet's
// probe, which has none, only connects.
const mtlsWeb = `nameSuffix: -mtls
patches:
- target: {kind: Deployment, name: web}
  patch: |-
    - {op: replace, path: /spec/replicas, value: 1}
    - {op: replace, path: /spec/selector/matchLabels/app, value: web-mtls}
    - {op: replace, path: /spec/template/metadata/labels/app, value: web-mtls}
    - {op: test, path: /spec/template/spec/initContainers/0/env/4/name, value: SERVICE_NAMES}
    - {op: replace, path: /spec/template/spec/initContainers/0/env/4/value, value: web-mtls}
    - {op: add, path: /spec/template/spec/containers/0/args, value: [-require-client-cert]}
    - {op: replace, path: /spec/template/spec/containers/0/readinessProbe, value: {tcpSocket: {port: https}}}
- target: {kind: Service, name: web}
  patch: |-
    - {op: replace, path: /spec/selector/app, value: web-mtls}
`

// The Job's report container is curl in the example; here tls-client does
// what that curl does (presents the pod's client certificate to a server,
// verifying the server for its Service name) against the pod IP of a web
// app that requires client certificates, as no cluster DNS runs.
func TestJobCompletesWithAClientCertificateAServerRequiringOneAcceptsAndLeavesNoCSR(t *testing.T) {
	requireController(t)
	apply(t, overlay(t, "examples/native-sidecar", mtlsWeb))
	waitDeployment(t, examplesNamespace, "web-mtls", 3*time.Minute)
	server := findPod(t, "app=web-mtls")
	serverName := "web-mtls." + examplesNamespace + ".svc"
	// The server's own check: a client without a certificate is refused.
	out, ok := clientPod(t, examplesNamespace, "no-client-certificate-mtls", time.Minute,
		"-addr="+server.Status.PodIP+":8443", "-server-name="+serverName)
	if ok || !strings.Contains(out, "certificate required") {
		t.Fatalf("web-mtls served a client without a certificate:\n%s", out)
	}
	patch := fmt.Sprintf(`patches:
- target: {kind: Job, name: nightly-report}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/image, value: %s}
    - {op: replace, path: /spec/template/spec/containers/0/command, value: [/tls-client, -addr=%s:8443, -server-name=%s, -ca=/var/run/csr-agent/ca.crt, -cert-dir=/var/run/csr-agent, -count=1]}
`, clientImage, server.Status.PodIP, serverName)
	apply(t, overlay(t, "examples/job", patch))
	eventually(t, 3*time.Minute, "Job nightly-report to complete", func(ctx context.Context) (bool, error) {
		j, err := client.BatchV1().Jobs(examplesNamespace).Get(ctx, "nightly-report", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if j.Status.Failed > 0 {
			return false, fmt.Errorf("%d failed pods", j.Status.Failed)
		}
		return j.Status.Succeeded == 1, nil
	})
	list, err := client.CoreV1().Pods(examplesNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=nightly-report"})
	if err != nil || len(list.Items) == 0 {
		t.Fatalf("job pods: %v", err)
	}
	out = logs(t, examplesNamespace, list.Items[0].Name, "report")
	if !strings.Contains(out, "client certificate: SUCCESS") {
		t.Errorf("web-mtls did not verify the Job's client certificate:\n%s", out)
	}
	csrs, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range csrs.Items {
		if c.Spec.Username == "system:serviceaccount:"+examplesNamespace+":nightly-report" {
			t.Errorf("CSR %s of the Job is left behind", c.Name)
		}
	}
}

// Runs last (it takes a web pod away): the kubelet sends SIGTERM to the
// app, then to the native sidecar; the Pod object goes once every
// container has ended, which takes the whole grace period if one ignores
// the signal.
func TestDeletedPodsContainersEndWithinTheGracePeriod(t *testing.T) {
	requireWeb(t)
	list := pods(t, examplesNamespace, "app=web")
	if len(list) == 0 {
		t.Fatal("no web pod")
	}
	pod := list[0]
	grace := time.Duration(ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
	started := time.Now()
	if err := client.CoreV1().Pods(examplesNamespace).Delete(t.Context(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, grace+time.Minute, "pod "+pod.Name+" to be gone", func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Pods(examplesNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if took := time.Since(started); took >= grace {
		t.Errorf("pod took %s to end, its grace period is %s: a container ignored SIGTERM", took.Round(time.Second), grace)
	} else {
		t.Logf("pod ended %s after deletion (grace period %s)", took.Round(100*time.Millisecond), grace)
	}
}
