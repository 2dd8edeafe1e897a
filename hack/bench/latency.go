package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// benchLatency is benchmark 3: process start → a valid pair on disk, for
// `agent init` and the reference requester in init mode, interleaved (the
// order alternating) so both see the same machine and the same controller.
func benchLatency(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	runs := 30
	if short {
		runs = 3
	}
	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return nil, err
	}
	// The pods exist before their programs start, as they do in a cluster
	// (the kubelet starts containers after the pod is bound), so the
	// controller's cache knows them.
	pods := make([]*localcluster.Pod, 2*runs)
	if err := parallel(len(pods), 8, func(i int) error {
		p, err := e.newPod(ctx, ns)
		pods[i] = p
		return err
	}); err != nil {
		return nil, err
	}
	var took [2][]time.Duration
	for i := range runs {
		for k := range 2 {
			which := (i + k) % 2 // 0 agent, 1 reference
			d, err := initOnce(ctx, e, pods[2*i+which], which == 0, fmt.Sprintf("latency-%d-%d", i, which))
			if err != nil {
				return nil, err
			}
			took[which] = append(took[which], d)
		}
	}
	a, ref := sortedCopy(took[0]), sortedCopy(took[1])
	logf("agent p50 %s p99 %s; reference p50 %s p99 %s", ms(percentile(a, .5)), ms(percentile(a, .99)), ms(percentile(ref, .5)), ms(percentile(ref, .99)))
	r := &result{title: "3. Init issuance latency (process start → valid files on disk)"}
	p50a, p50r := percentile(a, .5), percentile(ref, .5)
	p99a, p99r := percentile(a, .99), percentile(ref, .99)
	r.add("p50", ms(p50a), ms(p50r), ratio(float64(p50a), float64(p50r)), "≤ reference", p50a <= p50r)
	r.add("p99", ms(p99a), ms(p99r), ratio(float64(p99a), float64(p99r)), "≤ 400 ms", p99a <= 400*time.Millisecond)
	r.detail("- %d runs each, interleaved, alternating which goes first; min %s / %s, max %s / %s (agent / reference).",
		runs, ms(a[0]), ms(ref[0]), ms(a[len(a)-1]), ms(ref[len(ref)-1]))
	r.detail("- Each run: its own simulated pod (all created before the first run) with a pod-bound token, an empty directory, the program started with the pod's environment; " +
		"the clock stops at the first inotify event after which tls.key and tls.crt match and ca.crt verifies tls.crt. " +
		"Both ask for the same certificate (ECDSA P-256, serving, pod IP and pod-IP DNS name, 24h); the bundled controller (running since the start " +
		"of the run, caches warm) approves after its full policy check and signs both. Both read ca.crt the same way: the signer's " +
		"ClusterTrustBundles from the API server's cache (resourceVersion 0) while the signer works, consistently only if that does not verify " +
		"the certificate. With 30 runs, p99 is the slowest run.")
	return r, nil
}

// initOnce runs one init and returns the time from process start to a
// valid pair on disk; the program must then exit 0.
func initOnce(ctx context.Context, e *env, pod *localcluster.Pod, agent bool, name string) (time.Duration, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return 0, err
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return 0, err
	}
	env := append(pod.Env(), "CERT_DIR="+dir)
	program, args := e.agent, []string{"init"}
	if !agent {
		program, args = e.reference, nil
		env = append(env, "MODE=init")
	}
	p, err := startProcess(name, program, args, env, dir+".log")
	if err != nil {
		return 0, err
	}
	defer p.stop() //nolint:errcheck // only on the way out of an error
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case ev := <-w.Events:
			if ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Write) == 0 {
				continue
			}
			if _, err := validPair(dir); err != nil {
				continue
			}
			took := time.Since(p.started)
			return took, p.wait(30 * time.Second)
		case err := <-w.Errors:
			return 0, err
		case <-p.done:
			if _, err := validPair(dir); err == nil && p.err == nil {
				// Exited before we saw the last event: count to now.
				return time.Since(p.started), nil
			}
			return 0, p.exited()
		case <-timeout.C:
			return 0, fmt.Errorf("%s: no valid pair after a minute\n%s", name, p.logTail())
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
