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

// publishTrustBundle makes the ClusterTrustBundle hold the anchors
// sign.PlanBundle decides from ca, the CA still in use, the bundle
// published so far, the retirement marker and the anchor state persisted
// on the bundle: during a CA rotation clients trust the leaves of both CAs,
// and an old anchor leaves once its last leaf has expired or the operator
// retires it. It writes only when the content or the state changes. The
// bundle is linked to the signer name, so pods can mount it with a
// clusterTrustBundle projected volume and the agent finds it by signer name.
func (c *Controller) publishTrustBundle(ctx context.Context, ca *sign.CA) (*sign.BundlePlan, error) {
	logger := klog.FromContext(ctx)
	ctbs := c.opts.Client.CertificatesV1().ClusterTrustBundles()
	name := c.opts.TrustBundleName
	cur, err := ctbs.Get(ctx, name, metav1.GetOptions{})
	exists := err == nil
	switch {
	case apierrors.IsNotFound(err):
		// Recreated with the marker and state last seen: deleting the bundle
		// must not publish retired anchors again (keptAnnotations).
		cur = &certificatesv1.ClusterTrustBundle{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: c.kept.recall()},
			Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: c.signer},
		}
		if len(cur.Annotations) > 0 {
			logger.Info("Re-creating the deleted trust bundle with its retirement marker and anchor state", "clusterTrustBundle", name)
		}
	case err != nil:
		return nil, fmt.Errorf("reading ClusterTrustBundle %s: %w", name, err)
	}
	in := c.bundleInput(ctx, cur, ca)
	plan, err := sign.PlanBundle(in)
	if errors.Is(err, sign.ErrInvalidBundle) && len(in.Published) > 0 {
		// Whatever was put in the published bundle cannot be kept (not PEM,
		// not a CA); clients are better served by the CA alone than by no
		// update at all.
		logger.Error(err, "Replacing unusable trust bundle content", "clusterTrustBundle", name)
		in.Published = nil
		plan, err = sign.PlanBundle(in)
	}
	if err != nil {
		return nil, fmt.Errorf("building trust bundle: %w", err)
	}
	stateChanged, err := setAnchorState(cur, plan)
	if err != nil {
		return nil, err
	}
	if exists && !stateChanged && bytes.Equal(plan.PEM, []byte(cur.Spec.TrustBundle)) {
		c.reportPlan(ctx, cur, in, plan)
		return plan, nil
	}
	cur.Spec.TrustBundle = string(plan.PEM)
	if exists {
		cur, err = ctbs.Update(ctx, cur, metav1.UpdateOptions{})
	} else {
		cur, err = ctbs.Create(ctx, cur, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("writing ClusterTrustBundle %s: %w", name, err)
	}
	c.kept.remember(cur)
	logger.Info("Published trust bundle", "clusterTrustBundle", name, "signing", plan.Signing, "staged", plan.Staged, "retiring", plan.Retiring)
	c.reportPlan(ctx, cur, in, plan)
	return plan, nil
}
