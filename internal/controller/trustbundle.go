package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/csr-agent/csr-agent/internal/sign"
)

// publishTrustBundle makes the ClusterTrustBundle hold ca's trust anchors,
// keeping the anchors already published until they expire (sign.Bundle), so
// that during a CA rotation clients trust the leaves of both CAs. It writes
// only when the content changes. The bundle is linked to the signer name, so
// pods can mount it with a clusterTrustBundle projected volume and the agent
// finds it by signer name.
func (c *Controller) publishTrustBundle(ctx context.Context, ca *sign.CA) error {
	logger := klog.FromContext(ctx)
	ctbs := c.opts.Client.CertificatesV1().ClusterTrustBundles()
	name := c.opts.TrustBundleName
	cur, err := ctbs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		bundle, err := sign.Bundle(c.now(), nil, ca.TrustBundle())
		if err != nil {
			return fmt.Errorf("building trust bundle: %w", err)
		}
		ctb := &certificatesv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: c.signer, TrustBundle: string(bundle)},
		}
		if _, err := ctbs.Create(ctx, ctb, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating ClusterTrustBundle %s: %w", name, err)
		}
		logger.Info("Published trust bundle", "clusterTrustBundle", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading ClusterTrustBundle %s: %w", name, err)
	}
	bundle, err := sign.Bundle(c.now(), []byte(cur.Spec.TrustBundle), ca.TrustBundle())
	if errors.Is(err, sign.ErrInvalidBundle) {
		// Whatever was put in the published bundle cannot be kept (not PEM,
		// not a CA); clients are better served by the CA alone than by no
		// update at all.
		logger.Error(err, "Replacing unusable trust bundle content", "clusterTrustBundle", name)
		bundle, err = sign.Bundle(c.now(), nil, ca.TrustBundle())
	}
	if err != nil {
		return fmt.Errorf("building trust bundle: %w", err)
	}
	if bytes.Equal(bundle, []byte(cur.Spec.TrustBundle)) {
		return nil
	}
	cur.Spec.TrustBundle = string(bundle)
	if _, err := ctbs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating ClusterTrustBundle %s: %w", name, err)
	}
	logger.Info("Published trust bundle", "clusterTrustBundle", name)
	return nil
}
