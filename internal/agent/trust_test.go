package agent

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/csr-agent/csr-agent/internal/config"
	certificatesv1 "github.com/csr-agent/csr-agent/internal/kube/certv1"
	"github.com/csr-agent/csr-agent/internal/pki/pkitest"

	"github.com/csr-agent/csr-agent/internal/issue"
)

func TestTrustBundleTakesTheFirstSourceThatHasOne(t *testing.T) {
	fileCA, apiCA, annotationCA := pkitest.NewCA(t).PEM(), pkitest.NewCA(t).PEM(), pkitest.NewCA(t).PEM()
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "certificates.k8s.io", Resource: "clustertrustbundles"}, "", errors.New("no RBAC"))
	const (
		none = iota
		good
		missing
		notPEM
	)
	for _, tc := range []struct {
		name       string
		caFile     int
		bundle     []byte
		bundleErr  error
		annotation *string
		want       []byte
		// wantAPI tells whether the ClusterTrustBundles were read.
		wantAPI bool
		logPart string
	}{
		{name: "CA_FILE wins", caFile: good, bundle: apiCA, annotation: ptr(base64.StdEncoding.EncodeToString(annotationCA)), want: fileCA},
		{name: "missing CA_FILE falls through to the API", caFile: missing, bundle: apiCA, want: apiCA, wantAPI: true, logPart: "CA_FILE unusable"},
		{name: "CA_FILE without a certificate falls through", caFile: notPEM, bundle: apiCA, want: apiCA, wantAPI: true, logPart: "no PEM certificate in file"},
		{name: "the API's bundle comes before the annotation", bundle: apiCA, annotation: ptr(string(annotationCA)), want: apiCA, wantAPI: true},
		{name: "no bundle: base64 annotation", annotation: ptr(base64.StdEncoding.EncodeToString(annotationCA)), want: annotationCA, wantAPI: true},
		{name: "no bundle: raw PEM annotation", annotation: ptr(string(annotationCA)), want: annotationCA, wantAPI: true},
		{name: "bundle without a certificate: annotation", bundle: []byte("\n"), annotation: ptr(string(annotationCA)), want: annotationCA, wantAPI: true},
		{name: "forbidden falls through", bundleErr: forbidden, annotation: ptr(string(annotationCA)), want: annotationCA, wantAPI: true, logPart: "Not allowed to read ClusterTrustBundles"},
		{name: "other API error falls through", bundleErr: errors.New("connection refused"), annotation: ptr(string(annotationCA)), want: annotationCA, wantAPI: true, logPart: "connection refused"},
		{name: "garbage annotation", annotation: ptr("bm90IGEgY2VydA=="), wantAPI: true, logPart: "No CA bundle found"},
		{name: "nothing anywhere", wantAPI: true, logPart: "No CA bundle found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{bundle: tc.bundle, bundleErr: tc.bundleErr}
			a := newTestAgent(t, api, nil)
			dir := t.TempDir()
			switch tc.caFile {
			case good:
				a.cfg.CAFile = writeFile(t, dir, fileCA)
			case missing:
				a.cfg.CAFile = filepath.Join(dir, "absent.crt")
			case notPEM:
				a.cfg.CAFile = writeFile(t, dir, []byte("just text\n"))
			}
			res := &issue.Result{CSR: &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "csr"}}}
			if tc.annotation != nil {
				res.CSR.Annotations = map[string]string{CertManagerCAAnnotation: *tc.annotation}
			}
			var logs logCapture
			got := a.trustBundle(logs.context(t), res, a.CABundle(logs.context(t)))
			if !bytes.Equal(got, tc.want) {
				t.Errorf("trustBundle =\n%s\nwant\n%s", got, tc.want)
			}
			if read := api.bundleCalls > 0; read != tc.wantAPI {
				t.Errorf("ClusterTrustBundles read = %v, want %v", read, tc.wantAPI)
			}
			if tc.logPart != "" && !logs.has(tc.logPart) {
				t.Errorf("no log line says %q: %q", tc.logPart, logs.lines)
			}
		})
	}
}

func writeFile(t *testing.T, dir string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func ptr(s string) *string { return &s }

func TestACABundleThatDoesNotVerifyTheCertificateOrWasNotReadIsReadAgainConsistently(t *testing.T) {
	oldCA, newCA := pkitest.NewCA(t), pkitest.NewCA(t)
	key := newKey(t, config.KeyECDSAP256)
	res := &issue.Result{
		CSR:      &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "csr"}},
		ChainPEM: newCA.Issue(t, key.Public(), pkitest.Leaf{CN: "web"}),
	}
	rotated := append(oldCA.PEM(), newCA.PEM()...)
	for _, tc := range []struct {
		name        string
		cached      []byte
		cachedErr   error
		want        []byte
		wantReReads int
	}{
		{"cache behind a CA rotation: read again", oldCA.PEM(), nil, rotated, 1},
		{"cache current: no second read", rotated, nil, rotated, 0},
		{"first read failed (API server away): read again", nil, errors.New("connection refused"), rotated, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{bundle: rotated, cachedBundle: tc.cached, cachedErr: tc.cachedErr}
			a := newTestAgent(t, api, nil)
			var logs logCapture
			got := a.caFor(logs.context(t), res, a.caBundle(logs.context(t), true))
			if !bytes.Equal(got, tc.want) {
				t.Errorf("ca.crt =\n%s\nwant\n%s", got, tc.want)
			}
			if reReads := api.bundleCalls - api.cachedCalls; reReads != tc.wantReReads {
				t.Errorf("%d consistent reads, want %d", reReads, tc.wantReReads)
			}
		})
	}
}
