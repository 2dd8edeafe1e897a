package approve

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

func basicConstraintsCA() pkix.Extension {
	return ext(oidBasicConstraints, struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}{IsCA: true, MaxPathLen: -1})
}

func keyUsageExt(bit int) pkix.Extension {
	b := make([]byte, bit/8+1)
	b[bit/8] = 0x80 >> (bit % 8)
	return ext(oidKeyUsage, asn1.BitString{Bytes: b, BitLength: bit + 1})
}

func sanExt(names ...asn1.RawValue) pkix.Extension { return ext(oidSubjectAltName, names) }

func generalName(tag int, compound bool, content []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: compound, Bytes: content}
}

// decide runs the policy on a CSR for the test pod with default options.
func decide(t *testing.T, csr *certificatesv1.CertificateSigningRequest) Decision {
	t.Helper()
	return newTestPolicy(t, Options{}).Decide(csr, testFacts())
}

func TestRequiresProofOfPossession(t *testing.T) {
	valid := func(t *testing.T) []byte { return csrPEM(t, dnsReq("web.shop.svc"), nil) }
	tests := []struct {
		name       string
		request    func(t *testing.T) []byte
		wantReason string
	}{
		{"valid", valid, ReasonApproved},
		{"valid with surrounding whitespace", func(t *testing.T) []byte { return append(append([]byte("\n"), valid(t)...), "\n\n"...) }, ReasonApproved},
		{"not PEM", func(*testing.T) []byte { return []byte("hello") }, ReasonInvalidRequest},
		{"empty", func(*testing.T) []byte { return nil }, ReasonInvalidRequest},
		{"legacy block type", func(t *testing.T) []byte {
			b, _ := pem.Decode(valid(t))
			return pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: b.Bytes})
		}, ReasonInvalidRequest},
		{"second PEM block", func(t *testing.T) []byte { return append(valid(t), valid(t)...) }, ReasonInvalidRequest},
		{"PEM headers", func(t *testing.T) []byte {
			b, _ := pem.Decode(valid(t))
			b.Headers = map[string]string{"Proc-Type": "4,ENCRYPTED"}
			return pem.EncodeToMemory(b)
		}, ReasonInvalidRequest},
		{"garbage DER", func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}})
		}, ReasonInvalidRequest},
		{"corrupted signature", func(t *testing.T) []byte {
			return tamper(t, valid(t), func(c *rawCSR, _ *rawTBS) { c.Sig.Bytes[len(c.Sig.Bytes)/2] ^= 0x01 })
		}, ReasonSignatureInvalid},
		{"someone else's public key", func(t *testing.T) []byte {
			return withPublicKey(t, valid(t), keyP384().Public())
		}, ReasonSignatureInvalid},
		{"SHA-1 signature algorithm", func(t *testing.T) []byte {
			return tamper(t, valid(t), func(c *rawCSR, _ *rawTBS) {
				c.SigAlg = pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}} // ecdsa-with-SHA1
			})
		}, ReasonSignatureInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, podCSR(tt.request(t)))
			if d.Reason != tt.wantReason || d.Approve != (tt.wantReason == ReasonApproved) {
				t.Errorf("Decide = %v %s (%s), want %s", d.Approve, d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestAllowsOnlyStrongSupportedKeys(t *testing.T) {
	tests := []struct {
		name       string
		request    func(t *testing.T) []byte
		wantReason string
	}{
		{"ECDSA P-256", withSigner(keyP256), ReasonApproved},
		{"ECDSA P-384", withSigner(keyP384), ReasonApproved},
		{"Ed25519", withSigner(keyEd25519), ReasonApproved},
		{"RSA 2048", withSigner(keyRSA2048), ReasonApproved},
		{"RSA 1024", withSigner(keyRSA1024), ReasonWeakKey},
		{"ECDSA P-224", withSigner(keyP224), ReasonWeakKey},
		{"ECDSA P-521", withSigner(keyP521), ReasonKeyTypeNotAllowed},
		{"RSA 9000", func(t *testing.T) []byte {
			return withPublicKey(t, csrPEM(t, dnsReq("web.shop.svc"), keyRSA2048()), hugeRSAKey())
		}, ReasonKeyTypeNotAllowed},
		{"unknown key algorithm", func(t *testing.T) []byte {
			return tamper(t, csrPEM(t, dnsReq("web.shop.svc"), nil), func(_ *rawCSR, tbs *rawTBS) {
				tbs.PublicKey = asn1.RawValue{FullBytes: must(asn1.Marshal(struct {
					Alg pkix.AlgorithmIdentifier
					Key asn1.BitString
				}{pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 110}}, asn1.BitString{Bytes: make([]byte, 32), BitLength: 256}}))} // X25519
			})
		}, ReasonKeyTypeNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, podCSR(tt.request(t)))
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func withSigner(key func() crypto.Signer) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return csrPEM(t, dnsReq("web.shop.svc"), key()) }
}

