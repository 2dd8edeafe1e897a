package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Recover repairs what an interrupted Publish (a killed or crashed process)
// can leave behind. Call it once at start-up, before Load and Publish:
//
//   - removes the temporary symlinks ..data_tmp and ..link_tmp;
//   - when ..data is missing or dangling, points it at the newest generation
//     that is complete and valid (as Load checks it), if there is one;
//   - removes every other generation directory; never the one ..data
//     points to, and nothing whose name is not a generation name;
//   - recreates missing visible symlinks for the files of the live generation
//     and removes our symlinks to files it does not have.
//
// A directory with nothing valid in it is not an error: Load then returns
// ErrNotFound. A live generation that is itself damaged is kept, and Load
// reports ErrDamaged; republish.
func (w *Writer) Recover() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	dir := w.opts.Dir

	for _, tmp := range []string{dataTmp, linkTmp} {
		if err := removeSymlink(filepath.Join(dir, tmp)); err != nil {
			return fmt.Errorf("recovering %s: %w", dir, err)
		}
	}
	gens, err := generations(dir)
	if err != nil {
		return fmt.Errorf("recovering %s: %w", dir, err)
	}
	live, err := w.liveGeneration(gens)
	if err != nil {
		return fmt.Errorf("recovering %s: %w", dir, err)
	}

	var errs []error
	if err := removeGenerationsExcept(dir, live); err != nil {
		errs = append(errs, err)
	}
	if live != "" {
		if err := w.linkVisible(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recovering %s: %w", dir, err)
	}
	return nil
}

// liveGeneration returns the generation ..data points to, first repointing a
// missing or dangling ..data to the newest valid generation. It returns ""
// when nothing is live (a dangling ..data is then removed, so the directory
// reads as empty rather than broken).
func (w *Writer) liveGeneration(gens []string) (string, error) {
	dir := w.opts.Dir
	link := filepath.Join(dir, dataLink)
	info, err := os.Lstat(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", err
	case info.Mode()&fs.ModeSymlink == 0:
		// Someone else's layout. Removing or renaming over it could
		// destroy data we do not understand.
		return "", fmt.Errorf("%w: %s is not a symlink", ErrDamaged, dataLink)
	default:
		cur, err := os.Readlink(link)
		if err != nil {
			return "", err
		}
		if target, err := os.Stat(link); err == nil && target.IsDir() {
			// ..data resolves: it stays, even if what it holds is
			// damaged (Load says so) or is not one of our names.
			return cur, nil
		}
	}
	for _, g := range slices.Backward(gens) {
		if _, err := w.read(filepath.Join(dir, g)); err != nil {
			continue
		}
		if err := swapSymlink(dir, dataTmp, g, dataLink); err != nil {
			return "", fmt.Errorf("pointing %s to %s: %w", dataLink, g, err)
		}
		return g, nil
	}
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return "", nil
}

// generations lists generation directories, oldest first.
func generations(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var gens []string
	for _, e := range entries { // ReadDir sorts by name, which is by time
		if e.IsDir() && isGeneration(e.Name()) {
			gens = append(gens, e.Name())
		}
	}
	return gens, nil
}

// removeSymlink removes path if it is a symlink. Anything else under one of
// our temporary names is left alone and reported.
func removeSymlink(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		return fmt.Errorf("%w: %s is not a symlink", ErrDamaged, filepath.Base(path))
	}
	return os.Remove(path)
}
