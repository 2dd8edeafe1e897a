package approve

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// Object identifiers, RFC 5280 section 4.2.1 and RFC 4519.
var (
	oidSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidEKUServerAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidEKUClientAuth    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidCommonName       = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// AllowedUsages are the spec.usages a pod certificate may have, in the order
// a Grant lists them.
var AllowedUsages = []certificatesv1.KeyUsage{
	certificatesv1.UsageDigitalSignature,
	certificatesv1.UsageKeyEncipherment,
	certificatesv1.UsageServerAuth,
	certificatesv1.UsageClientAuth,
}

// request is a CSR whose content passed every check that needs no pod.
type request struct {
	csr               *x509.CertificateRequest
	usages            []certificatesv1.KeyUsage
	expirationSeconds *int32
}

func (p *Policy) parseRequest(csr *certificatesv1.CertificateSigningRequest) (*request, error) {
	req, err := parseCSR(csr.Spec.Request)
	if err != nil {
		return nil, err
	}
	// Key before signature: Go refuses to verify with very small RSA keys,
	// and such a request should read WeakKey, not SignatureInvalid.
	if err := checkKey(req); err != nil {
		return nil, err
	}
	if err := checkSignature(req); err != nil {
		return nil, err
	}
	usages, err := checkUsages(csr.Spec.Usages)
	if err != nil {
		return nil, err
	}
	if err := checkExtensions(req.Extensions, usages); err != nil {
		return nil, err
	}
	if err := checkSubject(req); err != nil {
		return nil, err
	}
	exp, err := p.checkExpiration(csr.Spec.ExpirationSeconds)
	if err != nil {
		return nil, err
	}
	return &request{csr: req, usages: usages, expirationSeconds: exp}, nil
}

// parseCSR accepts exactly one PEM block of type "CERTIFICATE REQUEST", the
// form kube-apiserver requires, with nothing after it.
func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, deny(ReasonInvalidRequest, "spec.request holds no PEM block")
	}
	if block.Type != "CERTIFICATE REQUEST" {
		return nil, deny(ReasonInvalidRequest, "spec.request holds a PEM block of type %q, want %q", block.Type, "CERTIFICATE REQUEST")
	}
	if len(block.Headers) != 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, deny(ReasonInvalidRequest, "spec.request holds PEM headers or data after the CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, deny(ReasonInvalidRequest, "parsing spec.request: %v", err)
	}
	return req, nil
}

