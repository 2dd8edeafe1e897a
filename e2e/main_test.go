//go:build e2e

// Package e2e_test runs csr-agent for real: the product image, built here
// from the same static binaries as the Dockerfile, in real pods on a real
// node (package localnode: containerd, the kubelet, kube-proxy and
// kube-scheduler joined to the local control plane), with the shipped
// manifests applied through their kustomizations, images overridden to the
// local tags. Nothing is simulated: the kubelet starts the native sidecar,
// probes it, mounts the projected token, and the controller runs as its
// Deployment with in-cluster config.
//
// It needs root, Linux and the Debian packages localnode names; run it with
// `make e2e`, which builds the node's binaries first. Build tag e2e keeps
// it out of `make test`.
package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/csr-agent/csr-agent/internal/localnode"
)

// The suite's node, shared by every test.
var (
	node   *localnode.Node
	client kubernetes.Interface
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	// kubectl builds the kustomizations and applies them, as a user would.
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kubectl must be in PATH (https://kubernetes.io/docs/tasks/tools/)")
		return 1
	}
	// Building takes seconds with a warm build cache and minutes without.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "csr-agent-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(work) }()
	started := time.Now()
	archives, err := buildImages(ctx, work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building images:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: images built in %s\n", time.Since(started).Round(time.Second))
	started = time.Now()
	node, err = localnode.Start(ctx, localnode.Options{Images: archives})
	if errors.Is(err, localnode.ErrPrerequisites) {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the node:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: node %s Ready in %s\n", localnode.NodeName, time.Since(started).Round(100*time.Millisecond))
	client = node.Cluster.Client
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, node.Logs())
		describe := exec.Command("kubectl", "describe", "pods", "--all-namespaces")
		describe.Env = append(os.Environ(), "KUBECONFIG="+node.Cluster.KubeconfigFile)
		describe.Stdout, describe.Stderr = os.Stderr, os.Stderr
		_ = describe.Run()
		dumpLogs()
	}
	if err := node.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping the node:", err)
		code = 1
	}
	return code
}

// dumpLogs prints the end of every container's log, for a failed run.
func dumpLogs() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range list.Items {
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			data, _ := client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: ptr.To[int64](30)}).DoRaw(ctx)
			fmt.Fprintf(os.Stderr, "--- %s/%s/%s\n%s\n", p.Namespace, p.Name, c.Name, data)
		}
	}
}
