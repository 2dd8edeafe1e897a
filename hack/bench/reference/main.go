// Command reference is the benchmarks' yardstick for the agent: a requester
// built on the kubelet's own code path, client-go's util/certificate/csr
// (RequestCertificate, WaitForCertificate) over the full
// kubernetes.Clientset. It asks for the same certificate as `agent init`
// with its defaults (ECDSA P-256, serving, the pod IPs and the pod-IP DNS
// name, CN the first DNS name), and writes tls.key, tls.crt and ca.crt (from
// the signer's ClusterTrustBundles) into CERT_DIR, each by rename.
//
// It is built like the agent (CGO_ENABLED=0 -trimpath -ldflags '-s -w') by
// the bench driver (hack/bench). It reads the agent's variables POD_NAME,
// POD_NAMESPACE, POD_IPS, KUBECONFIG, CERT_DIR, SIGNER_NAME and
// CERT_DURATION, and MODE: "init" exits once the files are written;
// "sidecar" then idles until SIGTERM (what the benchmark's RSS is taken of).
// It does none of the agent's other work (renewal, self-healing, events,
// metrics): the comparison flatters it.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/certificate/csr"

	"github.com/csr-agent/csr-agent/internal/pki"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reference:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	get := os.Getenv
	ns, pod, dir := get("POD_NAMESPACE"), get("POD_NAME"), get("CERT_DIR")
	if ns == "" || pod == "" || dir == "" {
		return errors.New("POD_NAMESPACE, POD_NAME and CERT_DIR must be set")
	}
	signer := cmp(get("SIGNER_NAME"), "csr-agent.io/pod")
	duration, err := time.ParseDuration(cmp(get("CERT_DURATION"), "24h"))
	if err != nil {
		return fmt.Errorf("CERT_DURATION: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", get("KUBECONFIG"))
	if err != nil {
		return err
	}
	cfg.UserAgent = "csr-reference"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	tmpl := &x509.CertificateRequest{}
	for _, s := range strings.Split(get("POD_IPS"), ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			continue
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		if v4 := ip.To4(); v4 != nil {
			tmpl.DNSNames = append(tmpl.DNSNames, strings.ReplaceAll(v4.String(), ".", "-")+"."+ns+".pod.cluster.local")
		}
	}
	if len(tmpl.DNSNames) > 0 {
		tmpl.Subject = pkix.Name{CommonName: tmpl.DNSNames[0]}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return err
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}

	root := ctx
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// ca.crt is read the way the agent reads it (internal/agent,
	// requestWithCA): from the API server's cache while the signer works,
	// and once more, consistently, only when that answer does not verify
	// the issued chain. The comparison measures the agent, not a wait the
	// reference need not have.
	cached := make(chan []byte, 1)
	go func() {
		ca, _ := trustBundles(ctx, client, signer, "0") // an error here is another read below
		cached <- ca
	}()
	name, uid, err := csr.RequestCertificateWithContext(ctx, client, csrPEM, "", signer, &duration, usages, key)
	if err != nil {
		return fmt.Errorf("requesting certificate: %w", err)
	}
	chain, err := csr.WaitForCertificate(ctx, client, name, uid)
	if err != nil {
		return fmt.Errorf("waiting for certificate %s: %w", name, err)
	}
	ca := <-cached
	if !pki.Verifies(ca, chain) {
		if ca, err = trustBundles(ctx, client, signer, ""); err != nil {
			return err
		}
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"ca.crt", ca, 0o644},
		{"tls.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
		{"tls.crt", chain, 0o644}, // last: a reader waiting for it finds the others
	}
	for _, f := range files {
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	if get("MODE") == "sidecar" {
		<-root.Done()
	}
	return nil
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// trustBundles is the concatenation of the signer's ClusterTrustBundles,
// read at resourceVersion ("0": from the API server's cache; "": a
// consistent read).
func trustBundles(ctx context.Context, client kubernetes.Interface, signer, resourceVersion string) ([]byte, error) {
	bundles, err := client.CertificatesV1().ClusterTrustBundles().List(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("spec.signerName", signer).String(),
		ResourceVersion: resourceVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("listing trust bundles: %w", err)
	}
	var ca []byte
	for _, b := range bundles.Items {
		ca = append(ca, b.Spec.TrustBundle...)
	}
	return ca, nil
}
