// Command bench measures csr-agent against its references on a local
// control plane and writes the results into BENCHMARKS.md, and its charts
// into bench/*.svg next to it: `make bench` (full, about 30 minutes on 2
// cores, 15 of them the footprint's idle window) or `make bench-smoke`
// (seconds, for CI; it checks that every benchmark runs and asserts no
// timing).
//
// Usage:
//
//	go run ./hack/bench [-short] [-keep] [-idle D] [-out FILE] [-controller-env K=V]... [benchmark ...]
//
// The benchmarks (default: all, in this order):
//
//	footprint  binary size, peak idle RSS and working set over -idle (15m) of
//	           `agent sidecar` vs the reference
//	           requester (hack/bench/reference: client-go's
//	           util/certificate/csr over the full Clientset), and the API
//	           requests each makes while idle, counted from the audit log
//	latency    `agent init` start → valid files on disk, agent and reference
//	           interleaved, both served by the bundled controller
//	burst      1000 pod-bound requests at once: the controller vs
//	           kube-controller-manager's signer at default and raised QPS
//	rotation   an HTTPS server reading the agent's files under continuous
//	           handshakes while the sidecar rotates 100 certificates
//	spread     renewal deadlines of 10,000 certificates issued in the same
//	           second, by the agent's own deadline function
//	podcert    1000 PodCertificateRequests at once (the kubelet's path) vs
//	           1000 CSRs at once (the agent's), same pods, same run
//	controller-memory
//	           the controller's VmRSS growth per pod as 10,000 pods are
//	           created, vs a plain client-go pod informer
//	           (hack/bench/podinformer), same run
//
// -keep keeps the scratch directory (every program's log, the audit log);
// -controller-env adds a variable to the controller's environment, for
// experiments such as KUBE_API_QPS or WORKERS (recorded runs use the
// defaults).
//
// Every benchmark of a run shares one control plane (etcd, kube-apiserver
// with an audit log, kube-controller-manager) and one controller; each
// comparison runs its reference in the same run. -out FILE (default: none,
// results on stdout only) replaces, in FILE, the section of each benchmark
// that ran and the machine section, and keeps everything else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

var order = []string{"footprint", "latency", "burst", "hostile", "rotation", "spread", "podcert", "controller-memory"}

// fieldManager owns what the benchmarks apply.
const fieldManager = "csr-agent-bench"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("bench", flag.ContinueOnError)
	flags.SetOutput(stderr)
	short := flags.Bool("short", false, "smoke: tiny sizes and windows; numbers are not meaningful")
	out := flags.String("out", "", "markdown file to write the results into (sections replaced in place)")
	keep := flags.Bool("keep", false, "keep the scratch directory (logs of every program, the audit log)")
	idle := flags.Duration("idle", defaultIdleWindow, "idle window of the footprint benchmark (shorter while iterating; recorded runs use the default)")
	var ctrlEnv, agentEnv []string
	flags.Func("agent-env", "KEY=VALUE added to the footprint agent's environment, for experiments such as GOGC (repeatable; recorded runs use the defaults)",
		func(s string) error { agentEnv = append(agentEnv, s); return nil })
	flags.Func("controller-env", "KEY=VALUE added to the controller's environment, for experiments (repeatable; recorded runs use the defaults)",
		func(s string) error { ctrlEnv = append(ctrlEnv, s); return nil })
	if err := flags.Parse(args); err != nil {
		return 2
	}
	names := flags.Args()
	if len(names) == 0 {
		names = order
	}
	for _, n := range names {
		if !slices.Contains(order, n) {
			fmt.Fprintf(stderr, "unknown benchmark %q; known: %v\n", n, order)
			return 2
		}
	}
	if err := run(ctx, runOptions{names: names, short: *short, idle: *idle, keep: *keep, out: *out, ctrlEnv: ctrlEnv, agentEnv: agentEnv, stdout: stdout}); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

type runOptions struct {
	names    []string
	short    bool
	idle     time.Duration
	keep     bool
	out      string
	ctrlEnv  []string
	agentEnv []string
	stdout   io.Writer
}

func run(ctx context.Context, o runOptions) (err error) {
	started := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(o.stdout, "[%5.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, a...))
	}
	work, err := os.MkdirTemp("", "csr-agent-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf("kept %s", work)
			return
		}
		err = errors.Join(err, os.RemoveAll(work))
	}()

	var e *env
	if slices.ContainsFunc(o.names, func(n string) bool { return n != "spread" }) {
		if e, err = setup(ctx, work, o.ctrlEnv, logf); err != nil {
			if e != nil {
				err = errors.Join(err, e.stop())
			}
			return err
		}
		defer func() { err = errors.Join(err, e.stop()) }()
	}
	mode := "full"
	if o.short {
		mode = "short"
	}
	var results []*result
	for _, name := range order {
		if !slices.Contains(o.names, name) {
			continue
		}
		logf("benchmark %s (%s)", name, mode)
		var r *result
		var err error
		switch name {
		case "footprint":
			r, err = benchFootprint(ctx, e, o, logf)
		case "latency":
			r, err = benchLatency(ctx, e, o.short, logf)
		case "burst":
			r, err = benchBurst(ctx, e, o.short, logf)
		case "hostile":
			r, err = benchHostile(ctx, e, o.short, logf)
		case "rotation":
			r, err = benchRotation(ctx, e, o.short, logf)
		case "spread":
			r, err = benchSpread(o.short)
		case "podcert":
			r, err = benchPodCertificates(ctx, e, o.short, logf)
		case "controller-memory":
			r, err = benchControllerMemory(ctx, e, o.short, logf)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.name, r.command = name, command(name, o.short)
		fmt.Fprintln(o.stdout, r.markdown())
		results = append(results, r)
		if o.out != "" {
			if err := writeReport(o.out, machine(ctx, mode, started), results); err != nil {
				return err
			}
		}
	}
	logf("done")
	return nil
}

func command(name string, short bool) string {
	if short {
		return "go run ./hack/bench -short " + name
	}
	return "go run ./hack/bench -out BENCHMARKS.md " + name
}
