//go:build e2e

package e2e_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const examplesNamespace = "csr-agent-examples"

var controllerOnce sync.Once

// requireController installs the controller once for the tests that need
// it (TestControllerDeployment... checks it in detail).
func requireController(t *testing.T) {
	t.Helper()
	controllerOnce.Do(func() { installController(t) })
}

// shortRenewal makes the example's agent renew 20s after each issuance
// (the CSR API's shortest lifetime is 10m), so a renewal happens during
// the test; everything else is the example as shipped.
const shortRenewal = `patches:
- target: {kind: Deployment, name: web}
  patch: |-
    - {op: add, path: /spec/template/spec/initContainers/0/env/-, value: {name: CERT_DURATION, value: 10m}}
    - {op: add, path: /spec/template/spec/initContainers/0/env/-, value: {name: RENEW_BEFORE, value: 9m40s}}
`

func container(p corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

func TestNativeSidecarServesTLSAClientPodVerifiesAndRenewsWithoutAFailedHandshake(t *testing.T) {
	requireController(t)
	apply(t, overlay(t, "examples/native-sidecar", shortRenewal))
	waitDeployment(t, examplesNamespace, "web", 3*time.Minute)
	web := pods(t, examplesNamespace, "app=web")
	if len(web) != 2 {
		t.Fatalf("%d web pods running, want 2", len(web))
	}
	for _, p := range web {
		// tls-app, like nginx, exits if the pair is missing at start: no
		// restart means it started after the certificate existed.
		if app := container(p, "nginx"); app.RestartCount != 0 || app.State.Running == nil {
			t.Errorf("%s: app container restarted %d times, state %+v", p.Name, app.RestartCount, app.State)
		}
	}
	target := web[0]
	serverName := "web." + examplesNamespace + ".svc"
	out, ok := clientPod(t, examplesNamespace, "verify-web", time.Minute,
		"-addr="+target.Status.PodIP+":8443", "-server-name="+serverName, "-count=3")
	if !ok || !strings.Contains(out, "hello from "+target.Name+" over TLS") {
		t.Fatalf("client pod failed to verify %s for %s:\n%s", target.Name, serverName, out)
	}
	t.Logf("before the renewal, a client pod verified %s for %s: %s", target.Name, serverName, lastLine(out))

	// Renewal: a client handshakes every 100ms for about a minute while
	// the agent renews (20s after issuance) and signals the app.
	startClientPod(t, examplesNamespace, "handshake-web", "-addr="+target.Status.PodIP+":8443", "-server-name="+serverName,
		"-count=500", "-interval=100ms")
	eventually(t, 90*time.Second, "a reload signal in "+target.Name+"'s app", func(ctx context.Context) (bool, error) {
		return strings.Contains(logs(t, examplesNamespace, target.Name, "nginx"), `"msg":"reload signal"`), nil
	})
	appLog := logs(t, examplesNamespace, target.Name, "nginx")
	if strings.Contains(appLog, `"error"`) {
		t.Errorf("app failed to reload:\n%s", appLog)
	}
	out, ok = waitClientPod(t, examplesNamespace, "handshake-web", 3*time.Minute)
	if !ok || !strings.Contains(out, `"failed":"0"`) {
		t.Errorf("handshakes failed during renewal:\n%s", out)
	}
	t.Logf("app log:\n%s\nclient handshaking across the renewal: %s", appLog, lastLine(out))
}

// lastLine is a log's last line: tls-client's summary.
func lastLine(out string) string {
	out = strings.TrimSpace(out)
	return out[strings.LastIndex(out, "\n")+1:]
}
