package issue

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"

	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"

	"github.com/csr-agent/csr-agent/internal/config"
	"github.com/csr-agent/csr-agent/internal/identity"
)

func TestGenerateKeyMakesEveryConfiguredTypeAndKeyTypeOfNamesIt(t *testing.T) {
	for _, kt := range allKeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			key := testKey(t, kt)
			got, err := KeyTypeOf(key)
			if err != nil || got != kt {
				t.Fatalf("KeyTypeOf(GenerateKey(%s)) = %q, %v", kt, got, err)
			}
			if !keyMatchesType(key, kt) {
				t.Errorf("keyMatchesType(key, %s) = false", kt)
			}
		})
	}
}

func TestGenerateKeyRejectsAnUnknownType(t *testing.T) {
	if key, err := GenerateKey("dsa-1024", rand.Reader); err == nil {
		t.Fatalf("GenerateKey(dsa-1024) = %T, want an error", key)
	}
}

func TestKeyTypeOfRejectsKeysNoTypeNames(t *testing.T) {
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"ecdsa-p224": p224, "rsa-1024": rsa1024} {
		if kt, err := KeyTypeOf(key); err == nil {
			t.Errorf("KeyTypeOf(%s) = %q, want an error", name, kt)
		}
	}
}

func TestKeyUsagesAddKeyEnciphermentOnlyForRSA(t *testing.T) {
	const (
		sig    = certificatesv1.UsageDigitalSignature
		enc    = certificatesv1.UsageKeyEncipherment
		server = certificatesv1.UsageServerAuth
		client = certificatesv1.UsageClientAuth
	)
	for _, tc := range []struct {
		name   string
		key    config.KeyType
		usages config.Usages
		want   []certificatesv1.KeyUsage
	}{
		{"ecdsa server", config.KeyECDSAP256, config.UsageServer, []certificatesv1.KeyUsage{sig, server}},
		{"ecdsa client", config.KeyECDSAP384, config.UsageClient, []certificatesv1.KeyUsage{sig, client}},
		{"ed25519 both", config.KeyEd25519, config.UsageServer | config.UsageClient, []certificatesv1.KeyUsage{sig, server, client}},
		{"rsa server", config.KeyRSA2048, config.UsageServer, []certificatesv1.KeyUsage{sig, enc, server}},
		{"rsa client", config.KeyRSA2048, config.UsageClient, []certificatesv1.KeyUsage{sig, enc, client}},
		{"rsa both", config.KeyRSA2048, config.UsageServer | config.UsageClient, []certificatesv1.KeyUsage{sig, enc, server, client}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := KeyUsages(testKey(t, tc.key), tc.usages); !slices.Equal(got, tc.want) {
				t.Errorf("KeyUsages = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCertificateRequestCarriesTheIdentityAndIsSignedByTheKey(t *testing.T) {
	id := identity.Identity{
		CommonName: "web.shop.svc.cluster.local",
		DNSNames:   []string{"web.shop.svc.cluster.local", "web.shop.svc", "web"},
		IPs:        []net.IP{net.ParseIP("10.1.2.3").To4(), net.ParseIP("fd00::1")},
	}
	for _, kt := range []config.KeyType{config.KeyECDSAP256, config.KeyRSA2048, config.KeyEd25519} {
		t.Run(string(kt), func(t *testing.T) {
			key := testKey(t, kt)
			data, err := CertificateRequest(key, id)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(data)
			if block == nil || block.Type != "CERTIFICATE REQUEST" {
				t.Fatalf("not a PEM CERTIFICATE REQUEST:\n%s", data)
			}
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("signature does not verify: %v", err)
			}
			if !samePublicKey(key.Public(), csr.PublicKey) {
				t.Error("request is for another key")
			}
			if csr.Subject.CommonName != id.CommonName {
				t.Errorf("CN = %q, want %q", csr.Subject.CommonName, id.CommonName)
			}
			if !slices.Equal(csr.DNSNames, id.DNSNames) {
				t.Errorf("DNS names = %v, want %v", csr.DNSNames, id.DNSNames)
			}
			if !slices.EqualFunc(csr.IPAddresses, id.IPs, net.IP.Equal) {
				t.Errorf("IPs = %v, want %v", csr.IPAddresses, id.IPs)
			}
		})
	}
}

func TestEncodeKeyThenDecodeKeyGivesTheSameKey(t *testing.T) {
	for _, kt := range allKeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			key := testKey(t, kt)
			data, err := EncodeKey(key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeKey(data)
			if err != nil {
				t.Fatal(err)
			}
			if !samePublicKey(key.Public(), got.Public()) {
				t.Error("decoded key differs")
			}
			if kt2, _ := KeyTypeOf(got); kt2 != kt {
				t.Errorf("decoded key is %q", kt2)
			}
		})
	}
}

func TestDecodeKeyRejectsWhatIsNotAPKCS8Key(t *testing.T) {
	ec := testKey(t, config.KeyECDSAP256).(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"empty":                   nil,
		"garbage":                 []byte("not a key at all"),
		"certificate":             pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"bad PKCS#8 DER":          pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x01}}),
		"SEC 1 in a PKCS#8 block": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: sec1}),
		"truncated": func() []byte {
			data, _ := EncodeKey(ec)
			return data[:len(data)/2]
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			if key, err := DecodeKey(data); err == nil {
				t.Errorf("DecodeKey = %T, want an error", key)
			}
		})
	}
}

