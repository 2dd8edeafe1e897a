// Command podinformer is the controller-memory benchmark's yardstick: a
// plain client-go pod informer, configured as a well-written controller
// configures one, and nothing else.
//
//   - protobuf on the wire, as kube-controller-manager talks to the API
//     server for built-in types (JSON decoding allocates several times more);
//   - a SharedInformerFactory without resync, a lister, one event handler
//     (every controller has one; this one only counts);
//   - client-go's defaults otherwise, which stream the initial list
//     (WatchListClient) instead of holding a whole list response in memory.
//
// What it does not do is what csr-agent's controller does and the benchmark
// measures: transform the pods into only the fields a policy reads. It reads
// KUBECONFIG, logs "synced" once its cache is filled, then "pods N" each
// second the number of cached pods changed, and runs until SIGTERM.
//
// Built like the controller (CGO_ENABLED=0 -trimpath -ldflags '-s -w') by
// the bench driver (hack/bench).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "podinformer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return err
	}
	cfg.UserAgent = "bench-podinformer"
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods()
	lister := pods.Lister()
	var count atomic.Int64
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { count.Add(1) },
		DeleteFunc: func(any) { count.Add(-1) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced) {
		return errors.New("pod cache did not sync")
	}
	if _, err := lister.List(labels.Everything()); err != nil {
		return err
	}
	fmt.Println("synced")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var logged int64 = -1
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if n := count.Load(); n != logged {
				fmt.Printf("pods %d\n", n)
				logged = n
			}
		}
	}
}
