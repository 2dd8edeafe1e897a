package status

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Serve answers GET requests on ln until ctx ends, closing ln.
//
// It speaks just enough HTTP/1.1 for what calls it, kubelet probes and
// Prometheus scrapes: one request per connection, answered with
// "Connection: close". net/http's server would add 420 KB to the binary and
// as much to the resident memory of an agent that runs in every pod, for
// three fixed plain-text pages.
func Serve(ctx context.Context, ln net.Listener, respond func(path string) Response) error {
	logger := klog.FromContext(ctx)
	logger.Info("Serving /healthz, /readyz and /metrics", "address", ln.Addr().String())
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := ln.Accept()
		switch {
		case err == nil:
			conns.Go(func() { serveConn(conn, respond) })
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
		default:
			// Out of file descriptors, most likely: wait rather than spin.
			logger.Error(err, "Accepting an HTTP connection")
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// maxRequest bounds what is read of a request: a request line and the
// headers a probe or a scraper sends.
const maxRequest = 8 << 10

// serveConn reads one request and answers it. The deadline covers a client
// that connects and says nothing.
func serveConn(conn net.Conn, respond func(path string) Response) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(io.LimitReader(conn, maxRequest))
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	method, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	target, proto, _ := strings.Cut(rest, " ")
	for { // the headers: none matters here
		h, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if h == "\r\n" || h == "\n" {
			break
		}
	}
	var resp Response
	switch {
	case !strings.HasPrefix(proto, "HTTP/1.") || !strings.HasPrefix(target, "/"):
		resp = Response{Code: http.StatusBadRequest, ContentType: "text/plain; charset=utf-8", Body: []byte("bad request\n")}
	case method != http.MethodGet && method != http.MethodHead:
		resp = Response{Code: http.StatusMethodNotAllowed, ContentType: "text/plain; charset=utf-8", Body: []byte("GET only\n")}
	default:
		path, _, _ := strings.Cut(target, "?")
		resp = respond(path)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		resp.Code, http.StatusText(resp.Code), resp.ContentType, len(resp.Body))
	if method != http.MethodHead {
		_, _ = w.Write(resp.Body)
	}
	_ = w.Flush()
}
