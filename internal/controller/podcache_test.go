package controller

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	"github.com/csr-agent/csr-agent/internal/approve"
)

func mustPodFacts(t *testing.T, pod *corev1.Pod) *cachedPod {
	t.Helper()
	obj, err := podFacts(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*cachedPod)
}

// fullPod sets every field approve.PodFrom reads, each to a value other than
// its zero, and a lot the policy does not read.
func fullPod() *corev1.Pod {
	deleting := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "web-0", UID: "uid-1", Labels: map[string]string{"app": "web", "tier": "front"},
			DeletionTimestamp: &deleting,
			Annotations:       map[string]string{"big": strings.Repeat("x", 4096)},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
			OwnerReferences:   []metav1.OwnerReference{{Kind: "StatefulSet", Name: "web"}},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web", NodeName: "node-1", HostNetwork: true, Hostname: "web-0", Subdomain: "web",
			Containers: []corev1.Container{{Name: "app", Image: "nginx"}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.1.2.3", PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}, {IP: "fd00::3"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
}

// Everything the policy reads of a pod survives the cache. The check walks
// approve.Pod, so a field added to it and to PodFrom must be set in fullPod
// and must survive the transform, or this fails.
func TestCachedPodKeepsEveryFieldThePolicyReads(t *testing.T) {
	pod := fullPod()
	want := approve.PodFrom(pod)
	v := reflect.ValueOf(*want)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("approve.Pod.%s is not set by fullPod: set it, so the cache is checked to keep it", v.Type().Field(i).Name)
		}
	}
	got := mustPodFacts(t, pod)
	if !reflect.DeepEqual(&got.Pod, want) {
		t.Errorf("the cache holds %+v, the API pod gives %+v", got.Pod, *want)
	}
	again, err := podFacts(got) // client-go transforms cached objects again on a re-list
	if err != nil || again != got {
		t.Errorf("transforming a cached pod again gave %v, %v", again, err)
	}
}

func TestCachedPodDecidesAsTheAPIPod(t *testing.T) {
	policy, err := approve.New(approve.Options{SignerName: testSigner})
	if err != nil {
		t.Fatal(err)
	}
	deleting := metav1.Now()
	tests := []struct {
		name  string
		pod   func(*corev1.Pod)
		names []string
	}{
		{"pod-IP name", func(*corev1.Pod) {}, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"service name", func(*corev1.Pod) {}, []string{"web.shop.svc"}},
		{"service of other labels", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }, []string{"web.shop.svc"}},
		{"other service account", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "db" }, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"re-created", func(p *corev1.Pod) { p.UID = "uid-2" }, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"terminating", func(p *corev1.Pod) { p.DeletionTimestamp = &deleting }, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"finished", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"other IP", func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.9.9.9"}} }, []string{"10-1-2-3.shop.pod.cluster.local"}},
		{"hostname and subdomain", func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "web-0", "web" }, []string{"web-0.web.shop.svc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod()
			tt.pod(pod)
			csr := testCSR(t)
			csr.Spec.Request = requestFor(t, tt.names...)
			services := []approve.Service{approve.ServiceFrom(testService())}
			fromAPI := policy.Decide(csr, approve.Facts{Pod: approve.PodFrom(pod), Services: services})
			fromCache := policy.Decide(csr, approve.Facts{Pod: &mustPodFacts(t, pod).Pod, Services: services})
			if fromAPI.Approve != fromCache.Approve || fromAPI.Reason != fromCache.Reason || !reflect.DeepEqual(fromAPI.Grant, fromCache.Grant) {
				t.Errorf("from the cache %+v, from the API %+v", fromCache, fromAPI)
			}
		})
	}
}

// The informers store what the transform returns: the controller's pod
// cache, filled from the API, answers with the policy's facts.
func TestPodInformerCachesFacts(t *testing.T) {
	pod := fullPod()
	c, _ := newTestController(t, true, pod, testService())
	ctx := t.Context()
	go c.informer.run(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.pods.HasSynced) {
		t.Fatal("pod cache did not sync")
	}
	var got *approve.Pod
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		var err error
		got, err = c.informer.cachedPodFacts("shop", "web-0")
		return got != nil, err
	})
	if err != nil {
		t.Fatalf("reading the cached pod: %v", err)
	}
	if want := approve.PodFrom(pod); !reflect.DeepEqual(got, want) {
		t.Errorf("cache gives %+v, want %+v", got, want)
	}
	for _, obj := range c.informer.pods.GetStore().List() {
		if _, ok := obj.(*cachedPod); !ok {
			t.Errorf("pod cache holds a %T", obj)
		}
	}
	got.Labels["app"] = "other" // the caller's copy, not the cache's
	if again, _ := c.informer.cachedPodFacts("shop", "web-0"); again.Labels["app"] != "web" {
		t.Error("a caller's write reached the cache")
	}
}

func TestFinishedCSRIsCachedAsAStub(t *testing.T) {
	issued := testCSR(t)
	issued.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "controller"}}
	issued.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----...")
	policy, _ := approve.New(approve.Options{SignerName: testSigner})
	stub, _ := slimCSR(policy)(issued.DeepCopy())
	s := stub.(*certificatesv1.CertificateSigningRequest)
	if s.Spec.Request != nil || s.ManagedFields != nil || policy.Classify(s) != approve.StateDone {
		t.Errorf("finished CSR cached as %+v", s)
	}
	pending := testCSR(t)
	kept, _ := slimCSR(policy)(pending.DeepCopy())
	if k := kept.(*certificatesv1.CertificateSigningRequest); string(k.Spec.Request) != string(pending.Spec.Request) {
		t.Error("pending CSR lost its request in the cache")
	}
}
