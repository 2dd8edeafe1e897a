package approve

import (
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestClassifyTellsWhoActs(t *testing.T) {
	cond := func(typ certificatesv1.RequestConditionType, status corev1.ConditionStatus) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: status}
	}
	const (
		approved = certificatesv1.CertificateApproved
		denied   = certificatesv1.CertificateDenied
		failed   = certificatesv1.CertificateFailed
		yes      = corev1.ConditionTrue
		no       = corev1.ConditionFalse
	)
	tests := []struct {
		name   string
		signer string
		conds  []certificatesv1.CertificateSigningRequestCondition
		cert   []byte
		want   State
	}{
		{"another signer", "kubernetes.io/kubelet-serving", nil, nil, StateIgnored},
		{"another signer, approved", "example.com/x", []certificatesv1.CertificateSigningRequestCondition{cond(approved, yes)}, nil, StateIgnored},
		{"new", SignerName, nil, nil, StatePending},
		{"approved", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(approved, yes)}, nil, StateApproved},
		{"approved, status not True", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(approved, no)}, nil, StatePending},
		{"approved and issued", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(approved, yes)}, []byte("pem"), StateDone},
		{"approved and failed", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(approved, yes), cond(failed, yes)}, nil, StateDone},
		{"denied", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(denied, yes)}, nil, StateDone},
		{"denied with unknown status", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(denied, corev1.ConditionUnknown)}, nil, StateDone},
		{"approved and denied", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(approved, yes), cond(denied, yes)}, nil, StateDone},
		{"failed explicitly False", SignerName, []certificatesv1.CertificateSigningRequestCondition{cond(approved, yes), cond(failed, no)}, nil, StateApproved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{
				Spec:   certificatesv1.CertificateSigningRequestSpec{SignerName: tt.signer},
				Status: certificatesv1.CertificateSigningRequestStatus{Conditions: tt.conds, Certificate: tt.cert},
			}
			if got := Classify(csr); got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
	if got := Classify(nil); got != StateIgnored {
		t.Errorf("Classify(nil) = %s, want %s", got, StateIgnored)
	}
}
