package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// app stands for the pod's application: it serves HTTPS with the pair the
// agent keeps in its directory, loading the combined file tls.pem, which
// holds a key and its chain in one read (never a key of one generation with
// a certificate of another). The agent tells it to reload with a POST to
// its hook (NOTIFY_URL), as it would tell an application in the pod.
type app struct {
	dir     string
	current atomic.Pointer[tls.Certificate]
	// reloads delivers the leaf after each reload the agent asked for.
	reloads chan *x509.Certificate
	tlsLn   net.Listener
	hookLn  net.Listener
	servers []*http.Server
}

func startApp(dir, hostname string) (*app, error) {
	a := &app{dir: dir, reloads: make(chan *x509.Certificate, 16)}
	var err error
	if a.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("listening for HTTPS: %w", err)
	}
	if a.hookLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		a.tlsLn.Close()
		return nil, fmt.Errorf("listening for the reload hook: %w", err)
	}
	web := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "hello from %s over TLS\n", hostname)
		}),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := a.current.Load(); c != nil {
					return c, nil
				}
				return nil, errors.New("no certificate yet")
			},
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	hook := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost || r.URL.Path != "/-/reload" {
				http.NotFound(w, r)
				return
			}
			leaf, err := a.load()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			select {
			case a.reloads <- leaf:
			default: // nobody is waiting for it
			}
			fmt.Fprintln(w, "reloaded")
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	a.servers = []*http.Server{web, hook}
	go func() { _ = web.ServeTLS(a.tlsLn, "", "") }()
	go func() { _ = hook.Serve(a.hookLn) }()
	return a, nil
}

// hookURL is the agent's NOTIFY_URL.
func (a *app) hookURL() string { return "http://" + a.hookLn.Addr().String() + "/-/reload" }

// addr is where the app serves HTTPS.
func (a *app) addr() string { return a.tlsLn.Addr().String() }

// load reads tls.pem and serves it from now on.
func (a *app) load() (*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(a.dir, "tls.pem"))
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("loading tls.pem: %w", err)
	}
	a.current.Store(&pair)
	return pair.Leaf, nil
}

func (a *app) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range a.servers {
		_ = s.Shutdown(ctx)
	}
}

// handshake is what a client of the Service saw.
type handshake struct {
	leaf    *x509.Certificate
	chain   []*x509.Certificate // verified, leaf to root
	version uint16
	body    string
}

// get makes an HTTPS request to https://<serverName>/ as a client in the
// cluster would, trusting only ca.crt from the agent's directory and
// checking the name; the connection goes to the app's local address, as
// the Service would route it.
func get(ctx context.Context, addr, caFile, serverName string) (*handshake, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
			DisableKeepAlives: true, // every request is a new handshake
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+serverName+"/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
		return nil, errors.New("no verified TLS connection")
	}
	return &handshake{
		leaf: resp.TLS.PeerCertificates[0], chain: resp.TLS.VerifiedChains[0],
		version: resp.TLS.Version, body: strings.TrimSpace(string(body)),
	}, nil
}
