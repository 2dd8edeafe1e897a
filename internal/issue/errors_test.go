package issue

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRequestErrorTellsWhatHappenedAndWhatToDo(t *testing.T) {
	const csr, signer = "csr-agent-shop-web-0-0123456789", "example.com/pods"
	for _, tc := range []struct {
		name    string
		err     *RequestError
		want    []string
		notWant []string
	}{
		{
			name:    "timeout of another signer names the signer, not the approve command",
			err:     &RequestError{Err: ErrTimeout, CSR: csr, Signer: signer},
			want:    []string{ErrTimeout.Error(), "csr " + csr, `"` + signer + `"`, "kubectl describe csr " + csr},
			notWant: []string{"kubectl certificate approve"},
		},
		{
			name: "timeout of a kubernetes.io signer names the approve command",
			err:  &RequestError{Err: ErrTimeout, CSR: csr, Signer: "kubernetes.io/kube-apiserver-client"},
			want: []string{ErrTimeout.Error(), "kubectl certificate approve " + csr},
		},
		{
			name: "timeout of csr-agent.io/pod points at the controller and the pod's Warning Events",
			err: &RequestError{Err: ErrTimeout, CSR: csr, Signer: PodSigner,
				Hint: Hint(PodSigner, csr, "shop", "web-0")},
			want:    []string{"kubectl -n csr-agent-system get pods", "kubectl -n shop get events --field-selector type=Warning,involvedObject.name=web-0"},
			notWant: []string{"kubectl certificate approve"},
		},
		{
			name:    "denied names reason and message",
			err:     &RequestError{Err: ErrDenied, CSR: csr, Signer: signer, Reason: "PolicyDenied", Message: "pod has no label app"},
			want:    []string{ErrDenied.Error(), csr, "PolicyDenied", "pod has no label app", "kubectl describe csr " + csr},
			notWant: []string{"kubectl certificate approve"},
		},
		{
			name:    "failed names reason and message",
			err:     &RequestError{Err: ErrFailed, CSR: csr, Reason: "SignerError", Message: "CA expired"},
			want:    []string{ErrFailed.Error(), csr, "SignerError: CA expired"},
			notWant: []string{"kubectl"},
		},
		{
			name:    "deleted without a condition has no empty reason",
			err:     &RequestError{Err: ErrDeleted, CSR: csr},
			want:    []string{ErrDeleted.Error(), csr},
			notWant: []string{": :", "kubectl"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("message %q has %q", msg, w)
				}
			}
		})
	}
}

func TestRequestErrorMatchesOnlyItsOwnSentinel(t *testing.T) {
	sentinels := []error{ErrDenied, ErrFailed, ErrDeleted, ErrTimeout}
	for _, sentinel := range sentinels {
		t.Run(sentinel.Error(), func(t *testing.T) {
			// As the agent returns it: wrapped by a caller.
			err := fmt.Errorf("obtaining certificate: %w", &RequestError{Err: sentinel, CSR: "x"})
			for _, other := range sentinels {
				if got, want := errors.Is(err, other), errors.Is(other, sentinel); got != want {
					t.Errorf("errors.Is(err, %q) = %v, want %v", other, got, want)
				}
			}
			var reqErr *RequestError
			if !errors.As(err, &reqErr) || reqErr.CSR != "x" {
				t.Errorf("errors.As did not find the *RequestError")
			}
		})
	}
}
