// Command tls-app stands in for nginx in the end-to-end suite (no image can
// be pulled there): it runs as `nginx`, so the examples' NOTIFY_PROCESS=nginx
// finds it, serves HTTPS on :8443 with tls.crt and tls.key of the
// certificate directory, as the examples' nginx configuration does, and
// re-reads them on every SIGHUP, logging each signal.
//
// Like nginx it fails at start if the pair is not there: an app container
// started before its certificate exists crashes and is restarted, which the
// suite would see. Client certificates issued by ca.crt are verified when
// given (-require-client-cert: required), and named in the response.
//
// With -bundle it serves, like the pod-certificate example's nginx, from a
// kubelet-written podCertificate credential bundle (key and chain in one
// PEM file) with ca.crt beside it in -dir, read afresh at every handshake:
// nobody signals the app when the kubelet refreshes it.
//
// Every line of output is a JSON object with a "msg".
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		logLine("exiting", "error", err.Error())
		os.Exit(1)
	}
}

func logLine(msg string, kv ...string) {
	m := map[string]string{"msg": msg, "time": time.Now().UTC().Format(time.RFC3339Nano)}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	out, _ := json.Marshal(m)
	fmt.Println(string(out))
}

type material struct {
	cert *tls.Certificate
	cas  *x509.CertPool
}

func load(dir, bundle string) (*material, error) {
	var cert tls.Certificate
	var err error
	if bundle != "" {
		var data []byte
		if data, err = os.ReadFile(bundle); err == nil {
			// X509KeyPair takes the CERTIFICATE blocks of its first
			// argument and the PRIVATE KEY block of its second.
			cert, err = tls.X509KeyPair(data, data)
		}
	} else {
		cert, err = tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	}
	if err != nil {
		return nil, fmt.Errorf("loading the pair: %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("loading ca.crt: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("ca.crt holds no certificate")
	}
	return &material{cert: &cert, cas: pool}, nil
}

func serial(m *material) string {
	leaf, err := x509.ParseCertificate(m.cert.Certificate[0])
	if err != nil {
		return ""
	}
	return leaf.SerialNumber.String()
}

func run() error {
	dir := flag.String("dir", "/var/run/csr-agent", "certificate directory")
	addr := flag.String("addr", ":8443", "listen address")
	require := flag.Bool("require-client-cert", false, "refuse clients without a certificate of ca.crt")
	bundle := flag.String("bundle", "", "credential bundle (key and chain) to serve, read at every handshake")
	flag.Parse()

	m, err := load(*dir, *bundle)
	if err != nil {
		return err
	}
	var current atomic.Pointer[material]
	current.Store(m)
	logLine("serving", "addr", *addr, "serial", serial(m))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			m, err := load(*dir, *bundle)
			if err != nil {
				logLine("reload signal", "signal", "SIGHUP", "error", err.Error())
				continue
			}
			current.Store(m)
			logLine("reload signal", "signal", "SIGHUP", "serial", serial(m))
		}
	}()

	auth := tls.VerifyClientCertIfGiven
	if *require {
		auth = tls.RequireAndVerifyClientCert
	}
	srv := &http.Server{
		Addr:              *addr,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			ClientAuth: auth,
			// Per connection, so a reload applies to the next handshake.
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				if *bundle != "" {
					m, err := load(*dir, *bundle)
					if err != nil {
						logLine("reading the credential bundle", "error", err.Error())
					} else if old := current.Swap(m); serial(old) != serial(m) {
						logLine("credential bundle changed", "serial", serial(m))
					}
				}
				m := current.Load()
				return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}, ClientCAs: m.cas, ClientAuth: auth}, nil
			},
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _ := os.Hostname()
			client := "none"
			if len(r.TLS.PeerCertificates) > 0 {
				client = "SUCCESS " + r.TLS.PeerCertificates[0].Subject.String()
			}
			fmt.Fprintf(w, "hello from %s over TLS; client certificate: %s\n", host, client)
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS("", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		logLine("terminating")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