func TestCheckIssuedAcceptsOnlyAChainForTheKey(t *testing.T) {
	ca := newCA(t)
	key := freshKey(t)
	for _, tc := range []struct {
		name  string
		chain []byte
		ok    bool
	}{
		{"chain for the key", ca.issue(t, key.Public(), "web"), true},
		{"chain for another key", ca.issue(t, freshKey(t).Public(), "web"), false},
		{"garbage", []byte("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkIssued(tc.chain, key); (err == nil) != tc.ok {
				t.Errorf("checkIssued = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestOursIsTrueOnlyForAUsableRequestOfTheSameKey(t *testing.T) {
	key := freshKey(t)
	request, err := CertificateRequest(key, identity.Identity{CommonName: "web"})
	if err != nil {
		t.Fatal(err)
	}
	otherRequest, err := CertificateRequest(freshKey(t), identity.Identity{CommonName: "web"})
	if err != nil {
		t.Fatal(err)
	}
	pending := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{Request: request}}
	other := pending.DeepCopy()
	other.Spec.Request = otherRequest
	garbage := pending.DeepCopy()
	garbage.Spec.Request = []byte("garbage")
	approved := withCondition(pending, certificatesv1.CertificateApproved, "ok", "")
	for _, tc := range []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		want bool
	}{
		{"same key, pending", pending, true},
		{"same key, approved", approved, true},
		{"same key, issued", newCA(t).sign(t, pending), true},
		{"other key", other, false},
		{"unparseable request", garbage, false},
		{"same key, denied", withCondition(pending, certificatesv1.CertificateDenied, "No", "policy"), false},
		{"same key, approved then failed", withCondition(approved, certificatesv1.CertificateFailed, "Broken", "signer"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ours(tc.csr, key); got != tc.want {
				t.Errorf("ours = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSamePublicKeyIsFalseAcrossAlgorithms(t *testing.T) {
	ed := testKey(t, config.KeyEd25519).(ed25519.PrivateKey)
	ec := testKey(t, config.KeyECDSAP256)
	if samePublicKey(ed.Public(), ec.Public()) || samePublicKey(ec.Public(), ed.Public()) {
		t.Error("an Ed25519 and an ECDSA key compare equal")
	}
	if samePublicKey(nil, ec.Public()) {
		t.Error("a nil key compares equal")
	}
}
