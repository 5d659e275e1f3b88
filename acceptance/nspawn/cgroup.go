package nspawn

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// hierarchy is one mounted cgroup hierarchy and this process's cgroup in it.
type hierarchy struct {
	// Controllers as /proc/self/cgroup names them ("cpu,cpuacct",
	// "name=systemd", "" for the unified hierarchy).
	Controllers string
	// Dir is this process's cgroup directory in the hierarchy.
	Dir string
}

// currentCgroups lists, for every cgroup hierarchy (each v1 controller,
// name=systemd and the unified one), the directory of this process's
// cgroup, from /proc/self/cgroup and /proc/self/mountinfo.
func currentCgroups() ([]hierarchy, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseCgroups(string(self), string(mi))
}

// parseCgroups maps each line of /proc/self/cgroup onto its mount point in
// mountinfo. A hierarchy that is not mounted is an error: the machine could
// not be given its own cgroup there.
func parseCgroups(self, mountinfo string) ([]hierarchy, error) {
	type mnt struct{ root, point string }
	v1 := map[string]mnt{} // each controller or name=X → mount
	var unified *mnt
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		// 34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
		left, right, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		lf, rf := strings.Fields(left), strings.Fields(right)
		if len(lf) < 5 || len(rf) < 3 {
			continue
		}
		m := mnt{root: unescapeMount(lf[3]), point: unescapeMount(lf[4])}
		switch rf[0] {
		case "cgroup2":
			if unified == nil {
				unified = &m
			}
		case "cgroup":
			for _, o := range strings.Split(rf[2], ",") {
				if _, dup := v1[o]; !dup {
					v1[o] = m
				}
			}
		}
	}
	var out []hierarchy
	var errs []error
	sc = bufio.NewScanner(strings.NewReader(self))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		ctrls, path := f[1], f[2]
		var m *mnt
		if ctrls == "" {
			m = unified
		} else {
			for _, c := range strings.Split(ctrls, ",") {
				if x, ok := v1[c]; ok {
					m = &x
					break
				}
			}
		}
		if m == nil {
			errs = append(errs, fmt.Errorf("cgroup hierarchy %q (%s) is not mounted", ctrls, f[0]))
			continue
		}
		rel, err := filepath.Rel(m.root, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			errs = append(errs, fmt.Errorf("cgroup %s of hierarchy %q lies outside its mount %s (root %s)", path, ctrls, m.point, m.root))
			continue
		}
		out = append(out, hierarchy{Controllers: ctrls, Dir: filepath.Join(m.point, rel)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup hierarchy in /proc/self/cgroup")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// machineCgroup is one machine's own cgroup in every hierarchy: nspawn
// --keep-unit leaves the container in its launcher's cgroups, so without
// this every machine of the lab shares one kubepods.slice and the kubelets
// manage each other's pods.
type machineCgroup struct {
	dirs []string
}

// newMachineCgroup creates <current cgroup>/<name> in every hierarchy and
// copies cpuset.cpus and cpuset.mems into the cpuset one (a new cpuset
// cgroup is empty and takes no task).
func newMachineCgroup(name string) (*machineCgroup, error) {
	hs, err := currentCgroups()
	if err != nil {
		return nil, fmt.Errorf("machine cgroup %s: %w", name, err)
	}
	cg := &machineCgroup{}
	for _, h := range hs {
		dir := filepath.Join(h.Dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, errors.Join(fmt.Errorf("machine cgroup %s: %w", name, err), cg.remove())
		}
		cg.dirs = append(cg.dirs, dir)
		if strings.Contains(","+h.Controllers+",", ",cpuset,") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h.Dir, f))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
				}
				if err != nil {
					return nil, errors.Join(fmt.Errorf("machine cgroup %s: copying %s: %w", name, f, err), cg.remove())
				}
			}
		}
	}
	return cg, nil
}

// procsFiles are the cgroup.procs files a launcher writes its pid to.
func (c *machineCgroup) procsFiles() []string {
	out := make([]string, len(c.dirs))
	for i, d := range c.dirs {
		out[i] = filepath.Join(d, "cgroup.procs")
	}
	return out
}

// tasks counts the processes left in the machine's cgroups.
func (c *machineCgroup) tasks() int {
	n := 0
	for _, d := range c.dirs {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Name() == "cgroup.procs" {
				b, _ := os.ReadFile(p)
				n += len(strings.Fields(string(b)))
			}
			return nil
		})
	}
	return n
}

// remove deletes the machine's cgroup trees, deepest directories first
// (rmdir only takes empty cgroups; the machine must be down).
func (c *machineCgroup) remove() error {
	var errs []error
	for _, d := range c.dirs {
		var dirs []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool {
			return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
		})
		for _, p := range dirs {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", p, err))
			}
		}
	}
	c.dirs = nil
	return errors.Join(errs...)
}
