package controller_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/csr-agent/csr-agent/internal/sign"
	"github.com/csr-agent/csr-agent/internal/writer"
)

// handshakes is an application pair: a server in the server pod and a
// client in the client pod, making a new mutual-TLS connection every 20 ms.
// Each side loads its key pair through ..data (writer.Reloader, the reader
// the README documents) and re-reads its ca.crt on every handshake, as an
// application told of each change does.
type handshakes struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	ok       map[[2]string]int // successes by issuer CN of the server's and the client's leaf
	total    int
	failures []error
}

func startHandshakes(t *testing.T, serverDir, clientDir, serverName string) *handshakes {
	t.Helper()
	serverCerts := &writer.Reloader{Dir: serverDir}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			roots, err := caPool(serverDir)
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion: tls.VersionTLS12, GetCertificate: serverCerts.GetCertificate,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
			}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &handshakes{cancel: cancel, done: make(chan struct{}), ok: map[[2]string]int{}}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if conn.(*tls.Conn).Handshake() == nil {
					_, _ = conn.Write([]byte("ok"))
				}
			}()
		}
	}()
	clientCerts := &writer.Reloader{Dir: clientDir}
	go func() {
		defer close(h.done)
		defer ln.Close()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			h.record(handshakeOnce(ctx, ln.Addr().String(), serverName, clientDir, clientCerts))
		}
	}()
	t.Cleanup(func() { h.stop() })
	return h
}

// handshakeOnce connects as the client app and returns the issuers of the
// server's and the client's leaves.
func handshakeOnce(ctx context.Context, addr, serverName, clientDir string, certs *writer.Reloader) ([2]string, error) {
	roots, err := caPool(clientDir)
	if err != nil {
		return [2]string{}, err
	}
	var mine *x509.Certificate
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{
		MinVersion: tls.VersionTLS12, ServerName: serverName, RootCAs: roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := certs.GetCertificate(nil)
			if err == nil {
				mine = c.Leaf
			}
			return c, err
		},
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return [2]string{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// TLS 1.3 clients finish before the server has checked the client's
	// certificate: its "ok" is the verdict.
	reply := make([]byte, 2)
	if _, err := conn.Read(reply); err != nil {
		return [2]string{}, fmt.Errorf("server refused the client: %w", err)
	}
	peer := conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	if mine == nil {
		return [2]string{}, errors.New("no client certificate sent")
	}
	return [2]string{peer.Issuer.CommonName, mine.Issuer.CommonName}, nil
}

func caPool(dir string) (*x509.CertPool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("no certificate in %s/ca.crt", dir)
	}
	return pool, nil
}

func (h *handshakes) record(issuers [2]string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if errors.Is(err, context.Canceled) {
		return // stopped mid-handshake
	}
	h.total++
	if err != nil {
		h.failures = append(h.failures, fmt.Errorf("handshake %d: %w", h.total, err))
		return
	}
	h.ok[issuers]++
}

// waitFor waits until n more handshakes succeed with the server's leaf of
// server and the client's of client.
func (h *handshakes) waitFor(t *testing.T, n int, server, client *sign.CA) {
	t.Helper()
	key := [2]string{server.Certificate().Subject.CommonName, client.Certificate().Subject.CommonName}
	h.mu.Lock()
	target := h.ok[key] + n
	h.mu.Unlock()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.ok[key] >= target, nil
	})
	if err != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		t.Fatalf("%d handshakes with leaves of %v, want %d; failures: %v", h.ok[key], key, target, h.failures)
	}
}

// stop ends the handshakes and returns how many were made and which failed.
func (h *handshakes) stop() (int, []error) {
	h.cancel()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total, h.failures
}