func TestAllowsOnlyLeafExtensionsMatchingUsages(t *testing.T) {
	tests := []struct {
		name       string
		exts       []pkix.Extension
		wantReason string
	}{
		{"keyUsage digitalSignature", []pkix.Extension{keyUsageExt(0)}, ReasonApproved},
		{"extendedKeyUsage serverAuth", []pkix.Extension{ext(oidExtKeyUsage, []asn1.ObjectIdentifier{oidEKUServerAuth})}, ReasonApproved},
		{"basicConstraints cA=false", []pkix.Extension{ext(oidBasicConstraints, struct{}{})}, ReasonApproved},
		{"basicConstraints cA=true", []pkix.Extension{basicConstraintsCA()}, ReasonCARequested},
		{"keyUsage keyCertSign", []pkix.Extension{keyUsageExt(5)}, ReasonCARequested},
		{"keyUsage keyEncipherment not in usages", []pkix.Extension{keyUsageExt(2)}, ReasonUsageNotAllowed},
		{"keyUsage keyAgreement", []pkix.Extension{keyUsageExt(4)}, ReasonUsageNotAllowed},
		{"extendedKeyUsage clientAuth not in usages", []pkix.Extension{ext(oidExtKeyUsage, []asn1.ObjectIdentifier{oidEKUClientAuth})}, ReasonUsageNotAllowed},
		{"extendedKeyUsage any", []pkix.Extension{ext(oidExtKeyUsage, []asn1.ObjectIdentifier{{2, 5, 29, 37, 0}})}, ReasonUsageNotAllowed},
		{"unknown extension", []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: []byte{0x05, 0x00}}}, ReasonExtensionNotAllowed},
		{"nameConstraints", []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 30}, Critical: true, Value: []byte{0x30, 0x00}}}, ReasonExtensionNotAllowed},
		{"SAN otherName", []pkix.Extension{sanExt(generalName(2, false, []byte("web")), generalName(0, true, must(asn1.Marshal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}))))}, ReasonExtensionNotAllowed},
		{"SAN directoryName", []pkix.Extension{sanExt(generalName(2, false, []byte("web")), generalName(4, true, []byte{0x30, 0x00}))}, ReasonExtensionNotAllowed},
		{"SAN registeredID", []pkix.Extension{sanExt(generalName(2, false, []byte("web")), generalName(8, false, []byte{0x2a, 0x03}))}, ReasonExtensionNotAllowed},
		{"SAN dNSName constructed", []pkix.Extension{sanExt(generalName(2, true, must(asn1.Marshal("web"))))}, ReasonInvalidRequest},
		{"malformed keyUsage", []pkix.Extension{{Id: oidKeyUsage, Value: []byte{0x01}}}, ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := dnsReq("web.shop.svc")
			tmpl.ExtraExtensions = tt.exts
			d := decide(t, podCSR(csrPEM(t, tmpl, nil)))
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestAllowsOnlyACommonNameInTheSubject(t *testing.T) {
	cn := pkix.AttributeTypeAndValue{Type: oidCommonName, Value: "web"}
	tests := []struct {
		name       string
		subject    pkix.Name
		wantReason string
	}{
		{"empty", pkix.Name{}, ReasonApproved},
		{"CN", pkix.Name{CommonName: "web.shop.svc"}, ReasonApproved},
		{"O", pkix.Name{CommonName: "web", Organization: []string{"system:masters"}}, ReasonSubjectNotAllowed},
		{"OU", pkix.Name{OrganizationalUnit: []string{"ops"}}, ReasonSubjectNotAllowed},
		{"C", pkix.Name{Country: []string{"DE"}}, ReasonSubjectNotAllowed},
		{"serialNumber", pkix.Name{SerialNumber: "1"}, ReasonSubjectNotAllowed},
		{"two CNs", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{cn, cn}}, ReasonSubjectNotAllowed},
		{"unknown attribute", pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "uid"}}}, ReasonSubjectNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t, podCSR(csrPEM(t, &x509.CertificateRequest{Subject: tt.subject, DNSNames: []string{"web.shop.svc"}}, nil)))
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestAllowsOnlyTLSUsages(t *testing.T) {
	u := func(us ...certificatesv1.KeyUsage) []certificatesv1.KeyUsage { return us }
	const (
		ds = certificatesv1.UsageDigitalSignature
		ke = certificatesv1.UsageKeyEncipherment
		sa = certificatesv1.UsageServerAuth
		ca = certificatesv1.UsageClientAuth
	)
	tests := []struct {
		name       string
		usages     []certificatesv1.KeyUsage
		wantReason string
	}{
		{"server", u(ds, sa), ReasonApproved},
		{"client", u(ds, ca), ReasonApproved},
		{"both, with key encipherment on an ECDSA key", u(ds, ke, sa, ca), ReasonApproved},
		{"server auth alone", u(sa), ReasonApproved},
		{"neither server nor client auth", u(ds, ke), ReasonUsageNotAllowed},
		{"none", nil, ReasonUsageNotAllowed},
		{"cert sign", u(ds, sa, certificatesv1.UsageCertSign), ReasonCARequested},
		{"crl sign", u(ds, sa, certificatesv1.UsageCRLSign), ReasonCARequested},
		{"code signing", u(ds, sa, certificatesv1.UsageCodeSigning), ReasonUsageNotAllowed},
		{"any", u(ds, sa, certificatesv1.UsageAny), ReasonUsageNotAllowed},
		{"signing alias", u(certificatesv1.UsageSigning, sa), ReasonUsageNotAllowed},
		{"made up", u(ds, sa, "root"), ReasonUsageNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil))
			csr.Spec.Usages = tt.usages
			d := decide(t, csr)
			if d.Reason != tt.wantReason {
				t.Errorf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
		})
	}
}

