// Command demo shows csr-agent working end to end on a local control plane,
// in one command: `make demo` (or `make demo KEEP=1`).
//
//  1. It starts etcd, kube-apiserver and kube-controller-manager (built once
//     by `make controlplane`; no kubelet and no containers: pods are
//     simulated as Pod objects marked running, with tokens bound to them).
//  2. It installs the controller's RBAC and the agent's ClusterRoles from
//     manifests/ as they ship, and starts the controller program as the
//     service account csr-agent-system/csr-agent-controller, creating a
//     self-signed demo CA (CREATE_CA=true) that it publishes as a
//     ClusterTrustBundle.
//  3. It creates namespace demo with service account web, Service web and
//     pod web, and binds the agent's roles to the service account.
//  4. It runs `agent sidecar` as pod web would: the downward-API variables
//     and a token bound to the Pod, SERVICE_NAMES=auto, 10-minute
//     certificates renewed 15 seconds after issuance (RENEW_BEFORE=9m45s;
//     10 minutes is the CSR API's minimum lifetime).
//  5. It serves HTTPS from the agent's files and makes requests to
//     https://web.demo.svc.cluster.local that trust only ca.crt and check
//     the name, before and after the renewal; the agent tells the app of the
//     renewal through NOTIFY_URL.
//  6. It prints a summary (requests and approvals, subject, SANs, issuer,
//     validity, files and modes, the renewal) and stops everything it
//     started; no process is left running.
//
// Usage:
//
//	demo [-keep] [-bin DIR]
//
//	-keep     after the renewal, keep running for exploring with kubectl (it
//	          prints the KUBECONFIG to use) until Ctrl-C
//	-bin DIR  where etcd, kube-apiserver, kube-controller-manager, agent and
//	          controller are; default: $CSR_AGENT_BIN_DIR, else bin/ of the
//	          repository
//
// Exit status 0 when all of the above happened, 1 otherwise, 2 for bad
// usage. The demo lives in cmd/ like the programs it runs, and shares the
// control-plane code of the tests (internal/localcluster).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	flags.SetOutput(stderr)
	keep := flags.Bool("keep", false, "keep running after the renewal, until Ctrl-C")
	bin := flags.String("bin", "", "directory of the control plane binaries, agent and controller (default: $CSR_AGENT_BIN_DIR, else bin/)")
	if err := flags.Parse(args); err != nil || flags.NArg() > 0 {
		return 2
	}
	opts, err := newOptions(*bin, *keep, stdout)
	if err == nil {
		err = run(ctx, opts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "\ndemo failed: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "\ndemo finished: everything started was stopped")
	return 0
}

func newOptions(bin string, keep bool, out io.Writer) (options, error) {
	if bin == "" {
		var err error
		if bin, err = localcluster.BinDir(); err != nil {
			return options{}, err
		}
	}
	opts := options{
		ControlPlaneDir: bin,
		Agent:           filepath.Join(bin, "agent"),
		Controller:      filepath.Join(bin, "controller"),
		Keep:            keep,
		Out:             out,
	}
	var errs []error
	for _, p := range []string{opts.Agent, opts.Controller} {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s is missing: run `make build`", p))
		}
	}
	return opts, errors.Join(errs...)
}
