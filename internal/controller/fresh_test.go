package controller_test

import (
	"context"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/csr-agent/csr-agent/internal/approve"
	"github.com/csr-agent/csr-agent/internal/controller"
	"github.com/csr-agent/csr-agent/internal/testenv"
)

// TestDecidesFromTheStateAtDecisionTime changes the pod or its Service after
// the controller has read its caches for a request and before it decides:
// the moment a decision from the caches alone would approve. Each change
// must be seen and the request denied.
func TestDecidesFromTheStateAtDecisionTime(t *testing.T) {
	s := newSetup(t)
	var mu sync.Mutex
	actions := map[string]func(){}
	in := s.startWith(t, startOptions{createCA: true}, func(c *controller.Controller) {
		controller.SetAfterCachedFacts(c, func(csr *certificatesv1.CertificateSigningRequest) {
			mu.Lock()
			act := actions[csr.Name]
			delete(actions, csr.Name)
			mu.Unlock()
			if act != nil {
				act()
			}
		})
	})
	waitReady(t, in, true)
	tests := []struct {
		name   string
		change func(t *testing.T, env *testenv.Env, pod *testenv.Pod)
		want   string
	}{
		{"pod relabelled out of the Service", func(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
			patchPod(t, env, pod, `{"metadata":{"labels":{"app":"other"}}}`)
		}, approve.ReasonDNSNameNotAllowed},
		{"Service no longer selecting the pod", func(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
			svc := must(env.Client.CoreV1().Services(pod.Namespace).Get(context.Background(), "web", metav1.GetOptions{}))
			svc.Spec.Selector = map[string]string{"app": "db"}
			must(env.Client.CoreV1().Services(pod.Namespace).Update(context.Background(), svc, metav1.UpdateOptions{}))
		}, approve.ReasonDNSNameNotAllowed},
		{"pod re-created under the same name", func(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
			pods := env.Client.CoreV1().Pods(pod.Namespace)
			if err := pods.Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
				t.Error(err)
			}
			again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, Labels: pod.Object.Labels}, Spec: pod.Object.Spec}
			must(pods.Create(context.Background(), again, metav1.CreateOptions{}))
		}, approve.ReasonPodUIDMismatch},
		{"pod being deleted", func(t *testing.T, env *testenv.Env, pod *testenv.Pod) {
			patchPod(t, env, pod, `{"metadata":{"finalizers":["csr-agent.io/test"]}}`)
			t.Cleanup(func() { patchPod(t, env, pod, `{"metadata":{"finalizers":null}}`) })
			if err := env.Client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}, approve.ReasonPodTerminating},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := s.env.NewPod(t, testenv.PodOptions{Labels: web})
			createService(t, s.env, pod.Namespace, service{name: "web"}, web)
			waitCached(t, in.c, pod)
			name := "fresh-" + string(rune('a'+i)) + "-" + pod.UID[:8]
			mu.Lock()
			actions[name] = func() { tt.change(t, s.env, pod) }
			mu.Unlock()
			r := dns("web." + pod.Namespace + ".svc")
			createNamedCSR(t, must(kubernetes.NewForConfig(pod.Config)), s.signer, name, r)
			csr := waitFinished(t, s.env.Client, name)
			if got, _ := outcome(csr); got != "Denied:"+tt.want {
				t.Errorf("outcome %s, want Denied:%s (conditions %+v)", got, tt.want, csr.Status.Conditions)
			}
			mu.Lock()
			defer mu.Unlock()
			if _, left := actions[name]; left {
				t.Error("the change never ran: the decision did not come through the caches first")
			}
		})
	}
}

// waitCached waits until the controller's caches hold the pod and its
// Service "web", so that a decision reads them from there first.
func waitCached(t *testing.T, c *controller.Controller, pod *testenv.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return controller.Caches(c, pod.Namespace, pod.Name, "web", pod.Object.Labels), nil
	})
	if err != nil {
		t.Fatalf("the controller's caches never showed pod %s/%s and its Service: %v", pod.Namespace, pod.Name, err)
	}
}

func patchPod(t *testing.T, env *testenv.Env, pod *testenv.Pod, patch string) {
	t.Helper()
	_, err := env.Client.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Errorf("patching pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// createNamedCSR creates the request under a name chosen by the test.
func createNamedCSR(t *testing.T, client kubernetes.Interface, signer, name string, r request) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	usages := r.usages
	if usages == nil {
		usages = serverUsages
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: r.pem(t), SignerName: signer, Usages: usages, ExpirationSeconds: r.exp},
	}
	out, err := client.CertificatesV1().CertificateSigningRequests().Create(t.Context(), csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating CSR %s: %v", name, err)
	}
	return out
}
