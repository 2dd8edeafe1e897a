package controller_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/testenv"
	"github.com/csr-agent/csr-agent/manifests"
)

// The shipped RBAC names these; a setup bound to it must use them.
const (
	shippedNamespace      = "csr-agent-system"
	shippedServiceAccount = "csr-agent-controller"
	shippedLease          = "csr-agent-controller"
)

var shippedRBAC sync.Mutex

// newShippedSetup is a controller world whose client is the controller's
// service account bound to the RBAC that ships (manifests/controller), so
// with its names: signer csr-agent.io/pod, CA Secret
// csr-agent-system/csr-agent-ca, bundle csr-agent.io:pod:ca. Only the pod
// certificate tests use that signer in this package.
func newShippedSetup(t *testing.T) *setup {
	t.Helper()
	env := testenv.Shared(t)
	ctx := t.Context()
	shippedRBAC.Lock()
	_, err := manifests.Apply(ctx, env.Config, "csr-agent-test",
		"controller/namespace.yaml", "controller/serviceaccount.yaml", "controller/rbac.yaml")
	shippedRBAC.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := env.Client.CoreV1().ServiceAccounts(shippedNamespace).CreateToken(ctx, shippedServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{
		Host: env.Config.Host, BearerToken: tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: env.ServerCAPEM},
		QPS:             400, Burst: 800, // the production defaults
	}
	user, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &setup{
		env: env, signer: approve.SignerName, ns: shippedNamespace,
		caSecret:   types.NamespacedName{Namespace: shippedNamespace, Name: "csr-agent-ca"},
		bundleName: config.DefaultTrustBundleName(approve.SignerName),
		user:       user,
		lease:      shippedLease,
	}
}

// kubelet plays the node's kubelet with the node's own identity (a
// system:node client certificate): it reads the pod and its service account
// and creates PodCertificateRequests exactly as the kubelet's pod
// certificate manager does, subject to the Node authorizer and
// NodeRestriction.
type kubelet struct {
	client kubernetes.Interface
	node   *corev1.Node
}

func newKubelet(t *testing.T, env *testenv.Env) *kubelet {
	t.Helper()
	cfg, node := env.NodeConfig(t)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &kubelet{client: client, node: node}
}

// request creates the request for pod's podCertificate projection of
// signer, after edit (nil: as the kubelet would), and returns it with the
// private key.
func (k *kubelet) request(t *testing.T, pod *testenv.Pod, signer string, edit func(*certificatesv1.PodCertificateRequest)) (*certificatesv1.PodCertificateRequest, crypto.Signer, error) {
	t.Helper()
	ctx := t.Context()
	p, err := k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubelet reading pod: %v", err)
	}
	sa, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, p.Spec.ServiceAccountName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubelet reading service account: %v", err)
	}
	proj := projection(p, signer)
	if proj == nil {
		t.Fatalf("pod %s/%s has no podCertificate projection for %s", pod.Namespace, pod.Name, signer)
	}
	key := generateKey(t, proj.KeyType)
	stub, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	req := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace, GenerateName: "req-",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: p.Name, UID: p.UID}},
		},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: signer, PodName: p.Name, PodUID: p.UID,
			ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
			NodeName: types.NodeName(k.node.Name), NodeUID: k.node.UID,
			MaxExpirationSeconds:      proj.MaxExpirationSeconds,
			StubPKCS10Request:         stub,
			UnverifiedUserAnnotations: proj.UserAnnotations,
		},
	}
	if req.Spec.MaxExpirationSeconds == nil {
		req.Spec.MaxExpirationSeconds = ptr.To[int32](86400) // the API's default
	}
	if edit != nil {
		edit(req)
	}
	out, err := k.client.CertificatesV1().PodCertificateRequests(pod.Namespace).Create(ctx, req, metav1.CreateOptions{})
	return out, key, err
}

func projection(p *corev1.Pod, signer string) *corev1.PodCertificateProjection {
	for _, v := range p.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.PodCertificate != nil && s.PodCertificate.SignerName == signer {
				return s.PodCertificate
			}
		}
	}
	return nil
}

func generateKey(t *testing.T, keyType string) crypto.Signer {
	t.Helper()
	var key crypto.Signer
	var err error
	switch keyType {
	case "ECDSAP256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECDSAP384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ECDSAP521":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RSA3072":
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	case "ED25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("key type %q", keyType)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// certVolume is a pod's podCertificate projected volume, with the trust
// bundle beside it, as manifests/examples/pod-certificate mounts it.
func certVolume(signer, keyType string, annotations map[string]string) corev1.Volume {
	return corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{PodCertificate: &corev1.PodCertificateProjection{
				SignerName: signer, KeyType: keyType, CredentialBundlePath: "credentialbundle.pem", UserAnnotations: annotations,
			}},
		},
	}}}
}

// terminal returns the request's Issued, Denied or Failed condition.
func terminal(pcr *certificatesv1.PodCertificateRequest) *metav1.Condition {
	for _, t := range []string{
		certificatesv1.PodCertificateRequestConditionTypeIssued,
		certificatesv1.PodCertificateRequestConditionTypeDenied,
		certificatesv1.PodCertificateRequestConditionTypeFailed,
	} {
		if c := meta.FindStatusCondition(pcr.Status.Conditions, t); c != nil {
			return c
		}
	}
	return nil
}

// waitTerminal waits until the request is issued, denied or failed.
func waitTerminal(t *testing.T, client kubernetes.Interface, pcr *certificatesv1.PodCertificateRequest) *certificatesv1.PodCertificateRequest {
	t.Helper()
	var got *certificatesv1.PodCertificateRequest
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = client.CertificatesV1().PodCertificateRequests(pcr.Namespace).Get(ctx, pcr.Name, metav1.GetOptions{})
		return err == nil && terminal(got) != nil, nil
	})
	if err != nil {
		t.Fatalf("%s/%s not decided: %v (status %+v)", pcr.Namespace, pcr.Name, err, got.Status)
	}
	return got
}

// trustPool reads the published trust bundle.
func trustPool(t *testing.T, s *setup) *x509.CertPool {
	t.Helper()
	var pool *x509.CertPool
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		b, err := s.env.Client.CertificatesV1().ClusterTrustBundles().Get(ctx, s.bundleName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pool = x509.NewCertPool()
		return pool.AppendCertsFromPEM([]byte(b.Spec.TrustBundle)), nil
	})
	if err != nil {
		t.Fatalf("trust bundle %s: %v", s.bundleName, err)
	}
	return pool
}

// keyPair is the credential bundle the kubelet would write: the key and
// the issued chain.
func keyPair(t *testing.T, chainPEM string, key crypto.Signer) tls.Certificate {
	t.Helper()
	var cert tls.Certificate
	for rest := []byte(chainPEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	cert.PrivateKey = key
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	cert.Leaf = leaf
	return cert
}

// serves checks that cert, presented by a server, verifies against pool
// for name (a DNS name or an IP) in a real handshake.
func serves(t *testing.T, cert tls.Certificate, pool *x509.CertPool, name string) error {
	t.Helper()
	return handshake(t, &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool, ServerName: name})
}

// authenticates checks that cert, presented by a client, verifies against
// pool at a server requiring client certificates.
func authenticates(t *testing.T, cert tls.Certificate, pool *x509.CertPool) error {
	t.Helper()
	serverCert := throwawayServerCert(t)
	return handshake(t,
		&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		&tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}, //nolint:gosec // only the client certificate is under test
	)
}

func throwawayServerCert(t *testing.T) tls.Certificate {
	t.Helper()
	key := generateKey(t, "ECDSAP256")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"server"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
