package writer

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestDocumentedReaderServesEachNewPairFromItsNextHandshake(t *testing.T) {
	w, _ := newTestWriter(t, nil)
	ca := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: (&Reloader{Dir: w.opts.Dir}).GetCertificate})
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
