//go:build e2e

package e2e_test

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

const (
	controllerNamespace = "csr-agent-system"
	trustBundleName     = "csr-agent.io:pod:ca"
)

// installController applies manifests/ (the controller and the agent's
// ClusterRoles, as shipped) once and waits for the Deployment.
func installController(t *testing.T) {
	t.Helper()
	apply(t, overlay(t, ".", ""))
	waitDeployment(t, controllerNamespace, "csr-agent-controller", 2*time.Minute)
}

func TestControllerDeploymentBecomesReadyAndPublishesItsTrustBundle(t *testing.T) {
	installController(t)
	if n := len(pods(t, controllerNamespace, "app.kubernetes.io/name=csr-agent-controller")); n != 2 {
		t.Errorf("%d controller pods running, want 2", n)
	}
	block, _ := pem.Decode([]byte(trustBundle(t)))
	if block == nil {
		t.Fatal("trust bundle holds no PEM block")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !ca.IsCA {
		t.Fatalf("trust bundle is not a CA certificate: %v", err)
	}
}
