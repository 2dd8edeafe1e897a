package testenv

import (
	"os"
	"strconv"
	"strings"
)

// Children lists the live (not zombie) processes whose parent is ppid, from
// /proc; nil where there is no /proc. Tests use it to prove that what they
// started is gone.
func Children(ppid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, parent, ok := procStat(pid); ok && parent == ppid && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Alive reports whether pid runs and is not a zombie.
func Alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// procStat reads a process's state and parent from /proc/<pid>/stat; the
// fields after the parenthesised command name are: state, ppid, ...
func procStat(pid int) (state string, ppid int, ok bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return fields[0], ppid, err == nil
}
