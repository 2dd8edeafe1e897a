package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/issue"
	"github.com/csr-agent/csr-agent/internal/pki"
)

// CertManagerCAAnnotation is where cert-manager puts the CA of a CSR it signs.
const CertManagerCAAnnotation = "experimental.cert-manager.io/ca"

// trustBundle finds the CA bundle for ca.crt, first found wins:
//  1. CA_FILE, a mounted file (e.g. a ConfigMap or a projected
//     clusterTrustBundle volume): what the operator chose explicitly;
//  2. the ClusterTrustBundles published for the signer name (how the
//     csr-agent controller publishes its CA, and follows its rotation);
//  3. the experimental.cert-manager.io/ca annotation on the CSR, when
//     cert-manager signed it.
//
// fetched is what caBundle returned (sources 1 and 2). With none of them,
// ca.crt is not written and a warning says why.
func (a *Agent) trustBundle(ctx context.Context, res *issue.Result, fetched []byte) []byte {
	if fetched != nil {
		return fetched
	}
	if v, ok := res.CSR.Annotations[CertManagerCAAnnotation]; ok {
		if data, err := base64.StdEncoding.DecodeString(v); err == nil && isPEMCerts(data) {
			return data
		}
		if isPEMCerts([]byte(v)) {
			return []byte(v)
		}
	}
	klog.FromContext(ctx).Info("No CA bundle found for the signer; ca.crt is not written", "signer", a.cfg.SignerName)
	return nil
}

// caFor returns the CA bundle for ca.crt of res, given fetched, read from
// the API server's cache while the signer worked. If fetched does not
// verify the issued chain, the cache may not have caught up with a CA
// rotation (a signer publishes the new CA before it signs with it), so the
// bundle is read once more, consistently. So it is when that read found
// nothing: it may have failed while the API server was away (a pod that
// waits out an API server restart would otherwise start without ca.crt).
func (a *Agent) caFor(ctx context.Context, res *issue.Result, fetched []byte) []byte {
	switch {
	case fetched == nil:
		klog.FromContext(ctx).V(1).Info("No CA bundle read while waiting, reading it again")
		fetched = a.CABundle(ctx)
	case !pki.Verifies(fetched, res.ChainPEM):
		klog.FromContext(ctx).V(1).Info("CA bundle does not verify the issued certificate, reading it again")
		fetched = a.CABundle(ctx)
	}
	return a.trustBundle(ctx, res, fetched)
}

// CABundle returns the CA bundle from the sources that can change while the
// pod runs, CA_FILE and then the signer's ClusterTrustBundles (a consistent
// read), or nil: what the sidecar re-reads when told that one of them
// changed.
func (a *Agent) CABundle(ctx context.Context) []byte { return a.caBundle(ctx, false) }

func (a *Agent) caBundle(ctx context.Context, fromCache bool) []byte {
	logger := klog.FromContext(ctx)
	if a.cfg.CAFile != "" {
		data, err := os.ReadFile(a.cfg.CAFile)
		if err == nil && isPEMCerts(data) {
			return data
		}
		logger.Info("CA_FILE unusable, trying the signer's trust bundle", "file", a.cfg.CAFile, "error", errString(err, "no PEM certificate in file"))
	}
	bundle, err := a.api.TrustBundle(ctx, a.cfg.SignerName, fromCache)
	switch {
	case err == nil && isPEMCerts(bundle):
		return bundle
	case apierrors.IsForbidden(err):
		logger.Info("Not allowed to read ClusterTrustBundles; grant list on clustertrustbundles or set CA_FILE", "signer", a.cfg.SignerName)
	case err != nil:
		logger.Error(err, "Reading ClusterTrustBundles", "signer", a.cfg.SignerName)
	}
	return nil
}

func isPEMCerts(data []byte) bool {
	return bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----"))
}

func errString(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}
