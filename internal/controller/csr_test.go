package controller_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Keys are made once per process: RSA generation is slow under -race.
var (
	keyP256 = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) })
	keyP384 = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) })
	keyP521 = onceKey(func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) })
	keyRSA  = onceKey(func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	keyWeak = onceKey(func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 1024) })
	keyEd   = onceKey(func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	})
)

func onceKey(generate func() (crypto.Signer, error)) func() crypto.Signer {
	return sync.OnceValue(func() crypto.Signer { return must(generate()) })
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var (
	serverUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	clientUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
)

// request is a CSR to create.
type request struct {
	tmpl   *x509.CertificateRequest
	key    crypto.Signer // default P-256
	usages []certificatesv1.KeyUsage
	exp    *int32
	sha1   bool   // sign with SHA-1, which kube-apiserver accepts and the policy does not
	raw    []byte // the PEM request as is, instead of tmpl and key
}

func (r request) pem(t *testing.T) []byte {
	t.Helper()
	if r.raw != nil {
		return r.raw
	}
	key := r.key
	if key == nil {
		key = keyP256()
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, r.tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	if r.sha1 {
		der = resignSHA1(t, der, key.(*rsa.PrivateKey))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// resignSHA1 replaces a request's signature with sha1WithRSAEncryption,
// which x509.CreateCertificateRequest no longer produces.
func resignSHA1(t *testing.T, der []byte, key *rsa.PrivateKey) []byte {
	t.Helper()
	var c struct {
		TBS    asn1.RawValue
		SigAlg pkix.AlgorithmIdentifier
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(c.TBS.FullBytes)
	sig := must(rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, sum[:]))
	c.SigAlg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}, Parameters: asn1.NullRawValue}
	c.Sig = asn1.BitString{Bytes: sig, BitLength: len(sig) * 8}
	return must(asn1.Marshal(c))
}

// createCSR creates the request with client (a pod's token, or a user).
func createCSR(t *testing.T, client kubernetes.Interface, signer string, r request) (*certificatesv1.CertificateSigningRequest, error) {
	t.Helper()
	usages := r.usages
	if usages == nil {
		usages = serverUsages
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: r.pem(t), SignerName: signer, Usages: usages, ExpirationSeconds: r.exp,
		},
	}
	return client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), csr, metav1.CreateOptions{})
}

func mustCreateCSR(t *testing.T, client kubernetes.Interface, signer string, r request) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	csr, err := createCSR(t, client, signer, r)
	if err != nil {
		t.Fatalf("creating CSR: %v", err)
	}
	return csr
}

// waitFinished watches the CSR until it is denied, failed or issued.
func waitFinished(t *testing.T, client kubernetes.Interface, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lw := cache.NewFilteredListWatchFromClient(client.CertificatesV1().RESTClient(), "certificatesigningrequests", "", func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	ev, err := watchtools.UntilWithSync(ctx, lw, &certificatesv1.CertificateSigningRequest{}, nil, func(ev watch.Event) (bool, error) {
		csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
		if !ok {
			return false, nil
		}
		_, finished := outcome(csr)
		return finished, nil
	})
	if err != nil {
		t.Fatalf("waiting for CSR %s to be decided and signed: %v", name, err)
	}
	return ev.Object.(*certificatesv1.CertificateSigningRequest)
}

// outcome is "issued", or the reason of the Denied or Failed condition.
func outcome(csr *certificatesv1.CertificateSigningRequest) (string, bool) {
	if len(csr.Status.Certificate) > 0 {
		return "issued", true
	}
	for _, c := range csr.Status.Conditions {
		if (c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed) && c.Status == corev1.ConditionTrue {
			return string(c.Type) + ":" + c.Reason, true
		}
	}
	return "", false
}

func conditionOf(csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequestCondition {
	for i, c := range csr.Status.Conditions {
		if c.Type == typ {
			return &csr.Status.Conditions[i]
		}
	}
	return nil
}

// trustBundle reads the signer's published ClusterTrustBundles, as the
// agent and a clusterTrustBundle volume projection do.
func trustBundle(t *testing.T, client kubernetes.Interface, signer string) (*x509.CertPool, []*x509.Certificate) {
	t.Helper()
	list, err := client.CertificatesV1().ClusterTrustBundles().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.signerName", signer).String(),
	})
	if err != nil {
		t.Fatalf("listing trust bundles: %v", err)
	}
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for _, b := range list.Items {
		rest := []byte(b.Spec.TrustBundle)
		for {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			c := must(x509.ParseCertificate(block.Bytes))
			pool.AddCert(c)
			certs = append(certs, c)
		}
	}
	if len(certs) == 0 {
		t.Fatalf("no ClusterTrustBundle for signer %s", signer)
	}
	return pool, certs
}

// parseChain reads status.certificate: the leaf, then intermediates.
func parseChain(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		out = append(out, must(x509.ParseCertificate(block.Bytes)))
	}
	if len(out) == 0 {
		t.Fatalf("status.certificate holds no certificate: %q", data)
	}
	return out
}

// serveTLS completes a real TLS handshake on 127.0.0.1: a server presenting
// the issued certificate, a client verifying it for serverName (a DNS name,
// or an IP, which Go checks against the IP SANs) against roots.
func serveTLS(t *testing.T, chain []*x509.Certificate, key crypto.Signer, serverName string, roots *x509.CertPool) error {
	t.Helper()
	cert := tlsCert(chain, key)
	return handshake(t, &tls.Config{Certificates: []tls.Certificate{cert}},
		&tls.Config{ServerName: serverName, RootCAs: roots})
}

// clientTLS completes a mutual-TLS handshake in which the issued
// certificate authenticates the client and the server verifies it against
// roots; the server's own certificate is a throwaway the client trusts.
func clientTLS(t *testing.T, chain []*x509.Certificate, key crypto.Signer, roots *x509.CertPool) error {
	t.Helper()
	serverKey := keyP256()
	tmpl := &x509.Certificate{
		SerialNumber: must(rand.Int(rand.Reader, big128)), DNSNames: []string{"server.test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	serverCert := must(x509.ParseCertificate(must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, serverKey.Public(), serverKey))))
	serverRoots := x509.NewCertPool()
	serverRoots.AddCert(serverCert)
	return handshake(t,
		&tls.Config{Certificates: []tls.Certificate{tlsCert([]*x509.Certificate{serverCert}, serverKey)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots},
		&tls.Config{ServerName: "server.test", RootCAs: serverRoots, Certificates: []tls.Certificate{tlsCert(chain, key)}})
}

var big128 = new(big.Int).Lsh(big.NewInt(1), 128)

func tlsCert(chain []*x509.Certificate, key crypto.Signer) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// handshake runs one TLS connection and returns the first failure of
// either side.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		serverErr <- conn.(*tls.Conn).Handshake()
	}()
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: client}
	conn, err := dialer.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err == nil {
		// TLS 1.3 clients finish before the server has checked the client
		// certificate; a read waits for the server's verdict.
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = conn.Read(make([]byte, 1))
		conn.Close()
	}
	return errors.Join(err, <-serverErr)
}
