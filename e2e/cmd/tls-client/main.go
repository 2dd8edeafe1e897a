// Command tls-client is the end-to-end suite's client pod: it makes HTTPS
// requests to -addr, each on a new connection (a full handshake), verifying
// the server's certificate against -ca for -server-name, as a client that
// reached the server by its Service DNS name would. With -cert-dir it
// presents the certificate there (tls.crt, tls.key; read at every
// handshake, so renewals are used).
//
// It makes -count requests (0: until SIGTERM) every -interval, prints one
// JSON line per failure (with -print-ok, per success too) and a summary line
// at the end, and exits 1 if any request failed. Requests GET -path, or
// POST -post (a JSON body) to it, as the client-certificate example's curl
// asks the API server who it is.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	failed, err := run()
	if err != nil {
		out, _ := json.Marshal(map[string]string{"msg": "error", "error": err.Error()})
		fmt.Println(string(out))
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

func run() (bool, error) {
	addr := flag.String("addr", "", "host:port to connect to")
	serverName := flag.String("server-name", "", "name the server's certificate must carry")
	caFile := flag.String("ca", "", "PEM CA bundle verifying the server")
	certDir := flag.String("cert-dir", "", "directory with the client's tls.crt and tls.key")
	count := flag.Int("count", 1, "requests to make; 0: until SIGTERM")
	interval := flag.Duration("interval", 100*time.Millisecond, "pause between requests")
	path := flag.String("path", "/", "request path")
	post := flag.String("post", "", "JSON body to POST (default: GET)")
	printOK := flag.Bool("print-ok", false, "print every response body")
	flag.Parse()
	if *addr == "" || *serverName == "" || *caFile == "" {
		return false, errors.New("-addr, -server-name and -ca are required")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return false, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return false, errors.New("-ca holds no certificate")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: *serverName, RootCAs: pool}
	if *certDir != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key"))
			return &c, err
		}
	}
	dialer := &net.Dialer{Timeout: 3 * time.Second}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   cfg,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, *addr)
		},
	}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ok, fails := 0, 0
	var last, lastServer string
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(*interval):
			}
		}
		if ctx.Err() != nil {
			break
		}
		body, server, err := request(ctx, client, "https://"+*serverName+*path, *post)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			fails++
			out, _ := json.Marshal(map[string]string{"msg": "request failed", "error": err.Error()})
			fmt.Println(string(out))
			continue
		}
		ok++
		last, lastServer = body, server
		if *printOK {
			out, _ := json.Marshal(map[string]string{"msg": "ok", "body": body})
			fmt.Println(string(out))
		}
	}
	out, _ := json.Marshal(map[string]string{"msg": "done", "ok": strconv.Itoa(ok), "failed": strconv.Itoa(fails), "last": last, "server": lastServer})
	fmt.Println(string(out))
	return fails > 0, nil
}

func request(ctx context.Context, c *http.Client, url, post string) (body, server string, err error) {
	method, reqBody := http.MethodGet, io.Reader(nil)
	if post != "" {
		method, reqBody = http.MethodPost, strings.NewReader(post)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, reqBody)
	if err != nil {
		return "", "", err
	}
	if post != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", "", fmt.Errorf("status %s", resp.Status)
	}
	return string(data), describe(resp.TLS), nil
}

// describe names the server's verified certificate, for the summary line.
func describe(state *tls.ConnectionState) string {
	if state == nil || len(state.PeerCertificates) == 0 {
		return ""
	}
	leaf := state.PeerCertificates[0]
	return fmt.Sprintf("subject %q, DNS names %v, IPs %v, issuer %q, serial %s, valid %s to %s",
		leaf.Subject, leaf.DNSNames, leaf.IPAddresses, leaf.Issuer, leaf.SerialNumber,
		leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
}