func TestClampsRequestedExpirationToTheMaximum(t *testing.T) {
	tests := []struct {
		name       string
		max        time.Duration
		seconds    *int32
		wantReason string
		wantGrant  *int32
	}{
		{"unset: signer's maximum", 0, nil, ReasonApproved, nil},
		{"kube-apiserver minimum", 0, int32p(600), ReasonApproved, int32p(600)},
		{"at the maximum", time.Hour, int32p(3600), ReasonApproved, int32p(3600)},
		{"one second over: clamped", time.Hour, int32p(3601), ReasonApproved, int32p(3600)},
		{"far over: clamped", 0, int32p(365 * 24 * 3600), ReasonApproved, int32p(24 * 3600)},
		{"zero", 0, int32p(0), ReasonInvalidRequest, nil},
		{"negative", 0, int32p(-1), ReasonInvalidRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := podCSR(csrPEM(t, dnsReq("web.shop.svc"), nil))
			csr.Spec.ExpirationSeconds = tt.seconds
			d := newTestPolicy(t, Options{MaxExpiration: tt.max}).Decide(csr, testFacts())
			if d.Reason != tt.wantReason {
				t.Fatalf("Reason = %s (%s), want %s", d.Reason, d.Message, tt.wantReason)
			}
			if d.Grant == nil {
				return
			}
			if got := d.Grant.ExpirationSeconds; (got == nil) != (tt.wantGrant == nil) || (got != nil && *got != *tt.wantGrant) {
				t.Errorf("Grant.ExpirationSeconds = %v, want %v", deref(got), deref(tt.wantGrant))
			}
		})
	}
}

func deref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}
