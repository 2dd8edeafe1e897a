package controller_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// TestRotatingTheCASecretSwitchesSigningAndKeepsBothInTheBundle: after the
// Secret is updated, new certificates chain to the new CA only, the bundle
// holds both CAs (so certificates issued before still verify), and no
// restart is needed.
func TestRotatingTheCASecretSwitchesSigningAndKeepsBothInTheBundle(t *testing.T) {
	s := newSetup(t)
	oldCA := s.putCA(t, "old CA", 365*24*time.Hour)
	in := s.start(t, startOptions{})
	pod := s.env.NewPod(t, testenv.PodOptions{Labels: web})
	createService(t, s.env, pod.Namespace, service{name: "web"}, web)
	client := must(kubernetes.NewForConfig(pod.Config))
	name := "web." + pod.Namespace + ".svc"

	before := waitFinished(t, s.env.Client, mustCreateCSR(t, client, s.signer, dns(name)).Name)
	beforeChain := parseChain(t, before.Status.Certificate)
	if err := beforeChain[0].CheckSignatureFrom(oldCA.Certificate()); err != nil {
		t.Fatalf("first certificate not signed by the old CA: %v", err)
	}

	// A different lifetime tells the two apart in the CA expiry metric.
	newCA := s.putCA(t, "new CA", 2*365*24*time.Hour)
	waitMetric(t, in.c, "csr_agent_controller_ca_not_after_timestamp_seconds", float64(newCA.Certificate().NotAfter.Unix()))
	after := waitFinished(t, s.env.Client, mustCreateCSR(t, client, s.signer, dns(name)).Name)
	afterChain := parseChain(t, after.Status.Certificate)
	if err := afterChain[0].CheckSignatureFrom(newCA.Certificate()); err != nil {
		t.Errorf("certificate issued after the rotation not signed by the new CA: %v (issuer %s)", err, afterChain[0].Issuer)
	}

	roots, anchors := trustBundle(t, s.env.Client, s.signer)
	if len(anchors) != 2 || !anchors[0].Equal(newCA.Certificate()) || !anchors[1].Equal(oldCA.Certificate()) {
		t.Errorf("bundle holds %d certificates, want the new CA then the old one", len(anchors))
	}
	for label, chain := range map[string][]*x509.Certificate{"before": beforeChain, "after": afterChain} {
		if err := serveTLS(t, chain, keyP256(), name, roots); err != nil {
			t.Errorf("certificate issued %s the rotation does not verify against the bundle: %v", label, err)
		}
	}
}

// TestCADirectoryIsReloadedWhenItsFilesChange: the CA can come from files
// (a mounted Secret), and replacing them switches signing like a Secret
// update does.
func TestCADirectoryIsReloadedWhenItsFilesChange(t *testing.T) {
	s := newSetup(t)
	dir := t.TempDir()
	oldCA := writeCA(t, dir, "old CA", 365*24*time.Hour)
	in := s.start(t, startOptions{caDir: dir})
	pod := s.env.NewPod(t, testenv.PodOptions{IPs: []string{"10.246.0.9"}})
	client := must(kubernetes.NewForConfig(pod.Config))
	req := request{tmpl: &x509.CertificateRequest{IPAddresses: []net.IP{net.ParseIP("10.246.0.9")}}}

	before := parseChain(t, waitFinished(t, s.env.Client, mustCreateCSR(t, client, s.signer, req).Name).Status.Certificate)
	if err := before[0].CheckSignatureFrom(oldCA.Certificate()); err != nil {
		t.Fatalf("not signed by the CA of the directory: %v", err)
	}
	newCA := writeCA(t, dir, "new CA", 2*365*24*time.Hour)
	waitMetric(t, in.c, "csr_agent_controller_ca_not_after_timestamp_seconds", float64(newCA.Certificate().NotAfter.Unix()))
	after := parseChain(t, waitFinished(t, s.env.Client, mustCreateCSR(t, client, s.signer, req).Name).Status.Certificate)
	if err := after[0].CheckSignatureFrom(newCA.Certificate()); err != nil {
		t.Errorf("not signed by the new CA after the files changed: %v", err)
	}
	if _, anchors := trustBundle(t, s.env.Client, s.signer); len(anchors) != 2 {
		t.Errorf("bundle holds %d CAs, want both", len(anchors))
	}
}

// writeCA writes a new self-signed CA into dir as a mounted Secret holds
// it, each file replaced atomically.
func writeCA(t *testing.T, dir, commonName string, validity time.Duration) *sign.CA {
	t.Helper()
	ca := must(sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: commonName, Validity: validity}))
	for name, data := range ca.PEMs().SecretData() {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

// putCA stores a new self-signed CA in the CA Secret, creating or
// replacing it, as an operator rotating the CA would.
func (s *setup) putCA(t *testing.T, commonName string, validity time.Duration) *sign.CA {
	t.Helper()
	ca := must(sign.NewSelfSignedCA(sign.SelfSignedOptions{CommonName: commonName, Validity: validity}))
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.caSecret.Name, Namespace: s.caSecret.Namespace},
		Type:       corev1.SecretTypeTLS,
		Data:       ca.PEMs().SecretData(),
	}
	secrets := s.env.Client.CoreV1().Secrets(s.caSecret.Namespace)
	_, err := secrets.Update(t.Context(), secret, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = secrets.Create(t.Context(), secret, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("storing CA: %v", err)
	}
	return ca
}

// probe reports whether path of the controller's health handler answers 200.
func probe(c *controller.Controller, path string) bool {
	rec := httptest.NewRecorder()
	c.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code == http.StatusOK
}

// metric scrapes the controller's metrics and returns the value of the
// sample whose name and labels are exactly series, and whether it exists.
func metric(c *controller.Controller, series string) (float64, bool) {
	rec := httptest.NewRecorder()
	c.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			return v, err == nil
		}
	}
	return 0, false
}

func waitMetric(t *testing.T, c *controller.Controller, series string, want float64) {
	t.Helper()
	var got float64
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got, _ = metric(c, series)
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("%s = %v, want %v", series, got, want)
	}
}
