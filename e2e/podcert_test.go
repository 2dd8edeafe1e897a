//go:build e2e

package e2e_test

import (
	"strings"
	"testing"
	"time"
)

// The pod-certificate example has no agent: the kubelet makes the key and a
// PodCertificateRequest, the controller issues it under the same policy as
// CSRs, and the kubelet writes the credential bundle (key and chain in one
// file) and the CA into the projected volume before the app starts. Its
// nginx is tls-app reading that bundle at every handshake, as the
// example's nginx configuration does.
func TestPodCertificateExampleStartsWithItsCredentialBundleAndServesTLSForItsServiceName(t *testing.T) {
	requireController(t)
	const patch = `patches:
- target: {kind: Deployment, name: projected}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/args, value: [-bundle=/var/run/pod-certificate/credentialbundle.pem, -dir=/var/run/pod-certificate]}
`
	apply(t, overlay(t, "examples/pod-certificate", patch))
	waitDeployment(t, examplesNamespace, "projected", 3*time.Minute)
	list := pods(t, examplesNamespace, "app=projected")
	if len(list) != 2 {
		t.Fatalf("%d projected pods running, want 2", len(list))
	}
	serverName := "projected." + examplesNamespace + ".svc"
	for _, p := range list {
		// tls-app exits when the bundle is missing at start.
		if app := container(p, "nginx"); app.RestartCount != 0 {
			t.Errorf("%s: app restarted %d times: it started before its credential bundle existed", p.Name, app.RestartCount)
		}
		out, ok := clientPod(t, examplesNamespace, "verify-"+p.Name, time.Minute,
			"-addr="+p.Status.PodIP+":8443", "-server-name="+serverName, "-count=2")
		if !ok || !strings.Contains(out, "hello from "+p.Name+" over TLS") {
			t.Fatalf("client pod could not verify %s for %s:\n%s", p.Name, serverName, out)
		}
	}
}
