package nspawn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
)

// BootTimeout bounds how long a machine may take from start to sshd.
const BootTimeout = 2 * time.Minute

// Machine is one server: a systemd-nspawn container with systemd as PID 1
// in its own network namespace, on an overlay of the shared root
// filesystem (its disk survives power cycles until the lab closes).
type Machine struct {
	Name    string
	Address netip.Addr
	lab     *Lab
	ns      *labnet.NS
	gateway netip.Addr
	prefix  int
	dir     string
	rootfs  string
	log     *slog.Logger
	// extra machines are outside the inventory (jump hosts).
	extra bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	mounted bool
	cg      *machineCgroup
	// cut is set while the machine's bridge port is down (power off).
	cut bool
}

func (m *Machine) upper() string  { return filepath.Join(m.dir, "upper") }
func (m *Machine) merged() string { return filepath.Join(m.dir, "merged") }

// stateDirs are bound into the machine from its own directory on the
// host's file system: containerd's overlayfs snapshotter and kubelet cannot
// work on the machine's overlay root ("failed to mount rootfs component
// &{overlay ...}: invalid argument").
var stateDirs = []string{"/var/lib/containerd", "/var/lib/kubelet"}

func (m *Machine) stateDir(p string) string {
	return filepath.Join(m.dir, "state", filepath.Base(p))
}

// nspawnArgs are the flags that let containerd and kubelet run inside the
// machine (../shared/LAB.md, "Kubernetes inside nspawn machines"): every
// capability, /dev/kmsg for kubelet's OOM watcher, the keyring and bpf
// system calls for runc, and the machine's own network namespace.
func (m *Machine) nspawnArgs() []string {
	args := []string{"--register=no", "--keep-unit", "--quiet",
		"-D", m.merged(), "-M", m.lab.machineName(m.Name), "--boot", "--console=pipe",
		"--network-namespace-path=/run/netns/" + m.ns.Name,
		"--resolv-conf=off", "--timezone=off", "--link-journal=no",
		"--capability=all", "--bind=/dev/kmsg", "--system-call-filter=@keyring bpf"}
	for _, d := range stateDirs {
		args = append(args, "--bind="+m.stateDir(d)+":"+d)
	}
	return args
}

// launcher is the shell that moves itself into the machine's cgroups and
// then execs systemd-nspawn: the lab process itself stays where it is.
const launcher = `while [ "$1" != -- ]; do echo $$ > "$1" || { echo "cannot join cgroup $1" >&2; exit 97; }; shift; done; shift; exec "$@"`

// prepare creates the overlay directories and the machine's identity: host
// name, machine-id, its own SSH host key and the lab's authorized key.
func (m *Machine) prepare(ctx context.Context, authorized []byte) error {
	for _, d := range []string{m.upper(), filepath.Join(m.dir, "work"), m.merged(),
		filepath.Join(m.upper(), "etc/ssh"), filepath.Join(m.upper(), "root/.ssh"),
		m.stateDir(stateDirs[0]), m.stateDir(stateDirs[1])} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(m.upper(), "root/.ssh"), 0o700); err != nil {
		return err
	}
	files := map[string]string{
		"etc/hostname":   m.Name + "\n",
		"etc/machine-id": randHex(16) + "\n",
		"etc/hosts":      "127.0.0.1 localhost\n" + m.Address.String() + " " + m.Name + "\n",
	}
	for p, s := range files {
		if err := os.WriteFile(filepath.Join(m.upper(), p), []byte(s), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(m.upper(), "root/.ssh/authorized_keys"), authorized, 0o600); err != nil {
		return err
	}
	key := filepath.Join(m.upper(), "etc/ssh/ssh_host_ed25519_key")
	if _, err := os.Stat(key); err != nil {
		out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@"+m.Name, "-f", key).CombinedOutput()
		if err != nil {
			return fmt.Errorf("machine %s host key: %w: %s", m.Name, err, out)
		}
	}
	return nil
}

func (m *Machine) mount() error {
	if m.mounted {
		return nil
	}
	opts := "lowerdir=" + m.rootfs + ",upperdir=" + m.upper() + ",workdir=" + filepath.Join(m.dir, "work")
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, m.merged()).CombinedOutput(); err != nil {
		return fmt.Errorf("machine %s: mounting its overlay: %w: %s", m.Name, err, out)
	}
	m.mounted = true
	return nil
}

