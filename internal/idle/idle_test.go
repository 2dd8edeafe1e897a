package idle

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// rssFile is this process's resident program pages, in kB.
func rssFile(t *testing.T) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status:", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseDropsTheProgramPages(t *testing.T) {
	before := rssFile(t)
	err := Release()
	if errors.Is(err, syscall.EINVAL) {
		t.Skip("this kernel has no MADV_PAGEOUT:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if after := rssFile(t); after >= before {
		t.Errorf("resident program pages %d kB after Release, %d kB before", after, before)
	}
}

// After Release, a page of the program faulted back in while idle must not
// bring its neighbours: the program's read-only mappings are marked for
// random access (VmFlags "rr" in smaps), which turns read-ahead off.
func TestReleaseTurnsReadAheadOffForTheProgram(t *testing.T) {
	if err := Release(); errors.Is(err, syscall.EINVAL) {
		t.Skip("this kernel has no MADV_PAGEOUT:", err)
	} else if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	checked, inProgram := 0, false
	for _, line := range strings.Split(string(smaps), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			inProgram = len(fields) >= 6 && fields[5] == exe && !strings.Contains(fields[1], "w")
			continue
		}
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok && inProgram {
			checked++
			if !strings.Contains(" "+flags+" ", " rr ") {
				t.Errorf("a read-only mapping of the program has VmFlags%s, without rr", flags)
			}
		}
	}
	if checked == 0 {
		t.Error("no read-only mapping of the program found in smaps")
	}
}