// checkKey allows ECDSA P-256 and P-384, RSA 2048 to 8192 bits and Ed25519.
// P-521 is refused: it buys nothing for certificates that live a day, and TLS
// support is patchy (BoringSSL, hence Chrome, does not verify
// ecdsa_secp521r1_sha512; the Mozilla root policy allows only P-256 and
// P-384). RSA above 8192 bits is refused because verification cost grows
// with it; Go's crypto/tls rejects such peers for that reason.
func checkKey(req *x509.CertificateRequest) error {
	switch k := req.PublicKey.(type) {
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); {
		case bits < 2048:
			return deny(ReasonWeakKey, "RSA key of %d bits, want 2048 to 8192", bits)
		case bits > 8192:
			return deny(ReasonKeyTypeNotAllowed, "RSA key of %d bits, want 2048 to 8192", bits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
		case elliptic.P224():
			return deny(ReasonWeakKey, "ECDSA curve %s, want P-256 or P-384", k.Curve.Params().Name)
		default:
			return deny(ReasonKeyTypeNotAllowed, "ECDSA curve %s, want P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return deny(ReasonKeyTypeNotAllowed, "public key algorithm %s, want ECDSA P-256/P-384, RSA or Ed25519", req.PublicKeyAlgorithm)
	}
	return nil
}

// checkSignature is the proof of possession. SHA-1 and MD5 signatures are
// refused: x509.CertificateRequest.CheckSignature still accepts SHA-1.
func checkSignature(req *x509.CertificateRequest) error {
	switch req.SignatureAlgorithm {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512,
		x509.PureEd25519:
	default:
		return deny(ReasonSignatureInvalid, "signature algorithm %s not allowed", req.SignatureAlgorithm)
	}
	if err := req.CheckSignature(); err != nil {
		return deny(ReasonSignatureInvalid, "request signature does not verify with its own public key: %v", err)
	}
	return nil
}

// checkUsages allows AllowedUsages and requires server auth or client auth.
// Key encipherment is allowed for every key type; the signer grants it to RSA
// keys only (it means nothing for ECDSA or Ed25519 keys, which cannot
// encrypt), so agents need not know the rule.
func checkUsages(usages []certificatesv1.KeyUsage) ([]certificatesv1.KeyUsage, error) {
	for _, u := range usages {
		switch {
		case u == certificatesv1.UsageCertSign || u == certificatesv1.UsageCRLSign:
			return nil, deny(ReasonCARequested, "usage %q is for CAs", u)
		case !slices.Contains(AllowedUsages, u):
			return nil, deny(ReasonUsageNotAllowed, "usage %q not allowed (allowed: %q)", u, AllowedUsages)
		}
	}
	out := make([]certificatesv1.KeyUsage, 0, len(AllowedUsages))
	for _, u := range AllowedUsages {
		if slices.Contains(usages, u) {
			out = append(out, u)
		}
	}
	if !slices.Contains(out, certificatesv1.UsageServerAuth) && !slices.Contains(out, certificatesv1.UsageClientAuth) {
		return nil, deny(ReasonUsageNotAllowed, "usages %q include neither %q nor %q", usages, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth)
	}
	return out, nil
}

// checkExtensions allows only the extensions that describe a leaf
// certificate, each consistent with spec.usages; any other extension is
// refused, whether or not the signer would copy it (it copies none).
func checkExtensions(exts []pkix.Extension, usages []certificatesv1.KeyUsage) error {
	seen := map[string]bool{}
	for _, e := range exts {
		id := e.Id.String()
		if seen[id] {
			return deny(ReasonInvalidRequest, "extension %s requested twice", id)
		}
		seen[id] = true
		var err error
		switch {
		case e.Id.Equal(oidSubjectAltName):
			err = checkSANTypes(e.Value)
		case e.Id.Equal(oidKeyUsage):
			err = checkKeyUsage(e.Value, usages)
		case e.Id.Equal(oidExtKeyUsage):
			err = checkExtKeyUsage(e.Value, usages)
		case e.Id.Equal(oidBasicConstraints):
			err = checkBasicConstraints(e.Value)
		default:
			err = deny(ReasonExtensionNotAllowed, "extension %s not allowed", id)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// generalNameTypes names the GeneralName choices (RFC 5280 4.2.1.6). Go's
// parser silently skips all but email, DNS, URI and IP; they are refused here
// so nothing the policy did not look at passes.
var generalNameTypes = map[int]string{
	0: "otherName", 1: "rfc822Name", 2: "dNSName", 3: "x400Address", 4: "directoryName",
	5: "ediPartyName", 6: "uniformResourceIdentifier", 7: "iPAddress", 8: "registeredID",
}

func checkSANTypes(der []byte) error {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 ||
		seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return deny(ReasonInvalidRequest, "malformed subjectAltName extension")
	}
	for b := seq.Bytes; len(b) > 0; {
		var gn asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &gn); err != nil || gn.Class != asn1.ClassContextSpecific {
			return deny(ReasonInvalidRequest, "malformed subjectAltName extension")
		}
		switch stringLike := gn.Tag == 1 || gn.Tag == 2 || gn.Tag == 6 || gn.Tag == 7; {
		case stringLike && !gn.IsCompound:
			// Judged by value in authorizeNames.
		case stringLike:
			return deny(ReasonInvalidRequest, "malformed subjectAltName extension: constructed %s", generalNameTypes[gn.Tag])
		default:
			name, ok := generalNameTypes[gn.Tag]
			if !ok {
				name = "unknown"
			}
			return deny(ReasonExtensionNotAllowed, "subjectAltName of type %s not allowed", name)
		}
	}
	return nil
}

// keyUsageBits maps the RFC 5280 keyUsage bit positions the policy knows.
var keyUsageBits = map[int]certificatesv1.KeyUsage{
	0: certificatesv1.UsageDigitalSignature,
	1: certificatesv1.UsageContentCommitment,
	2: certificatesv1.UsageKeyEncipherment,
	3: certificatesv1.UsageDataEncipherment,
	4: certificatesv1.UsageKeyAgreement,
	5: certificatesv1.UsageCertSign,
	6: certificatesv1.UsageCRLSign,
	7: certificatesv1.UsageEncipherOnly,
	8: certificatesv1.UsageDecipherOnly,
}

func checkKeyUsage(der []byte, usages []certificatesv1.KeyUsage) error {
	var bits asn1.BitString
	if rest, err := asn1.Unmarshal(der, &bits); err != nil || len(rest) != 0 {
		return deny(ReasonInvalidRequest, "malformed keyUsage extension")
	}
	for i := range bits.BitLength {
		if bits.At(i) == 0 {
			continue
		}
		u, ok := keyUsageBits[i]
		switch {
		case u == certificatesv1.UsageCertSign || u == certificatesv1.UsageCRLSign:
			return deny(ReasonCARequested, "keyUsage extension asks for %q", u)
		case !ok || !slices.Contains(usages, u):
			return deny(ReasonUsageNotAllowed, "keyUsage extension bit %d (%q) is not in spec.usages %q", i, u, usages)
		}
	}
	return nil
}

func checkExtKeyUsage(der []byte, usages []certificatesv1.KeyUsage) error {
	var oids []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(der, &oids); err != nil || len(rest) != 0 {
		return deny(ReasonInvalidRequest, "malformed extendedKeyUsage extension")
	}
	for _, oid := range oids {
		switch {
		case oid.Equal(oidEKUServerAuth) && slices.Contains(usages, certificatesv1.UsageServerAuth):
		case oid.Equal(oidEKUClientAuth) && slices.Contains(usages, certificatesv1.UsageClientAuth):
		default:
			return deny(ReasonUsageNotAllowed, "extendedKeyUsage %s is not in spec.usages %q", oid, usages)
		}
	}
	return nil
}

func checkBasicConstraints(der []byte) error {
	var bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	if rest, err := asn1.Unmarshal(der, &bc); err != nil || len(rest) != 0 {
		return deny(ReasonInvalidRequest, "malformed basicConstraints extension")
	}
	if bc.IsCA {
		return deny(ReasonCARequested, "basicConstraints extension asks for cA=true")
	}
	return nil
}

// checkSubject allows a subject of at most one CN and nothing else. Subject
// fields carry authority elsewhere: were this CA ever trusted by
// kube-apiserver for client certificates, O would become groups (O=
// system:masters is cluster-admin) and CN the user name. The CN value itself
// is judged with the DNS names.
func checkSubject(req *x509.CertificateRequest) error {
	cns := 0
	for _, atv := range req.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			return deny(ReasonSubjectNotAllowed, "subject attribute %s=%v not allowed, only CN", attributeName(atv.Type), atv.Value)
		}
		if _, ok := atv.Value.(string); !ok {
			return deny(ReasonSubjectNotAllowed, "subject CN is not a string")
		}
		cns++
	}
	if cns > 1 {
		return deny(ReasonSubjectNotAllowed, "subject has %d CNs, at most one allowed", cns)
	}
	return nil
}

var attributeNames = map[string]string{
	"2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O",
	"2.5.4.11": "OU", "2.5.4.5": "SERIALNUMBER", "2.5.4.17": "POSTALCODE",
}

func attributeName(oid asn1.ObjectIdentifier) string {
	if n, ok := attributeNames[oid.String()]; ok {
		return n
	}
	return oid.String()
}

func (p *Policy) checkExpiration(seconds *int32) (*int32, error) {
	if seconds == nil {
		return nil, nil
	}
	if *seconds <= 0 {
		return nil, deny(ReasonInvalidRequest, "expirationSeconds %d is not positive", *seconds)
	}
	// Clamped, not denied: the CSR API lets a signer issue for less than
	// expirationSeconds asks, and the agent schedules its renewal from the
	// certificate it gets.
	v := *seconds
	if limit := int64(p.opts.MaxExpiration / time.Second); int64(v) > limit {
		v = int32(limit) // limit < v, so it fits
	}
	return &v, nil
}
