package approve

import (
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

// State is where a CSR stands for csr-agent's controller.
type State int

const (
	// StateIgnored: another signer's CSR. Neither approve nor deny it: other
	// approvers may be waiting on it.
	StateIgnored State = iota
	// StatePending: neither approved nor denied; the approver decides.
	StatePending
	// StateApproved: approved, not failed, no certificate yet; the signer
	// signs.
	StateApproved
	// StateDone: denied, failed or issued. Approval and denial are final in
	// the certificates API, so nothing is left to do.
	StateDone
)

func (s State) String() string {
	switch s {
	case StateIgnored:
		return "Ignored"
	case StatePending:
		return "Pending"
	case StateApproved:
		return "Approved"
	case StateDone:
		return "Done"
	}
	return "Unknown"
}

// Classify tells which part of the controller, if any, acts on csr, a CSR
// for the policy's signer name.
func (p *Policy) Classify(csr *certificatesv1.CertificateSigningRequest) State {
	return classify(csr, p.opts.SignerName)
}

// Classify tells which part of the controller, if any, acts on csr, for the
// default SignerName.
//
// kube-apiserver allows only status True on Approved and Denied, and forbids
// both on one CSR. Should either rule ever not hold, Classify errs towards
// leaving the CSR alone: Denied and Failed count unless explicitly False,
// Approved counts only when True, and Denied wins over Approved.
func Classify(csr *certificatesv1.CertificateSigningRequest) State {
	return classify(csr, SignerName)
}

func classify(csr *certificatesv1.CertificateSigningRequest, signerName string) State {
	if csr == nil || csr.Spec.SignerName != signerName {
		return StateIgnored
	}
	var approved, denied, failed bool
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved:
			approved = approved || c.Status == corev1.ConditionTrue
		case certificatesv1.CertificateDenied:
			denied = denied || c.Status != corev1.ConditionFalse
		case certificatesv1.CertificateFailed:
			failed = failed || c.Status != corev1.ConditionFalse
		}
	}
	switch {
	case denied || failed || len(csr.Status.Certificate) > 0:
		return StateDone
	case approved:
		return StateApproved
	}
	return StatePending
}
