package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// benchControllerMemory is issue 15's controller benchmark: how much the
// controller's resident memory grows per pod in the cluster, against a
// plain client-go pod informer (hack/bench/podinformer) in the same run.
// Both are watched idle before and after n pods are created; the growth is
// the difference of the highest VmRSS of each window (the idle windows let
// garbage collection and the scavenger settle, both sides alike), over n.
func benchControllerMemory(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	n, window := 10000, time.Minute
	if short {
		n, window = 300, 10*time.Second
	}
	bin := filepath.Join(e.work, "bin", "podinformer")
	if err := goBuild(ctx, "./hack/bench/podinformer", bin); err != nil {
		return nil, err
	}
	ref, err := startProcess("podinformer", bin, nil, []string{"KUBECONFIG=" + e.cluster.KubeconfigFile},
		filepath.Join(e.work, "podinformer.log"))
	if err != nil {
		return nil, err
	}
	defer ref.stop() //nolint:errcheck // stopped and checked below; this is for errors on the way
	if _, err := waitLog(ctx, ref, "synced", 0, time.Minute); err != nil {
		return nil, err
	}
	procs := []watched{{proc: e.controller}, {proc: ref}}
	logf("both caches synced; idle window of %s", window)
	before, err := sampleMemory(ctx, procs, window, time.Second)
	if err != nil {
		return nil, err
	}
	cached, err := waitLog(ctx, ref, "pods ", 0, time.Minute)
	if err != nil {
		return nil, err
	}

	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns}}
	if _, err := e.cluster.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	started := time.Now()
	if err := parallel(n, 32, func(i int) error { return createRunningPod(ctx, e, ns, i) }); err != nil {
		return nil, err
	}
	logf("%d pods created and reported running in %s", n, time.Since(started).Round(100*time.Millisecond))
	if _, err := waitLog(ctx, ref, "pods ", cached+n, 2*time.Minute); err != nil {
		return nil, err
	}
	// The controller's pod watch is as fast as the reference's; a margin
	// for it to have applied the last status writes too.
	if err := sleep(ctx, 5*time.Second); err != nil {
		return nil, err
	}
	logf("caches hold the new pods; idle window of %s", window)
	after, err := sampleMemory(ctx, procs, window, time.Second)
	if err != nil {
		return nil, err
	}
	if err := ref.stop(); err != nil {
		return nil, err
	}
	// Not waited for: the last benchmark's pods go with the control plane.
	if err := e.cluster.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}

	var growth [2]float64
	var lo, hi [2]int64
	for i := range procs {
		lo[i], _ = peak(before[i])
		hi[i], _ = peak(after[i])
		growth[i] = float64(hi[i]-lo[i]) / float64(n)
	}
	r := &result{title: fmt.Sprintf("Controller memory per pod (%d pods)", n)}
	r.add("VmRSS growth per pod", kib(growth[0]), kib(growth[1]), ratio(growth[0], growth[1]), "≤ 0.3", growth[0] <= 0.3*growth[1])
	r.add("VmRSS before → after (maximum of each idle window)", mib(lo[0])+" → "+mib(hi[0]), mib(lo[1])+" → "+mib(hi[1]), "–", "–", true)
	r.detail("- %d pods created in one namespace against the real API server (no kubelet): each as a Deployment's pod looks "+
		"(two labels, one container with ports, env, resources and a probe; the service-account admission adds its token volume), "+
		"then its status written as a kubelet would (Running, IPs, four conditions, container status): both writes leave managedFields.", n)
	r.detail("- csr-agent: the bundled controller of this run (its pod cache holds approve.Pod, the facts the policy reads, with shared " +
		"strings interned). Reference: a plain client-go pod informer (hack/bench/podinformer: shared informer factory, lister, one " +
		"counting handler, protobuf, client-go's defaults; no transform). Both stream their initial list (WatchListClient).")
	r.detail("- Each side's VmRSS is sampled every second over an idle window of %s once its cache is synced, and again after the pods "+
		"are created and both caches hold them; the growth is the difference of the two windows' maxima over %d.", window, n)
	return r, nil
}

// createRunningPod creates pod i of a Deployment-like workload in ns and
// writes its status as the kubelet would.
func createRunningPod(ctx context.Context, e *env, ns string, i int) error {
	pods := e.cluster.Client.CoreV1().Pods(ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-7d4b9c8f6-%05d", i), Namespace: ns,
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d4b9c8f6"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			NodeName:           localcluster.NodeName,
			Containers: []corev1.Container{{
				Name: "web", Image: "registry.example/web:1.4.2",
				Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}},
				Env:   []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "TLS_DIR", Value: "/var/run/tls"}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8443)}}},
			}},
		},
	}
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %d: %w", i, err)
	}
	now := metav1.Now()
	ip := fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)
	created.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, HostIP: "172.18.0.2", PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, StartTime: &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "web", Ready: true, Image: "registry.example/web:1.4.2", ImageID: "registry.example/web@sha256:" + strings.Repeat("ab", 32),
			ContainerID: fmt.Sprintf("containerd://%064x", i), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		created.Status.Conditions = append(created.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	if _, err := pods.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing the status of pod %d: %w", i, err)
	}
	return nil
}

// waitLog waits until p's last log line starting with prefix is followed by
// a number of at least least (0: any line), and returns that number.
func waitLog(ctx context.Context, p *process, prefix string, least int, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	value := 0
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		if !p.running() {
			return false, p.exited()
		}
		data, err := os.ReadFile(p.logPath)
		if err != nil {
			return false, err
		}
		found := false
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix); ok {
				found = true
				value, _ = strconv.Atoi(strings.TrimSpace(rest))
			}
		}
		return found && value >= least, nil
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for %q from %s: %w\n%s", prefix, p.name, err, p.logTail())
	}
	return value, nil
}

func kib(n float64) string { return fmt.Sprintf("%.2f KiB", n/1024) }
