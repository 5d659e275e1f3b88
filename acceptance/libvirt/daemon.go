package libvirt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DaemonStartTimeout bounds how long libvirtd may take to answer after
// start (it probes qemu's capabilities first: ~8 s here).
const DaemonStartTimeout = 90 * time.Second

// virtlogdSocket is where virtlogd listens; libvirtd's qemu driver sends
// every VM's serial console through it.
const virtlogdSocket = "/run/libvirt/virtlogd-sock"

// Daemon is the virtlogd and libvirtd this process started, or nothing
// when a libvirtd already answered (then Stop leaves it alone).
type Daemon struct {
	runDir string
	log    *slog.Logger
	procs  []*child // in start order
	// before is the LIBVIRT_* iptables chains that existed before this
	// Daemon started libvirtd (nil when it started none).
	before *IptablesSnapshot

	mu      sync.Mutex
	stopped bool
}

// child is a daemon started as a child process of this one.
// child is a program this package runs in the foreground (virtlogd,
// libvirtd, dnsmasq), logging to its own file.
type child struct {
	name string
	log  string // its standard output and error
	cmd  *exec.Cmd
	done chan struct{}
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// qemuConf is libvirtd's qemu driver configuration: qemu runs as root
// without relabelling files (the lab's disks live in directories only root
// may enter), without a private /dev, outside libvirt's cgroups (this
// machine has no systemd to delegate them).
const qemuConf = `# tricenter lab: written by acceptance/libvirt.StartDaemon
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
`

// libvirtdConf is libvirtd's own configuration: its warnings and errors go
// to its stderr (runDir/libvirtd.log).
const libvirtdConf = `# tricenter lab: written by acceptance/libvirt.StartDaemon
log_outputs = "3:stderr"
`

// StartDaemon makes a libvirtd answer on qemu:///system. When one already
// does, it returns a Daemon that owns nothing. Otherwise it creates
// /var/lib/libvirt/dnsmasq (libvirtd's network driver wants it), starts
// virtlogd (unless one listens already) and libvirtd as child processes
// logging to runDir/virtlogd.log and runDir/libvirtd.log, and waits until
// libvirtd answers. Before it starts them it records the LIBVIRT_* iptables
// chains that already exist (RecordIptablesChains, in runDir): they are not
// this libvirtd's, and neither Stop nor SweepIptablesChains removes them.
//
// libvirtd gets a configuration directory of its own, runDir/etc, bound
// over /etc/libvirt in a mount namespace only it (and the qemu processes
// it starts) sees: the lab's qemu.conf, no libvirt network at all (the
// packaged "default" NAT network can never start), and the definitions of
// the domains it holds. A later StartDaemon with the same runDir finds
// them again. Files the VMs use must not live on a file system mounted
// after the daemon started.
//
// Both daemons die with this process (SIGTERM when it exits); VMs that run
// at that moment keep running, and the next libvirtd takes them over.
func StartDaemon(ctx context.Context, runDir string, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	runDir, err := filepath.Abs(runDir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{runDir: runDir, log: log}
	if answers(ctx) == nil {
		log.Info("Using the libvirtd that already runs", "uri", URI)
		return d, nil
	}
	etc := filepath.Join(runDir, "etc")
	for _, dir := range []string{"/var/lib/libvirt/dnsmasq", etc} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("libvirt daemon: %w", err)
		}
	}
	if fi, err := os.Stat("/etc/libvirt"); err != nil || !fi.IsDir() {
		return nil, errors.New("libvirt daemon: /etc/libvirt does not exist: run make deps (Debian package libvirt-clients)")
	}
	for name, data := range map[string]string{"qemu.conf": qemuConf, "libvirtd.conf": libvirtdConf} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(data), 0o644); err != nil {
			return nil, fmt.Errorf("libvirt daemon: %w", err)
		}
	}
	if d.before, err = RecordIptablesChains(runDir); err != nil {
		return nil, fmt.Errorf("libvirt daemon: %w", err)
	}
	log.Info("Recorded the LIBVIRT_* iptables chains that exist before libvirtd starts (they stay)",
		"chains", len(d.before.Chains), "file", IptablesSnapshotPath(runDir))

	if dialUnix(virtlogdSocket) != nil {
		log.Info("Starting virtlogd", "log", filepath.Join(runDir, "virtlogd.log"))
		c, err := d.start("virtlogd", exec.Command("virtlogd"), false)
		if err != nil {
			return nil, err
		}
		if err := c.waitFor(ctx, 10*time.Second, func() error { return dialUnix(virtlogdSocket) }); err != nil {
			_ = d.Stop()
			return nil, err
		}
	}

	log.Info("Starting libvirtd", "log", filepath.Join(runDir, "libvirtd.log"), "config", etc)
	// The shell binds the configuration and execs libvirtd: the child's
	// pid is libvirtd's.
	cmd := exec.Command("/bin/sh", "-c", `mount --bind "$1" /etc/libvirt && exec libvirtd`, "sh", etc)
	c, err := d.start("libvirtd", cmd, true)
	if err != nil {
		_ = d.Stop()
		return nil, err
	}
	start := time.Now()
	if err := c.waitFor(ctx, DaemonStartTimeout, func() error { return answers(ctx) }); err != nil {
		_ = d.Stop()
		return nil, err
	}
	log.Info("libvirtd answers", "took", time.Since(start).Round(time.Millisecond))
	return d, nil
}

