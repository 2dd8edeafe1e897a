package idle

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pageOutProgram applies MADV_PAGEOUT to the read-only mappings of the
// program file (its code and read-only data). They are clean file pages, so
// the kernel drops them rather than writing anything, and faults them back
// in when they are used again. Writable mappings (initialised data) are left
// alone.
func pageOutProgram() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the program file: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(lines.Text())
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// The raw system call: the range is an address the kernel listed,
		// not Go memory that a []byte for unix.Madvise could describe.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT); errno != 0 {
			errs = append(errs, fmt.Errorf("madvise(MADV_PAGEOUT) %s: %w", fields[0], errno))
		}
		// Without it, a page the idle agent faults back in (a timer, a GC
		// cycle, a watch bookmark) brings its neighbours along: the kernel
		// reads ahead around a fault in a file mapping and maps what it
		// read, so a few hundred bytes of code cost 64 KiB or more of
		// resident memory. MADV_RANDOM reads only the page faulted on; the
		// next renewal pays with more, smaller reads, once.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_RANDOM); errno != 0 {
			errs = append(errs, fmt.Errorf("madvise(MADV_RANDOM) %s: %w", fields[0], errno))
		}
	}
	return errors.Join(append(errs, lines.Err())...)
}
