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
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/localcluster"
)

// benchFootprint covers benchmarks 1 and 2 of issue 7: both programs issue
// a certificate for a pod of their own, then idle side by side; their RSS
// is sampled and their API requests counted over the same window.
func benchFootprint(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	settle, window := 30*time.Second, 3*time.Minute
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
		} else {
			program, args, ua = e.reference, nil, "csr-reference"
			env = append(env, "MODE=sidecar")
		}
		p, err := startProcess(name, program, args, env, filepath.Join(e.work, "footprint-"+name+".log"))
		if err != nil {
			return nil, err
		}
		defer p.stop() //nolint:errcheck // stopped and checked below; this is for errors on the way
		rs[i] = &runner{pod: pod, dir: dir, proc: p, ua: ua}
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
	var samples [2][]memory
	for time.Since(t0) < window {
		if err := sleep(ctx, min(5*time.Second, window-time.Since(t0))); err != nil {
			return nil, err
		}
		for i, rn := range rs {
			m, err := rn.proc.memory()
			if err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], m)
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
	last := [2]memory{samples[0][len(samples[0])-1], samples[1][len(samples[1])-1]}
	r.add("stripped static binary", mb(sizes[0]), mb(sizes[1]), ratio(float64(sizes[0]), float64(sizes[1])), "≤ 0.65",
		float64(sizes[0]) <= 0.65*float64(sizes[1]))
	r.add("idle RSS (VmRSS, end of window)", mib(last[0].RSS), mib(last[1].RSS), ratio(float64(last[0].RSS), float64(last[1].RSS)), "≤ 0.65",
		float64(last[0].RSS) <= 0.65*float64(last[1].RSS))
	r.add(fmt.Sprintf("API requests while idle (%s)", window), fmt.Sprint(idle[0]), fmt.Sprint(idle[1]), "–", "0", idle[0] == 0)
	for i, name := range []string{"csr-agent", "reference"} {
		lo, hi := samples[i][0].RSS, samples[i][0].RSS
		for _, m := range samples[i] {
			lo, hi = min(lo, m.RSS), max(hi, m.RSS)
		}
		r.detail("- %s: VmRSS %s–%s over %d samples every 5 s; at the end %s anonymous + %s file-backed (program pages). %d API requests from start to files on disk.",
			name, mib(lo), mib(hi), len(samples[i]), mib(last[i].Anon), mib(last[i].File), issuing[i])
		if idle[i] > 0 {
			r.detail("  Idle requests: %s", strings.Join(idleURIs[i], ", "))
		}
	}
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
