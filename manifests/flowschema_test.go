package manifests_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/csr-agent/csr-agent/internal/testenv"
)

// API Priority and Fairness names, in the headers of every response, the
// FlowSchema and priority level that admitted the request.
const (
	flowSchemaHeader    = "X-Kubernetes-PF-FlowSchema-UID"
	priorityLevelHeader = "X-Kubernetes-PF-PriorityLevel-UID"
)

// During a rollout, every pod's request is a flow of its own in
// workload-low; the controller that answers them must not queue there.
func TestControllerRequestsAreAdmittedAtWorkloadHighAndPodsAreNot(t *testing.T) {
	env := testenv.Shared(t)
	install(t, env)
	ctx := t.Context()
	fs, err := env.Client.FlowcontrolV1().FlowSchemas().Get(ctx, "csr-agent-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	high, err := env.Client.FlowcontrolV1().PriorityLevelConfigurations().Get(ctx, fs.Spec.PriorityLevelConfiguration.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the FlowSchema's priority level: %v", err)
	}
	if high.Name != "workload-high" {
		t.Errorf("priority level %q, want workload-high", high.Name)
	}
	controller := env.User(t, "system:serviceaccount:csr-agent-system:csr-agent-controller",
		"system:serviceaccounts", "system:serviceaccounts:csr-agent-system")
	pod := env.User(t, "system:serviceaccount:my-app:my-app", "system:serviceaccounts", "system:serviceaccounts:my-app")

	// The API server's APF configuration follows FlowSchemas through an
	// informer: wait until it classifies by the new one.
	var got http.Header
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		h, err := responseHeaders(ctx, controller)
		if err != nil {
			return false, err
		}
		got = h
		return got.Get(flowSchemaHeader) == string(fs.UID), nil
	})
	if err != nil {
		t.Fatalf("controller's request admitted by FlowSchema %q, want csr-agent-controller (%s)", got.Get(flowSchemaHeader), fs.UID)
	}
	if pl := got.Get(priorityLevelHeader); pl != string(high.UID) {
		t.Errorf("controller's request admitted at priority level %q, want %s (%s)", pl, high.Name, high.UID)
	}
	h, err := responseHeaders(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if h.Get(flowSchemaHeader) == string(fs.UID) || h.Get(priorityLevelHeader) == string(high.UID) {
		t.Errorf("a pod's request was admitted by the controller's FlowSchema or priority level (%v)", h)
	}
}

// responseHeaders makes one request as cfg's user and returns the headers
// of the answer, whatever its status (authorization comes after APF).
func responseHeaders(ctx context.Context, cfg *rest.Config) (http.Header, error) {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/apis/certificates.k8s.io/v1/certificatesigningrequests?limit=1", nil)
	if err != nil {
		return nil, err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return resp.Header, nil
}
