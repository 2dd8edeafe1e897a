package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/csr-agent/csr-agent/internal/sign"
)

// readCADir reads the CA files of dir, named like the keys of a
// kubernetes.io/tls Secret so that a mounted Secret works as is. The kubelet
// updates a mounted Secret by swapping a symlink, so the three files are
// read from one version of it; ParseCA rejects a mismatched pair anyway, and
// the next poll retries.
func readCADir(dir string) (sign.PEMs, error) {
	var p sign.PEMs
	for _, f := range []struct {
		name     string
		dst      *[]byte
		optional bool
	}{
		{sign.SecretCertKey, &p.Cert, false},
		{sign.SecretKeyKey, &p.Key, false},
		{sign.SecretCAKey, &p.CA, true},
	} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		switch {
		case errors.Is(err, fs.ErrNotExist) && f.optional:
		case errors.Is(err, fs.ErrNotExist):
			return p, fmt.Errorf("%w: %s has no %s", errNoCA, dir, f.name)
		case err != nil:
			return p, fmt.Errorf("reading CA: %w", err)
		}
		*f.dst = b
	}
	return p, nil
}

// pollCADir queues a CA sync when the files of the CA directory change, and
// every caResync regardless, as the Secret informer's resync does, so the
// trust bundle is re-checked. Reading three small files every few seconds
// costs nothing; the sync itself, with its API calls, runs only on change.
func (c *Controller) pollCADir(ctx context.Context) {
	poll := time.NewTicker(c.opts.CAPollInterval)
	defer poll.Stop()
	resync := time.NewTicker(caResync)
	defer resync.Stop()
	last, _ := readCADir(c.opts.CADir)
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			c.caSync.queue.Add(caKey)
		case <-poll.C:
			cur, err := readCADir(c.opts.CADir)
			if err == nil && samePEMs(cur, last) {
				continue
			}
			last = cur
			c.caSync.queue.Add(caKey)
		}
	}
}

func samePEMs(a, b sign.PEMs) bool {
	return bytes.Equal(a.Cert, b.Cert) && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.CA, b.CA)
}
