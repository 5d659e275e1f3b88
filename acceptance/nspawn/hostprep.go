package nspawn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

// HostSysctls are the host settings kubelet insists on and cannot write
// from inside a machine (/proc/sys is read-only there): without them it
// restart-loops with "Failed to start ContainerManager ... open
// /proc/sys/kernel/panic: read-only file system" (../shared/LAB.md).
//
// The inotify limits are raised too: every machine's systemd, containerd
// and kubelet hold inotify instances of the host's one user (root), and
// with the default 128 a machine booting next to a running cluster fails
// with "Failed to allocate manager object: Too many open files".
var HostSysctls = map[string]string{
	"fs.inotify.max_user_instances": "8192",
	"fs.inotify.max_user_watches":   "1048576",
	"vm.overcommit_memory":          "1",
	"vm.panic_on_oom":               "0",
	"kernel.panic":                  "10",
	"kernel.panic_on_oops":          "1",
}

// hostPrepDir holds the record of the host's original values, shared by
// every lab running on this host (labs of different test packages run at
// the same time): the first lab up records them, the last one down puts
// them back.
var hostPrepDir = "/run/tricenter-nspawn"

type hostPrepState struct {
	// Original values before the first lab changed them.
	Original map[string]string `json:"original"`
	// Holders are the pids of the processes whose labs are up.
	Holders []int `json:"holders"`
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("reading host sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("setting host sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// withHostPrep runs f on the shared state under an exclusive lock and
// saves what f leaves (or removes the record when f returns nil).
func withHostPrep(f func(*hostPrepState) (*hostPrepState, error)) error {
	if err := os.MkdirAll(hostPrepDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(hostPrepDir, "sysctl.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	path := filepath.Join(hostPrepDir, "sysctl.json")
	st := &hostPrepState{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, st); err != nil {
			return fmt.Errorf("%s is damaged (%w): restore the host sysctls %v by hand and remove it", path, err, keys(HostSysctls))
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Labs of processes that died without Close no longer hold the host.
	st.Holders = slices.DeleteFunc(st.Holders, func(pid int) bool { return syscall.Kill(pid, 0) != nil && pid != os.Getpid() })
	next, err := f(st)
	if err != nil {
		return err
	}
	if next == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o600)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// hostHolds counts this process's labs that are up (several labs of one
// process hold the host once).
var (
	hostMu    sync.Mutex
	hostHolds int
)

// prepareHost sets HostSysctls, recording the host's values first unless
// another lab already did. releaseHost undoes it.
func prepareHost() error {
	hostMu.Lock()
	defer hostMu.Unlock()
	if hostHolds > 0 {
		hostHolds++
		return nil
	}
	err := withHostPrep(func(st *hostPrepState) (*hostPrepState, error) {
		if len(st.Holders) == 0 || st.Original == nil {
			st.Original = map[string]string{}
		}
		// Record what nobody changed yet (all of it for the first lab; a
		// key a newer lab version added, when older labs hold the host).
		for _, k := range keys(HostSysctls) {
			if _, ok := st.Original[k]; ok {
				continue
			}
			v, err := readSysctl(k)
			if err != nil {
				return nil, err
			}
			st.Original[k] = v
		}
		for _, k := range keys(HostSysctls) {
			if err := writeSysctl(k, HostSysctls[k]); err != nil {
				return nil, errors.Join(err, restore(st.Original))
			}
		}
		if !slices.Contains(st.Holders, os.Getpid()) {
			st.Holders = append(st.Holders, os.Getpid())
		}
		return st, nil
	})
	if err == nil {
		hostHolds++
	}
	return err
}

// releaseHost drops this process's hold; the last lab down restores the
// host's original values.
func releaseHost() error {
	hostMu.Lock()
	defer hostMu.Unlock()
	if hostHolds == 0 {
		return nil
	}
	if hostHolds--; hostHolds > 0 {
		return nil
	}
	return withHostPrep(func(st *hostPrepState) (*hostPrepState, error) {
		st.Holders = slices.DeleteFunc(st.Holders, func(pid int) bool { return pid == os.Getpid() })
		if len(st.Holders) > 0 {
			return st, nil
		}
		return nil, restore(st.Original)
	})
}

func restore(orig map[string]string) error {
	var errs []error
	for _, k := range keys(orig) {
		errs = append(errs, writeSysctl(k, orig[k]))
	}
	return errors.Join(errs...)
}
