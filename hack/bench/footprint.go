package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// defaultIdleWindow is how long the footprint benchmark watches both
// programs idle: long enough for the slow periodic work of an idle sidecar
// (GC cycles forced every 2 minutes, the scavenger returning memory, a
// watch's bookmarks and re-establishment) to show in its peak, which is what
// a memory limit has to fit.
const defaultIdleWindow = 15 * time.Minute

// benchFootprint covers benchmarks 1 and 2 of issue 7: both programs issue
// a certificate for a pod of their own, then idle side by side for window
// (o.idle, 0: defaultIdleWindow); their memory is sampled and their API requests
// counted over the same window. o.agentEnv is added to the agent's
// environment. Each runs in a memory cgroup of its own
// (memcg), so that the working set the kubelet would report is read too.
func benchFootprint(ctx context.Context, e *env, o runOptions, logf func(string, ...any)) (_ *result, rerr error) {
	settle, window, short := 30*time.Second, o.idle, o.short
	if window == 0 {
		window = defaultIdleWindow
	}
	if short {
		settle, window = 3*time.Second, 20*time.Second
	}
	r := &result{title: "1–2. Agent footprint and idle API traffic"}
	sizes := [2]int64{}
	for i, p := range []string{e.agent, e.reference} {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		sizes[i] = fi.Size()
	}

	type runner struct {
		pod  *localcluster.Pod
		dir  string
		proc *process
		cg   *memcg
		ua   string
	}
	var rs [2]*runner
	for i, name := range []string{"agent", "reference"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: idleNamespaces[i]}}
		if _, err := e.cluster.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		pod, err := e.newPod(ctx, ns.Name)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(e.work, "footprint-"+name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		env := append(pod.Env(), "CERT_DIR="+dir)
		program, args, ua := e.agent, []string{"sidecar"}, "csr-agent/"
		if name == "agent" {
			env = append(env, "HTTP_ADDR=127.0.0.1:0") // probes and metrics on, as in a pod
			env = append(env, o.agentEnv...)
		} else {
			program, args, ua = e.reference, nil, "csr-reference"
			env = append(env, "MODE=sidecar")
		}
		cg, err := newMemcg(fmt.Sprintf("csr-agent-bench-%d-%s", os.Getpid(), name))
		if err != nil {
			logf("no working set for %s: %v", name, err)
		} else {
			defer func() { rerr = errors.Join(rerr, cg.remove()) }()
			if program, args, err = cg.command(program, args); err != nil {
				return nil, err
			}
		}
		p, err := startProcess(name, program, args, env, filepath.Join(e.work, "footprint-"+name+".log"))
		if err != nil {
			return nil, err
		}
		// Stopped and checked below; this is for errors on the way, and
		// runs before the cgroup's removal, which waits for the exit.
		defer p.stop() //nolint:errcheck
		rs[i] = &runner{pod: pod, dir: dir, proc: p, cg: cg, ua: ua}
	}
	for _, rn := range rs {
		if err := waitValid(ctx, rn.dir, rn.proc, time.Minute); err != nil {
			return nil, err
		}
	}
	issued := time.Now()
	logf("both issued; settling %s, then idle window of %s", settle, window)
	if err := sleep(ctx, settle); err != nil {
		return nil, err
	}
	t0 := time.Now()
	samples, err := sampleMemory(ctx, []watched{{rs[0].proc, rs[0].cg}, {rs[1].proc, rs[1].cg}}, window, 2*time.Second)
	if err != nil {
		return nil, err
	}
	var last [2]memory
	var charged [2]string
	for i, rn := range rs {
		if last[i], err = rn.proc.memory(); err != nil {
			return nil, err
		}
		if rn.cg != nil {
			if charged[i], err = rn.cg.breakdown(); err != nil {
				return nil, err
			}
		}
	}
	t1 := time.Now()
	if err := sleep(ctx, time.Second); err != nil { // the audit log is written before the response; margin
		return nil, err
	}
	var idle, issuing [2]int
	var idleURIs [2][]string
	for i, rn := range rs {
		var err error
		if idle[i], idleURIs[i], err = countRequests(e.auditLog, rn.pod.Username(), rn.ua, t0, t1); err != nil {
			return nil, err
		}
		if issuing[i], _, err = countRequests(e.auditLog, rn.pod.Username(), rn.ua, rn.proc.started, issued); err != nil {
			return nil, err
		}
		if err := rn.proc.stop(); err != nil {
			return nil, err
		}
	}
	var rss, ws [2]int64
	for i := range rs {
		rss[i], ws[i] = peak(samples[i])
	}
	r.add("stripped static binary", mb(sizes[0]), mb(sizes[1]), ratio(float64(sizes[0]), float64(sizes[1])), "≤ 0.65",
		float64(sizes[0]) <= 0.65*float64(sizes[1]))
	r.add(fmt.Sprintf("idle RSS (VmRSS, maximum over %s)", window), mib(rss[0]), mib(rss[1]), ratio(float64(rss[0]), float64(rss[1])), "≤ 0.5",
		float64(rss[0]) <= 0.5*float64(rss[1]))
	if ws[0] >= 0 && ws[1] >= 0 {
		// No goal: see the detail on what the kernel counts as active.
		r.add("idle working set (cgroup, as the kubelet reports it; maximum)", mib(ws[0]), mib(ws[1]), ratio(float64(ws[0]), float64(ws[1])), "–", true)
	}
	// A watch is re-established every 5–10 minutes (client-go's reflector
	// asks for that timeout, so that a watch never outlives a changed
	// server): over a window of 15 minutes the trust-bundle watch renews once
	// or twice. Anything else while idle is a request too many.
	onlyWatches := !slices.ContainsFunc(idleURIs[0], func(u string) bool { return !strings.HasPrefix(u, "watch ") })
	r.add(fmt.Sprintf("API requests while idle (%s)", window), fmt.Sprint(idle[0]), fmt.Sprint(idle[1]), "–", "watch renewals only", onlyWatches)
	for i, name := range []string{"csr-agent", "reference"} {
		lo := rss[i]
		for _, m := range samples[i] {
			lo = min(lo, m.rss)
		}
		r.detail("- %s: VmRSS %s–%s over %d samples every 2 s; at the end %s anonymous + %s file-backed (program pages). %d API requests from start to files on disk.",
			name, mib(lo), mib(rss[i]), len(samples[i]), mib(last[i].Anon), mib(last[i].File), issuing[i])
		if charged[i] != "" {
			r.detail("  Its cgroup at the end: %s.", charged[i])
		}
		if idle[i] > 0 {
			r.detail("  Idle requests: %s", strings.Join(idleURIs[i], ", "))
		}
	}
	r.detail("- Working set: each program runs in a cgroup v1 memory cgroup of its own, joined before it executes and with its binary " +
		"dropped from the page cache first, as a container on a node that just pulled its image; the working set is memory.usage_in_bytes " +
		"minus total_inactive_file, the kubelet's container_memory_working_set_bytes (what its eviction and `kubectl top` use). " +
		"It is not a measure of what either program keeps mapped: program pages read once at start stay on the inactive list until memory " +
		"runs short (the reference's whole binary), while a page reclaimed and faulted back in is put on the active list at once (the " +
		"agent gives its program pages back after each burst of work, package idle, and its idle work faults a few back in).")
	r.chart("footprint-idle-rss", "VmRSS of the idle agent and reference over the window", rssChart(
		fmt.Sprintf("Idle VmRSS over %s", window), []string{"csr-agent sidecar", "reference (client-go)"}, samples[:]))
	r.detail("- Both run with a 24h certificate, idle %s after issuance before the window; the agent as `agent sidecar` with its HTTP endpoint, "+
		"trust-bundle watch and inotify on; the reference does nothing after issuance. Requests are counted from the kube-apiserver's audit log "+
		"(level Metadata) by the pod's service-account user and user agent, by the time each was received.", settle)
	return r, nil
}

