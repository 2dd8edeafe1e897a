package controller_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// TestDeniesRequestsNotMadeByTheirPod covers requesters other than a pod's
// own bound token: a user, a service-account token bound to nothing, and an
// identity naming a pod that runs as another service account.
func TestDeniesRequestsNotMadeByTheirPod(t *testing.T) {
	s := newSetup(t)
	s.start(t, startOptions{createCA: true})
	env := s.env
	tests := []struct {
		name   string
		client func(t *testing.T, pod *testenv.Pod) *rest.Config
		want   string
	}{
		{"plain user", func(*testing.T, *testenv.Pod) *rest.Config { return env.Config }, approve.ReasonNotPodBound},
		{"service-account token bound to no pod", func(t *testing.T, pod *testenv.Pod) *rest.Config {
			req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}
			tok, err := env.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(t.Context(), pod.ServiceAccount, req, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return &rest.Config{Host: env.Config.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: env.ServerCAPEM}}
		}, approve.ReasonNotPodBound},
		{"pod runs as another service account", func(t *testing.T, pod *testenv.Pod) *rest.Config {
			// The API server refuses to bind a token to a pod of another
			// service account, so an identity this wrong can only come from
			// impersonation, which is exactly the kind of forgery to refuse.
			cfg := rest.CopyConfig(env.Config)
			cfg.Impersonate = rest.ImpersonationConfig{
				UserName: "system:serviceaccount:" + pod.Namespace + ":intruder",
				Groups:   []string{"system:serviceaccounts", "system:authenticated"},
				Extra:    map[string][]string{approve.ExtraPodName: {pod.Name}, approve.ExtraPodUID: {pod.UID}},
			}
			return cfg
		}, approve.ReasonServiceAccountMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pod := env.NewPod(t, testenv.PodOptions{Labels: web})
			createService(t, env, pod.Namespace, service{name: "web"}, web)
			client := must(kubernetes.NewForConfig(tt.client(t, pod)))
			csr := mustCreateCSR(t, client, s.signer, dns("web."+pod.Namespace+".svc"))
			csr = waitFinished(t, env.Client, csr.Name)
			if got, _ := outcome(csr); got != "Denied:"+tt.want {
				t.Fatalf("outcome %s, want Denied:%s (%+v)", got, tt.want, csr.Status.Conditions)
			}
		})
	}
}

// TestAPIServerRefusesARequestWhoseSignatureDoesNotVerify: a request not
// signed by its own key never reaches the controller; the policy checks the
// signature again all the same (approve's unit tests).
func TestAPIServerRefusesARequestWhoseSignatureDoesNotVerify(t *testing.T) {
	s := newSetup(t)
	pod := s.env.NewPod(t, testenv.PodOptions{})
	good := dns("a.example.com").pem(t)
	block, _ := pem.Decode(good)
	der := block.Bytes
	der[len(der)-1] ^= 0xff // the signature is the last field
	if _, err := x509.ParseCertificateRequest(der); err != nil {
		t.Fatalf("tampered request no longer parses: %v", err)
	}
	r := request{raw: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}
	_, err := createCSR(t, must(kubernetes.NewForConfig(pod.Config)), s.signer, r)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("creating a CSR with a broken signature: %v, want Invalid", err)
	}
}

// waitForEvent waits for a Warning Event about pod with the given reason,
// from the controller.
func waitForEvent(t *testing.T, env *testenv.Env, pod *testenv.Pod, reason string) {
	t.Helper()
	sel := fields.Set{"regarding.name": pod.Name, "regarding.kind": "Pod", "reason": reason}.AsSelector().String()
	var last []eventsv1.Event
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := env.Client.EventsV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, err
		}
		last = list.Items
		for _, e := range list.Items {
			if e.Type == "Warning" && e.ReportingController == controller.ReportingController && e.Note != "" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no Warning Event %s on pod %s/%s: %v (found %+v)", reason, pod.Namespace, pod.Name, err, last)
	}
}
