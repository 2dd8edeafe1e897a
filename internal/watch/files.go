// Package watch tells the sidecar's loop when something it published may
// have changed under it: the files in CERT_DIR (deleted, truncated, replaced
// by another container of the pod), the CA_FILE, or the signer's
// ClusterTrustBundles. It only signals; the loop checks and republishes.
//
// Signals are sent without blocking on channels with a buffer of one: a
// signal already pending covers every change after it, since the loop
// compares the whole state when it takes it.
package watch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// Files watches the certificate directory, the generation directory that
// ..data points to, and optionally the directory of CA_FILE, with inotify:
// the kernel wakes the agent only when something changes, so watching costs
// no CPU between renewals.
type Files struct {
	w     *fsnotify.Watcher
	dir   string
	caDir string

	mu  sync.Mutex
	gen string // the watched generation directory, "" if none
}

// NewFiles watches dir, the certificate directory.
func NewFiles(dir string) (*Files, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		return nil, errors.Join(fmt.Errorf("watching %s: %w", dir, err), w.Close())
	}
	return &Files{w: w, dir: filepath.Clean(dir)}, nil
}

// WatchCA also watches the directory holding caFile. The directory, not the
// file: a mounted ConfigMap or projected volume is updated by swapping its
// own ..data symlink, which a watch on the old file would miss.
func (f *Files) WatchCA(caFile string) error {
	dir := filepath.Dir(filepath.Clean(caFile))
	if err := f.w.Add(dir); err != nil {
		return fmt.Errorf("watching %s for changes of %s: %w", dir, caFile, err)
	}
	f.caDir = dir
	return nil
}

// Follow moves the watch to the generation directory ..data points to now
// (call it after every publish), so that writes through the visible
// symlinks, such as a truncation, are seen as well as the links themselves.
// A nil Files (no watch could be set up) follows nothing.
func (f *Files) Follow(ctx context.Context, generation string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gen != "" {
		// Usually gone with its directory already; then there is nothing
		// to remove.
		_ = f.w.Remove(f.gen)
		f.gen = ""
	}
	if generation == "" {
		return
	}
	path := filepath.Join(f.dir, generation)
	if err := f.w.Add(path); err != nil {
		klog.FromContext(ctx).Error(err, "Watching the published generation; changes to files through their links go unseen until the next publish", "path", path)
		return
	}
	f.gen = path
}

// Run forwards changes until ctx ends: those under the certificate
// directory to files, those under CA_FILE's directory to ca. It closes the
// watcher when it returns.
func (f *Files) Run(ctx context.Context, files, ca chan<- struct{}) error {
	defer f.w.Close()
	logger := klog.FromContext(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-f.w.Events:
			if !ok {
				return nil
			}
			logger.V(2).Info("File changed", "event", ev.String())
			dir := filepath.Dir(ev.Name)
			if dir == f.caDir || ev.Name == f.caDir {
				signal(ca)
			}
			if dir == f.dir || dir == f.currentGen() {
				signal(files)
			}
		case err, ok := <-f.w.Errors:
			if !ok {
				return nil
			}
			// An overflow lost events: assume everything changed.
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				signal(files)
				signal(ca)
				continue
			}
			logger.Error(err, "Watching files")
		}
	}
}

func (f *Files) currentGen() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

func signal(ch chan<- struct{}) {
	if ch == nil {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}
