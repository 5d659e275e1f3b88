package labnet

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// ProcStart is a process's start time in clock ticks since boot (field 22
// of /proc/PID/stat): with the pid it names the process, even after the pid
// is reused.
func ProcStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	var v uint64
	_, err = fmt.Sscan(f[19], &v)
	return v, err
}

// Alive reports whether the process pid still runs and, when start is not
// zero, is the one that started at start (not a later one given the same
// pid).
func Alive(pid int, start uint64) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	st, err := ProcStart(pid)
	return err == nil && (start == 0 || st == start)
}
