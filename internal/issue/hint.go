package issue

import (
	"fmt"
	"strings"
)

// PodSigner is the signer of the csr-agent controller, whose namespace the
// hints name.
const PodSigner = "csr-agent.io/pod"

// Hint tells a person what to look at about a request that has no answer
// yet: its CSR, its signer, and the pod that made it (namespace and name).
//
// Only the kubernetes.io signers wait for a person (kube-controller-manager
// signs them but approves nothing but kubelets' own requests), so only for
// them is `kubectl certificate approve` the next step. For csr-agent.io/pod
// a controller decides from the pod's facts, and a person approving would
// override its policy (for a pod-bound request the signer would still sign
// only the pod's own names): the next step is to see why the controller has
// not decided, which it says in Warning Events on the pod. Any other signer
// has its own approver.
func Hint(signer, csr, namespace, pod string) string {
	switch {
	case strings.HasPrefix(signer, "kubernetes.io/"):
		return "a person must approve it: kubectl certificate approve " + csr
	case signer == PodSigner:
		return fmt.Sprintf("the csr-agent controller decides it: is it running and ready (kubectl -n csr-agent-system get pods)? "+
			"why it has not decided: %s", warningEvents(namespace, pod))
	default:
		return fmt.Sprintf("is an approver and a signer for %q running? see kubectl describe csr %s and %s", signer, csr, warningEvents(namespace, pod))
	}
}

func warningEvents(namespace, pod string) string {
	if namespace == "" || pod == "" {
		return "the Warning Events of this pod"
	}
	return fmt.Sprintf("kubectl -n %s get events --field-selector type=Warning,involvedObject.name=%s", namespace, pod)
}

// hintFor is Hint for a request on the API server, whose labels name its pod.
func hintFor(signer, csr string, labels map[string]string) string {
	return Hint(signer, csr, labels[LabelPodNamespace], labels[LabelPodName])
}
