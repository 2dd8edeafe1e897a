package localcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Serving moves the kube-apiserver off loopback, for a real node whose pods
// reach it (package localnode): it listens on Address and advertises it as
// the endpoint of the `kubernetes` Service, whose cluster IP is the first
// address of ServiceCIDR.
type Serving struct {
	// Address is an address of this machine the pods can reach, e.g. the
	// node's bridge.
	Address net.IP
	// ServiceCIDR is the range of Service cluster IPs.
	ServiceCIDR *net.IPNet
}

// kubernetesServiceIP is the first address of the range: the API server
// allocates it to the `kubernetes` Service.
func (s Serving) kubernetesServiceIP() net.IP {
	ip := s.ServiceCIDR.IP.To4()
	if ip == nil {
		ip = s.ServiceCIDR.IP.To16()
	}
	out := make(net.IP, len(ip))
	copy(out, ip)
	out[len(out)-1]++
	return out
}

// Envtest's own serving certificate names only localhost and the listen
// address; pods' in-cluster config dials the `kubernetes` Service's cluster
// IP and verifies the certificate for it. So the certificates are written
// here, with the names envtest would also give, before envtest looks (it
// keeps existing files, which is how a restart keeps them too).
const (
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
	// Names envtest gives the service-account signing pair.
	saCertFile = "sa-signer.crt"
	saKeyFile  = "sa-signer.key"
)

// writeServingCerts writes a serving CA, the serving pair and the
// service-account signing pair into dir, and returns the CA certificate.
func writeServingCerts(dir string, s Serving) ([]byte, error) {
	ca, err := newClusterCA()
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating serving key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, s.Address, s.kubernetesServiceIP()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding serving key: %w", err)
	}
	// The service-account issuer signs tokens with a key of its own, as
	// envtest's does.
	sa, err := newClusterCA()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		servingCertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		servingKeyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		saCertFile:      sa.certPEM,
		saKeyFile:       sa.keyPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return ca.certPEM, nil
}

// freePort is a TCP port free on ip, as envtest finds one for loopback.
func freePort(ip net.IP) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return "", fmt.Errorf("finding a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}
