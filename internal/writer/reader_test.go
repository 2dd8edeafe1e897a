package writer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// reloadingPair is the reader documented for applications (cmd/agent's
// package documentation, "Reading the files"): resolve ..data once per
// handshake, reload tls.pem when the generation changed, keep the previous
// pair if a read fails. This test keeps the documented code honest.
type reloadingPair struct {
	dir  string
	mu   sync.Mutex
	gen  string
	cert *tls.Certificate
}

func (p *reloadingPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gen, err := os.Readlink(filepath.Join(p.dir, "..data"))
	if err == nil && gen != p.gen {
		pem, err := os.ReadFile(filepath.Join(p.dir, gen, "tls.pem"))
		if err == nil {
			if c, err := tls.X509KeyPair(pem, pem); err == nil {
				p.gen, p.cert = gen, &c
			}
		}
	}
	if p.cert == nil {
		return nil, errors.New("no certificate yet")
	}
	return p.cert, nil
}

func TestDocumentedReaderServesEachNewPairFromItsNextHandshake(t *testing.T) {
	w, _ := newTestWriter(t, nil)
	ca := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: (&reloadingPair{dir: w.opts.Dir}).GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) { _ = c.(*tls.Conn).Handshake(); c.Close() }(conn)
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.root)
	handshake := func() (*x509.Certificate, error) {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs: roots, ServerName: "pod.ns.svc.cluster.local", Time: func() time.Time { return t0 },
		})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}

	if _, err := handshake(); err == nil {
		t.Fatal("handshake succeeded before anything was published")
	}
	for i := range 3 {
		pub := mustPublish(t, w, ca.issue(t, newKey(t, "p256"), "pkcs8"))
		got, err := handshake()
		if err != nil {
			t.Fatalf("publish %d: handshake verifying ca.crt and the DNS name: %v", i, err)
		}
		if !got.Equal(pub.Leaf) {
			t.Fatalf("publish %d: server still presents serial %v, want %v", i, got.SerialNumber, pub.Leaf.SerialNumber)
		}
	}
}
