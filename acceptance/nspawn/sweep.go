package nspawn

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// MachinesID is the id in the machines' cgroup names
// ("tricenter-ID-MACHINE"), for Sweep.
func (l *Lab) MachinesID() string { return l.id }

// Sweep removes what a lab left behind when its process died before
// Close: every process in its machines' cgroups (killed) and the cgroups,
// the overlay mounts under dir, and its namespaces and links (labnet.Sweep
// with netID). It returns what it removed.
func Sweep(netID, machinesID, dir string) ([]string, error) {
	var removed []string
	var errs []error
	if machinesID != "" {
		cgs, err := machineCgroups(machinesID)
		if err != nil {
			errs = append(errs, err)
		}
		for _, cg := range cgs {
			killCgroup(cg)
		}
		for _, cg := range cgs {
			if err := removeCgroup(cg); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, "cgroup "+cg)
		}
	}
	if netID != "" {
		r, err := labnet.Sweep(netID)
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if dir != "" {
		mounts, err := mountsUnder(dir)
		if err != nil {
			errs = append(errs, err)
		}
		for _, m := range mounts {
			if out, err := exec.Command("umount", "-l", m).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("umount %s: %w: %s", m, err, out))
				continue
			}
			removed = append(removed, "mount "+m)
		}
	}
	return removed, errors.Join(errs...)
}

// Leftovers lists what Sweep would remove.
func Leftovers(netID, machinesID, dir string) ([]string, error) {
	var left []string
	if machinesID != "" {
		cgs, err := machineCgroups(machinesID)
		if err != nil {
			return nil, err
		}
		for _, cg := range cgs {
			left = append(left, "cgroup "+cg)
		}
	}
	if netID != "" {
		l, err := labnet.Leftovers(netID)
		if err != nil {
			return nil, err
		}
		left = append(left, l...)
	}
	if dir != "" {
		mounts, err := mountsUnder(dir)
		if err != nil {
			return nil, err
		}
		for _, m := range mounts {
			left = append(left, "mount "+m)
		}
	}
	return left, nil
}

// machineCgroups finds the lab's machine cgroups in this process's
// hierarchies (the lab process and its cleaner share them).
func machineCgroups(id string) ([]string, error) {
	hs, err := currentCgroups()
	if err != nil {
		return nil, fmt.Errorf("reading this process's cgroups: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, h := range hs {
		// The lab's machines sit next to or under its process's cgroup:
		// look from the hierarchy's root down two levels.
		for _, base := range []string{h.Dir, filepath.Dir(h.Dir)} {
			matches, _ := filepath.Glob(filepath.Join(base, "tricenter-"+id+"-*"))
			more, _ := filepath.Glob(filepath.Join(base, "*", "tricenter-"+id+"-*"))
			for _, m := range append(matches, more...) {
				if fi, err := os.Stat(m); err == nil && fi.IsDir() && !seen[m] {
					seen[m] = true
					out = append(out, m)
				}
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func killCgroup(dir string) {
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() {
			return nil
		}
		f, err := os.Open(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// removeCgroup removes a cgroup and its children, deepest first, waiting
// briefly for killed processes to leave.
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(10 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := syscall.Rmdir(dirs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// mountsUnder lists mount points under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Mount points are listed by their real path: a directory reached
	// through a symbolic link (a shared .cache) must match them.
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMount(f[4])
		if p == abs || strings.HasPrefix(p, abs+"/") {
			out = append(out, p)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, nil
}