// waitValid waits until dir holds a valid pair, or p exits.
func waitValid(ctx context.Context, dir string, p *process, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		if !p.running() && p.err != nil {
			return false, p.exited()
		}
		_, last = validPair(dir)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for a valid pair from %s in %s: %w (last: %w)\n%s", p.name, dir, err, last, p.logTail())
	}
	return nil
}

// validPair checks that dir holds tls.key and tls.crt that match, and a
// ca.crt that verifies the certificate.
func validPair(dir string) (*x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("ca.crt holds no certificate")
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, err
	}
	return pair.Leaf, nil
}

// countRequests counts the requests the audit log holds from username with
// a user agent starting with ua, received in [from, to].
func countRequests(path, username, ua string, from, to time.Time) (int, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	var uris []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 16<<20)
	for s.Scan() {
		var ev struct {
			AuditID    string `json:"auditID"`
			Verb       string `json:"verb"`
			RequestURI string `json:"requestURI"`
			User       struct {
				Username string `json:"username"`
			} `json:"user"`
			UserAgent string    `json:"userAgent"`
			Received  time.Time `json:"requestReceivedTimestamp"`
		}
		if err := json.Unmarshal(s.Bytes(), &ev); err != nil {
			return 0, nil, fmt.Errorf("reading audit log: %w", err)
		}
		if ev.User.Username != username || !strings.HasPrefix(ev.UserAgent, ua) || seen[ev.AuditID] ||
			ev.Received.Before(from) || ev.Received.After(to) {
			continue
		}
		seen[ev.AuditID] = true
		uris = append(uris, ev.Verb+" "+ev.RequestURI)
	}
	return len(seen), uris, s.Err()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
