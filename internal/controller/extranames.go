package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csr-agent/csr-agent/internal/approve"
)

// extraNames reads the names an approver granted csr in
// approve.AnnotationExtraNames. The annotation is honoured only while the
// ValidatingAdmissionPolicy that lets nobody but approvers write it is in
// force: the API server records who created a CSR, not who annotated it,
// so without that policy the requesting pod itself could have written it.
// Both objects are read live, as rarely as the annotation occurs.
func (c *Controller) extraNames(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (approve.ExtraNames, error) {
	value, ok := csr.Annotations[approve.AnnotationExtraNames]
	if !ok {
		return approve.ExtraNames{}, nil
	}
	why, err := c.extraNamesPolicyMissing(ctx, csr.CreationTimestamp.Time)
	if err != nil {
		return approve.ExtraNames{}, err
	}
	if why != "" {
		return approve.ExtraNames{Ignored: "annotation ignored: " + why}, nil
	}
	extra, err := approve.ParseExtraNames(value)
	if err != nil {
		return approve.ExtraNames{Ignored: "annotation ignored: " + err.Error()}, nil
	}
	return extra, nil
}

// extraNamesPolicyWarmup is how long after its creation the admission
// policy is taken to be enforced: the API server applies a new policy once
// its informers have seen it, within a second or two.
const extraNamesPolicyWarmup = 5 * time.Second

// extraNamesPolicyMissing says why the admission policy guarding the
// annotation was not in force for a CSR created at created, or "" when it
// was. The policy must exist now and have existed when the CSR was created:
// an annotation written before the policy was installed (the CSR is older)
// was written by anyone at all.
func (c *Controller) extraNamesPolicyMissing(ctx context.Context, created time.Time) (string, error) {
	const name = approve.ExtraNamesPolicy
	admission := c.opts.Client.AdmissionregistrationV1()
	policy, err := admission.ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("ValidatingAdmissionPolicy %s is not installed", name), nil
	case err != nil:
		return "", fmt.Errorf("reading ValidatingAdmissionPolicy %s: %w", name, err)
	}
	if fp := policy.Spec.FailurePolicy; fp != nil && *fp != admissionregistrationv1.Fail {
		return fmt.Sprintf("ValidatingAdmissionPolicy %s has failurePolicy %s, not Fail", name, *fp), nil
	}
	binding, err := admission.ValidatingAdmissionPolicyBindings().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("ValidatingAdmissionPolicyBinding %s is not installed", name), nil
	case err != nil:
		return "", fmt.Errorf("reading ValidatingAdmissionPolicyBinding %s: %w", name, err)
	}
	if binding.Spec.PolicyName != name || !slices.Contains(binding.Spec.ValidationActions, admissionregistrationv1.Deny) ||
		binding.Spec.MatchResources != nil || binding.Spec.ParamRef != nil {
		return fmt.Sprintf("ValidatingAdmissionPolicyBinding %s does not bind policy %s to every request with validationActions Deny", name, name), nil
	}
	since := policy.CreationTimestamp.Time
	if b := binding.CreationTimestamp.Time; b.After(since) {
		since = b
	}
	if since = since.Add(extraNamesPolicyWarmup); !created.After(since) {
		return fmt.Sprintf("the request was created at %s, before ValidatingAdmissionPolicy %s was in force (%s)",
			created.UTC().Format(time.RFC3339), name, since.UTC().Format(time.RFC3339)), nil
	}
	return "", nil
}
