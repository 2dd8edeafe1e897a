package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/csr-agent/csr-agent/internal/writer"
)

// benchRotation is benchmark 6: an HTTPS server that reads the agent's
// files the documented way (cmd/agent's package doc: resolve ..data on
// each handshake, load tls.pem in one read) serves clients that trust only
// ca.crt, making a new connection per request, while `agent sidecar`
// rotates short-lived certificates.
//
// The CSR API's shortest lifetime is 10 minutes; as in cmd/demo, the agent
// asks for 10 minutes with RENEW_BEFORE=9m58s, so it renews about two seconds
// after each issuance, through the real controller and its full policy: a
// real rotation each time (new key, new certificate, atomic swap), only
// more often than in production.
func benchRotation(ctx context.Context, e *env, short bool, logf func(string, ...any)) (*result, error) {
	target := 100
	if short {
		target = 3
	}
	ns, err := e.cluster.NewNamespace(ctx)
	if err != nil {
		return nil, err
	}
	pod, err := e.newPod(ctx, ns)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.work, "rotation")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return nil, err
	}
	env := append(pod.Env(), "CERT_DIR="+dir, "CERT_DURATION=10m", "RENEW_BEFORE=9m58s", "HTTP_ADDR=")
	agent, err := startProcess("agent", e.agent, []string{"sidecar"}, env, filepath.Join(e.work, "rotation-agent.log"))
	if err != nil {
		return nil, err
	}
	defer agent.stop() //nolint:errcheck // stopped and checked below
	if err := waitValid(ctx, dir, agent, time.Minute); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	srv, addr, err := serve(dir)
	if err != nil {
		return nil, err
	}
	defer func() { _ = srv.Close() }()

	// Rotations as the directory shows them: the time the writer swapped
	// ..data (swapTime) and the serial it then holds.
	type rotation struct {
		at     time.Time
		serial string
	}
	var rotations []rotation
	current := func() (string, string) {
		gen, err := os.Readlink(filepath.Join(dir, "..data"))
		if err != nil {
			return "", ""
		}
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, gen, "tls.crt"), filepath.Join(dir, gen, "tls.key"))
		if err != nil {
			return gen, ""
		}
		return gen, c.Leaf.SerialNumber.String()
	}
	gen, serial := current()
	rotations = append(rotations, rotation{time.Now(), serial})

	cctx, stopClients := context.WithCancel(ctx)
	hs := &handshakes{}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { hs.loop(cctx, addr, podDNSName(pod), roots) })
	}
	deadline := time.After(time.Duration(target)*10*time.Second + time.Minute)
	logf("serving handshakes; waiting for %d rotations", target)
	// After the target, handshakes go on for a while to see the last
	// rotations; rotations in that tail are still recorded.
	var tail <-chan time.Time
	for tail == nil || !drained(tail) {
		if tail == nil && len(rotations) > target {
			tail = time.After(1500 * time.Millisecond)
		}
		select {
		case ev := <-w.Events:
			if ev.Name != filepath.Join(dir, "..data") {
				continue
			}
			at := swapTime(dir)
			g, s := current()
			if g != gen && s != "" {
				if s != rotations[len(rotations)-1].serial {
					rotations = append(rotations, rotation{at, s})
				}
				gen = g
			}
		case err := <-w.Errors:
			stopClients()
			return nil, err
		case <-agent.done:
			stopClients()
			return nil, agent.exited()
		case <-deadline:
			stopClients()
			return nil, fmt.Errorf("%d of %d rotations before the deadline\n%s", len(rotations)-1, target, agent.logTail())
		case <-ctx.Done():
			stopClients()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopClients()
	wg.Wait()
	stopped := time.Now()
	if err := agent.stop(); err != nil {
		return nil, err
	}

	all := hs.all()
	failed, late, unseen := 0, 0, 0
	var firstErr error
	var maxLag time.Duration
	for _, h := range all {
		if h.err != nil {
			failed++
			firstErr = errors.Join(firstErr, h.err)
		}
	}
	index := map[string]int{}
	for k, r := range rotations {
		index[r.serial] = k
	}
	for k := 1; k < len(rotations); k++ {
		r := rotations[k]
		next := stopped
		if k+1 < len(rotations) {
			next = rotations[k+1].at
		}
		seen := false
		for _, h := range all {
			if h.err != nil || h.start.Before(r.at) || !h.start.Before(next) {
				continue
			}
			if h.serial == r.serial && !seen {
				seen, maxLag = true, max(maxLag, h.end.Sub(r.at))
			}
			// An older certificate; a newer one is a rotation the
			// watcher here noticed after the server did.
			if i, ok := index[h.serial]; (!ok || i < k) && h.start.After(r.at.Add(time.Second)) {
				late++
			}
		}
		if !seen && stopped.Sub(r.at) > time.Second {
			unseen++ // no handshake saw it
		}
	}
	span := rotations[len(rotations)-1].at.Sub(rotations[0].at)
	res := &result{title: fmt.Sprintf("6. Rotation under load (%d rotations)", len(rotations)-1)}
	res.add("failed handshakes", fmt.Sprint(failed), "–", "–", "0", failed == 0)
	res.add("handshakes > 1 s after a rotation with the old certificate", fmt.Sprint(late), "–", "–", "0", late == 0)
	res.add("rotations no handshake saw", fmt.Sprint(unseen), "–", "–", "0", unseen == 0)
	res.add("rotation → first handshake with the new certificate (max)", ms(maxLag), "–", "–", "≤ 1000 ms", maxLag <= time.Second)
	res.detail("- %d HTTPS requests, each a new TLS connection, from 2 clients trusting only ca.crt and checking the pod-IP DNS name, over %s "+
		"(%d rotations, one every %s on average); the server reads the files with internal/writer.Reloader, the GetCertificate of cmd/agent's package doc.",
		len(all), span.Round(time.Second), len(rotations)-1, (span / time.Duration(max(len(rotations)-1, 1))).Round(10*time.Millisecond))
	res.detail("- A rotation is the moment the agent's writer swapped `..data` to a generation with a new serial (the new link's mtime, " +
		"read when inotify reports the swap; the kernel's coarse file clock can only make the gaps look longer). The agent runs with CERT_DURATION=10m " +
		"(the CSR API's minimum) and RENEW_BEFORE=9m58s: every certificate is renewed about two seconds after issuance, by the bundled controller " +
		"with its full policy, with a new key each time.")
	if firstErr != nil {
		res.detail("- Handshake errors: %v", firstErr)
	}
	return res, nil
}

// swapTime is when the writer swapped dir's ..data, not when this
// watcher heard of it: the writer creates a new symlink and renames it over
// ..data at once (internal/writer, swapSymlink), and a rename leaves the
// link's own mtime alone. The kernel stamps files from its coarse clock (a
// few milliseconds behind the real one), so the gap measured from it can
// only come out longer, never shorter. Now, if ..data cannot be read.
func swapTime(dir string) time.Time {
	fi, err := os.Lstat(filepath.Join(dir, "..data"))
	if err != nil {
		return time.Now()
	}
	return fi.ModTime()
}

// drained reports whether the channel has fired, without waiting.
func drained(c <-chan time.Time) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// serve starts the documented reader: an HTTPS server loading the pair
// through ..data.
func serve(dir string) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	p := &writer.Reloader{Dir: dir}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }),
		TLSConfig:         &tls.Config{GetCertificate: p.GetCertificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	return srv, ln.Addr().String(), nil
}

type handshake struct {
	start, end time.Time
	serial     string
	err        error
}

type handshakes struct {
	mu   sync.Mutex
	list []handshake
}

func (hs *handshakes) all() []handshake {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.list
}

// loop makes HTTPS requests, a new connection each, until ctx ends.
func (hs *handshakes) loop(ctx context.Context, addr, serverName string, roots *x509.CertPool) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	for ctx.Err() == nil {
		h := handshake{start: time.Now()}
		resp, err := client.Get("https://" + serverName + "/")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
				err = errors.New("no verified chain")
			} else {
				h.serial = resp.TLS.PeerCertificates[0].SerialNumber.String()
			}
		}
		h.end, h.err = time.Now(), err
		hs.mu.Lock()
		hs.list = append(hs.list, h)
		hs.mu.Unlock()
	}
}
