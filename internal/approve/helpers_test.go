package approve

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// The world the tests run in: pod shop/web-0 runs as service account "web",
// is selected by Services "web" (ClusterIP, dual-stack) and "web-hl"
// (headless), not by "db", "manual" (no selector) or "ext" (ExternalName);
// namespace "bank" has its own Service "web" with a matching selector.
const (
	testNS     = "shop"
	testPod    = "web-0"
	testUID    = "6f1c0a4e-0000-4000-8000-000000000001"
	testSA     = "web"
	testDomain = "cluster.local"
)

func testPodFacts() *Pod {
	return &Pod{
		Namespace:          testNS,
		Name:               testPod,
		UID:                testUID,
		ServiceAccountName: testSA,
		Phase:              corev1.PodRunning,
		PodIPs:             []string{"10.1.2.3", "fd00:10::3"},
		Labels:             map[string]string{"app": "web", "tier": "front"},
		Hostname:           "web-0",
		Subdomain:          "web-hl",
	}
}

func testServices() []Service {
	return []Service{
		{Namespace: testNS, Name: "web", Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.0.10", "fd00:96::10"}},
		{Namespace: testNS, Name: "web-hl", Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"None"}},
		{Namespace: testNS, Name: "front", Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"tier": "front"}, ClusterIPs: []string{"10.96.0.20"}},
		{Namespace: testNS, Name: "db", Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "db"}, ClusterIPs: []string{"10.96.0.30"}},
		{Namespace: testNS, Name: "manual", Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{"10.96.0.40"}},
		{Namespace: testNS, Name: "ext", Type: corev1.ServiceTypeExternalName, Selector: map[string]string{"app": "web"}},
		{Namespace: "bank", Name: "web", Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIPs: []string{"10.96.1.10"}},
	}
}

func testFacts() Facts { return Facts{Pod: testPodFacts(), Services: testServices()} }

func newTestPolicy(t testing.TB, opts Options) *Policy {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	return p
}

// Keys are generated once per process: RSA generation is slow under -race on
// a small machine.
var (
	keyP256    = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	keyP384    = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
	keyP521    = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)) })
	keyP224    = sync.OnceValue(func() crypto.Signer { return must(ecdsa.GenerateKey(elliptic.P224(), rand.Reader)) })
	keyRSA2048 = sync.OnceValue(func() crypto.Signer { return must(rsa.GenerateKey(rand.Reader, 2048)) })
	keyRSA1024 = sync.OnceValue(func() crypto.Signer { return must(rsa.GenerateKey(rand.Reader, 1024)) })
	keyEd25519 = sync.OnceValue(func() crypto.Signer {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// csrPEM signs tmpl with key (P-256 when nil) and returns the PEM request.
func csrPEM(t testing.TB, tmpl *x509.CertificateRequest, key crypto.Signer) []byte {
	t.Helper()
	if key == nil {
		key = keyP256()
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// podCSR is a CSR as the pod's agent creates it, with the fields
// kube-apiserver fills from a pod-bound token.
func podCSR(request []byte, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	if len(usages) == 0 {
		usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return &certificatesv1.CertificateSigningRequest{
		Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: SignerName,
			Request:    request,
			Usages:     usages,
			Username:   "system:serviceaccount:" + testNS + ":" + testSA,
			Groups:     []string{"system:serviceaccounts", "system:serviceaccounts:" + testNS, "system:authenticated"},
			Extra: map[string]certificatesv1.ExtraValue{
				ExtraPodName:                             {testPod},
				ExtraPodUID:                              {testUID},
				"authentication.kubernetes.io/node-name": {"node-1"},
			},
		},
	}
}

func dnsReq(names ...string) *x509.CertificateRequest {
	return &x509.CertificateRequest{DNSNames: names}
}

func ips(ss ...string) []net.IP {
	out := make([]net.IP, len(ss))
	for i, s := range ss {
		out[i] = net.ParseIP(s)
	}
	return out
}

func mustURL(s string) *url.URL { return must(url.Parse(s)) }

func ext(oid asn1.ObjectIdentifier, value any) pkix.Extension {
	return pkix.Extension{Id: oid, Value: must(asn1.Marshal(value))}
}

// rawCSR is the outer structure of a PKCS#10 request (RFC 2986), for
// crafting requests x509.CreateCertificateRequest refuses to make.
type rawCSR struct {
	TBS    asn1.RawValue
	SigAlg pkix.AlgorithmIdentifier
	Sig    asn1.BitString
}

type rawTBS struct {
	Version    int
	Subject    asn1.RawValue
	PublicKey  asn1.RawValue
	Attributes []asn1.RawValue `asn1:"tag:0"`
}

// tamper decodes a PEM request, lets edit change it, and re-encodes it
// without re-signing.
func tamper(t testing.TB, pemReq []byte, edit func(*rawCSR, *rawTBS)) []byte {
	t.Helper()
	block, _ := pem.Decode(pemReq)
	var c rawCSR
	if _, err := asn1.Unmarshal(block.Bytes, &c); err != nil {
		t.Fatalf("unmarshal csr: %v", err)
	}
	var tbs rawTBS
	if _, err := asn1.Unmarshal(c.TBS.FullBytes, &tbs); err != nil {
		t.Fatalf("unmarshal tbs: %v", err)
	}
	edit(&c, &tbs)
	c.TBS = asn1.RawValue{FullBytes: must(asn1.Marshal(tbs))}
	der := must(asn1.Marshal(c))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// withPublicKey swaps the request's key for pub, keeping the old signature:
// someone else's key, whose possession the request cannot prove.
func withPublicKey(t testing.TB, pemReq []byte, pub any) []byte {
	spki := must(x509.MarshalPKIXPublicKey(pub))
	return tamper(t, pemReq, func(_ *rawCSR, tbs *rawTBS) { tbs.PublicKey = asn1.RawValue{FullBytes: spki} })
}

// hugeRSAKey is a 9000-bit RSA public key; nobody needs its private half.
func hugeRSAKey() *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), 8999)
	n.Add(n, big.NewInt(1234567))
	return &rsa.PublicKey{N: n, E: 65537}
}

func int32p(v int32) *int32 { return &v }