// start starts one daemon (startChild) and remembers it for Stop.
func (d *Daemon) start(name string, cmd *exec.Cmd, newNS bool) (*child, error) {
	c, err := startChild(name, cmd, d.runDir, newNS)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, c)
	return c, nil
}

// startChild starts a program in the foreground in dir, in its own
// process group, logging to dir/NAME.log, with newNS in a mount namespace
// of its own. It gets SIGTERM when this process exits.
func startChild(name string, cmd *exec.Cmd, dir string, newNS bool) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer logf.Close()
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if newNS {
		// Go makes the new namespace's mounts private before exec.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// waitFor polls ready until it succeeds, the child exits, or limit passes.
func (c *child) waitFor(ctx context.Context, limit time.Duration, ready func() error) error {
	deadline := time.Now().Add(limit)
	logPath := c.log
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if c.exited() {
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("%s exited during start-up (%s); its log %s ends: %s", c.name, c.cmd.ProcessState, logPath, tail(out, 1500))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %s: %w (log: %s)", c.name, limit, err, logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// answers reports whether a libvirtd answers on URI.
func answers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", "-c", URI, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("virsh -c %s version: %w: %s", URI, err, tail(out, 300))
	}
	return nil
}

func dialUnix(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// IptablesBefore is the LIBVIRT_* iptables chains that existed before this
// Daemon started libvirtd, or nil when it started none (a libvirtd already
// answered): then no chain is this Daemon's to remove.
func (d *Daemon) IptablesBefore() *IptablesSnapshot { return d.before }

// Pids returns the process ids of the daemons this Daemon started (none
// when it found a libvirtd running).
func (d *Daemon) Pids() []int {
	var pids []int
	for _, c := range d.procs {
		pids = append(pids, c.cmd.Process.Pid)
	}
	return pids
}

// Stop stops the daemons this Daemon started, libvirtd first (SIGTERM,
// SIGKILL after 15 s), then removes the LIBVIRT_* iptables chains that
// appeared since it recorded them (the chains its libvirtd left), and the
// record. It does not touch VMs: undefine them first, or they keep running
// without a libvirtd. Stop is safe to call more than once; a Daemon that
// owns nothing does nothing.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	d.mu.Unlock()
	var errs []error
	for i := len(d.procs) - 1; i >= 0; i-- {
		c := d.procs[i]
		d.log.Info("Stopping "+c.name, "pid", c.cmd.Process.Pid)
		if err := c.stop(d.log, 15*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	// A libvirtd that did not stop may still use its chains: they stay,
	// and so does the record, for the sweep.
	if d.before != nil && len(errs) == 0 {
		removed, err := RemoveIptablesChains(d.before.Chains)
		for _, c := range removed {
			d.log.Info("Removed an iptables chain libvirtd left", "chain", c.String())
		}
		if err == nil {
			if err = os.Remove(IptablesSnapshotPath(d.runDir)); errors.Is(err, os.ErrNotExist) {
				err = nil // swept already
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (c *child) stop(log *slog.Logger, grace time.Duration) error {
	if c.exited() {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
	}
	log.Warn(c.name+" ignored SIGTERM: killing it", "pid", c.cmd.Process.Pid)
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not stop", c.name, c.cmd.Process.Pid)
	}
}
