package writer

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"sync"
)

// Reloader is the reader documented for applications (cmd/agent's package
// documentation, "Reading the files"), as code the project's own tests and
// benchmarks run: on each TLS handshake it resolves ..data once, reloads
// tls.pem when the generation changed, and keeps the previous pair if a read
// fails. Applications copy the few lines; they cannot import internal/.
type Reloader struct {
	Dir string

	mu   sync.Mutex
	gen  string
	cert *tls.Certificate
}

// GetCertificate is a tls.Config.GetCertificate.
func (p *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gen, err := os.Readlink(filepath.Join(p.Dir, "..data"))
	if err == nil && gen != p.gen {
		pem, err := os.ReadFile(filepath.Join(p.Dir, gen, DefaultBundleFile))
		if err == nil {
			if c, err := tls.X509KeyPair(pem, pem); err == nil {
				p.gen, p.cert = gen, &c
			}
		}
	}
	if p.cert == nil {
		return nil, errors.New("no certificate yet")
	}
	return p.cert, nil // a failed read keeps the previous pair
}