// Running reports whether the machine is powered on.
func (m *Machine) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Start powers the machine on and waits until its sshd accepts
// connections. Starting a running machine does nothing.
func (m *Machine) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.done != nil {
		select {
		case <-m.done:
		default:
			m.mu.Unlock()
			return nil
		}
	}
	if err := m.mount(); err != nil {
		m.mu.Unlock()
		return err
	}
	logf, err := os.OpenFile(filepath.Join(m.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if m.cg == nil {
		if m.cg, err = newMachineCgroup(m.lab.cgroupName(m.Name)); err != nil {
			logf.Close()
			m.mu.Unlock()
			return err
		}
	}
	if m.cut {
		if err := m.reconnect(ctx); err != nil {
			logf.Close()
			m.mu.Unlock()
			return err
		}
	}
	args := append([]string{"-c", launcher, "sh"}, m.cg.procsFiles()...)
	args = append(append(args, "--", "systemd-nspawn"), m.nspawnArgs()...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	m.log.Debug("Booting machine")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		m.mu.Unlock()
		return fmt.Errorf("machine %s: starting systemd-nspawn: %w", m.Name, err)
	}
	done := make(chan struct{})
	m.cmd, m.done = cmd, done
	m.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	bctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	go func() {
		// A launcher or nspawn that exits ends the wait at once.
		select {
		case <-done:
			cancel()
		case <-bctx.Done():
		}
	}()
	if err := waitTCPIn(bctx, "/run/netns/"+m.ns.Name, netip.AddrPortFrom(m.Address, 22).String()); err != nil {
		select {
		case <-done:
			console, _ := os.ReadFile(filepath.Join(m.dir, "console.log"))
			return fmt.Errorf("machine %s stopped while booting (%s); its console log ends: %s", m.Name, cmd.ProcessState, tail(console, 800))
		default:
		}
		return fmt.Errorf("machine %s did not boot: %w (console log: %s)", m.Name, err, filepath.Join(m.dir, "console.log"))
	}
	m.log.Debug("Machine up", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// PowerOff cuts the machine's power like a BMC "power off": first its
// network port goes dark (a dead server sends nothing: no FIN, no RST, so
// its peers must notice by timeout, as they would in a datacenter), then
// every process in it is killed at once (SIGKILL to its init, which takes
// the whole PID namespace down). It returns once the machine is down; the
// port stays dark until Start.
func (m *Machine) PowerOff(ctx context.Context) error {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	if done == nil {
		m.mu.Unlock()
		return nil
	}
	select {
	case <-done:
		m.mu.Unlock()
		return nil
	default:
	}
	if !m.cut {
		if err := m.ns.SetPortUp("host0", false); err != nil {
			m.mu.Unlock()
			return fmt.Errorf("machine %s: silencing its network before the power cut: %w", m.Name, err)
		}
		m.cut = true
	}
	m.mu.Unlock()
	if leader := childOf(cmd.Process.Pid); leader > 0 {
		_ = syscall.Kill(leader, syscall.SIGKILL)
	} else {
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
	return m.waitDown(ctx, 10*time.Second, cmd)
}

// reconnect drops what the killed machine's kernel still holds for its
// dead sockets (so no stale FIN or RST leaves when the port comes back:
// a rebooted server has no memory of its connections) and brings its
// bridge port up. Called with m.mu held.
func (m *Machine) reconnect(ctx context.Context) error {
	if out, err := m.ns.Command(ctx, "ss", "-K", "-t", "-a").CombinedOutput(); err != nil {
		m.log.Debug("Dropping the dead machine's sockets failed", "err", err, "output", strings.TrimSpace(string(out)))
	}
	if err := m.ns.SetPortUp("host0", true); err != nil {
		return fmt.Errorf("machine %s: reconnecting its network at power on: %w", m.Name, err)
	}
	m.cut = false
	return nil
}

// Shutdown asks the machine to power off cleanly (systemd stops its units).
func (m *Machine) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if done == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	return m.waitDown(ctx, 30*time.Second, cmd)
}

func (m *Machine) waitDown(ctx context.Context, limit time.Duration, cmd *exec.Cmd) error {
	m.mu.Lock()
	done := m.done
	m.mu.Unlock()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if leader := childOf(cmd.Process.Pid); leader > 0 {
		_ = syscall.Kill(leader, syscall.SIGKILL)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("machine %s did not stop", m.Name)
	}
}

// childOf returns the first child of pid (the container's init), or 0.
func childOf(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				return n
			}
		}
	}
	return 0
}

// Command runs a command in the machine's network namespace (not inside
// the container): for probes such as ping from the machine's address.
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return m.ns.Command(ctx, name, args...)
}

func (m *Machine) destroy() error {
	var errs []error
	if err := m.PowerOff(context.Background()); err != nil {
		errs = append(errs, err)
	}
	if m.cg != nil {
		// The kernel empties the cgroups as the killed processes exit.
		deadline := time.Now().Add(10 * time.Second)
		for m.cg.tasks() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if err := m.cg.remove(); err != nil {
			errs = append(errs, fmt.Errorf("machine %s: %w", m.Name, err))
		}
		m.cg = nil
	}
	if m.mounted {
		if out, err := exec.Command("umount", m.merged()).CombinedOutput(); err != nil {
			// A process still holding the mount: detach it lazily.
			if out2, err2 := exec.Command("umount", "-l", m.merged()).CombinedOutput(); err2 != nil {
				errs = append(errs, fmt.Errorf("machine %s: umount: %w: %s %s", m.Name, err, out, out2))
			}
		}
		m.mounted = false
	}
	return errors.Join(errs...)
}
