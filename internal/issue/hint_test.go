package issue

import (
	"strings"
	"testing"
)

func TestHintSuggestsApprovingOnlyForSignersThatNeedAPerson(t *testing.T) {
	const csr = "csr-agent-0f4e5b0c-1111-2222-3333-444455556666"
	for _, tc := range []struct {
		signer, namespace, pod string
		want, notWant          []string
	}{
		{
			signer: "kubernetes.io/kube-apiserver-client",
			want:   []string{"kubectl certificate approve " + csr},
		},
		{
			signer: "kubernetes.io/kubelet-serving",
			want:   []string{"kubectl certificate approve " + csr},
		},
		{
			signer: PodSigner, namespace: "shop", pod: "web-0",
			want:    []string{"kubectl -n csr-agent-system get pods", "kubectl -n shop get events --field-selector type=Warning,involvedObject.name=web-0"},
			notWant: []string{"approve " + csr},
		},
		{
			signer:  PodSigner,
			want:    []string{"kubectl -n csr-agent-system get pods", "the Warning Events of this pod"},
			notWant: []string{"approve " + csr},
		},
		{
			// A signer named like a kubernetes.io one is not one.
			signer: "kubernetes.io.example.com/pod", namespace: "shop", pod: "web-0",
			want:    []string{`"kubernetes.io.example.com/pod"`, "kubectl describe csr " + csr, "involvedObject.name=web-0"},
			notWant: []string{"approve " + csr},
		},
	} {
		t.Run(tc.signer, func(t *testing.T) {
			got := Hint(tc.signer, csr, tc.namespace, tc.pod)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Hint = %q, lacks %q", got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("Hint = %q, has %q", got, w)
				}
			}
		})
	}
}
