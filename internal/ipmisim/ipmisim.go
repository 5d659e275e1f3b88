// Package ipmisim runs OpenIPMI's ipmi_sim as a BMC for tests and the lab.
//
// For each BMC it generates ipmi_sim's LAN configuration (lan.conf), a
// command file that creates the management controller and its sensors, a
// FRU image, compiled SDRs (sdrcomp) and a chassis_control hook, then
// starts ipmi_sim as a plain child process and stops it by pid.
//
// The hook logs every call ipmi_sim makes ("get power", "set power 1",
// "set boot pxe", ...) so tests can assert that a power or boot change
// really reached the machine. What the hook does for power is pluggable
// (Power): by default it keeps the power state in a file; the lab points it
// at virsh or machinectl so that power on starts a VM or a container.
//
// Several BMCs share UDP port 623 on different lab addresses
// (198.18.0.0/15). Tests and the benchmark take theirs from the BMC block
// 198.18.48.0/20 (LabAddr) and make them exist with LabAddrs, which puts
// them on an interface of their own: like any address the inventory
// accepts for a BMC (loopback addresses are refused there), and delivered
// locally. ipmi_sim speaks RMCP+ with cipher suite 3 only.
//
// Address indices (LabAddr), one /24 per package so that test packages
// running at the same time never share an address:
//
//	0-253      198.18.48.0/24  bmc tests
//	254-507    198.18.49.0/24  internal/ipmisim tests
//	508-761    198.18.50.0/24  cmd/tricenter tests
//	762-1015   198.18.51.0/24  provider tests
//	1016-1269  198.18.52.0/24  the benchmark (bench/bmc.sh)
//	1270-1523  198.18.53.0/24  installer/etcd tests (the drill's BMC power)
//	1524-1777  198.18.54.0/24  acceptance/libvirt tests
//	1778-2031  198.18.55.0/24  installer tests (the fence's BMC power)
package ipmisim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultPort is the IPMI-over-LAN port.
const DefaultPort = 623

// labRange is where lab addresses come from; BMCs listen there, nowhere
// else.
var labRange = netip.MustParsePrefix("198.18.0.0/15")

// Available reports why ipmi_sim BMCs cannot run here, or nil. It includes
// LabAvailable: the BMCs listen on lab addresses.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("ipmi_sim BMCs listen on UDP port 623, which needs root")
	}
	if err := LabAvailable(); err != nil {
		return err
	}
	for _, b := range []string{"ipmi_sim", "sdrcomp"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s is not installed: run make deps (Debian package openipmi)", b)
		}
	}
	return nil
}

// Power says what the chassis_control hook runs. Each field is a /bin/sh
// command line inserted verbatim into the generated hook; $IPMISIM_DIR is
// the BMC's directory. Status must exit 0 when the machine is powered on
// and non-zero when it is off. The zero value simulates power with a state
// file. For a libvirt VM, for example:
//
//	Power{On: "virsh start vm1", Off: "virsh destroy vm1",
//	      SoftOff: "virsh shutdown vm1", Reset: "virsh reset vm1",
//	      Status: `[ "$(virsh domstate vm1)" = running ]`}
type Power struct {
	On, Off, SoftOff, Reset, Status string
}

func (p Power) withDefaults() Power {
	if p.On == "" {
		p.On = `echo 1 > "$IPMISIM_DIR/power"`
	}
	if p.Off == "" {
		p.Off = `echo 0 > "$IPMISIM_DIR/power"`
	}
	if p.SoftOff == "" {
		p.SoftOff = p.Off
	}
	if p.Reset == "" {
		p.Reset = ":"
	}
	if p.Status == "" {
		// Shell builtins only: ipmi_sim runs the hook for every status
		// query, and forks are what makes a hook slow.
		p.Status = `read -r v < "$IPMISIM_DIR/power" && [ "$v" = 1 ]`
	}
	return p
}

// Config describes one simulated BMC.
type Config struct {
	// Name identifies the instance (letters, digits, '-', '_').
	Name string
	// Address is a lab address in 198.18.0.0/15 configured on an
	// interface of this machine, such as one from LabAddrs.
	Address netip.Addr
	Port    int // DefaultPort when zero
	// User and Password are the administrator account. The password is
	// written only to the BMC's lan.conf (mode 0600).
	User, Password string
	// Dir holds the generated files and ipmi_sim's state; it must exist.
	Dir string

	// FRU is FRU device 0; nil leaves the BMC without FRU data.
	FRU *FRU
	// Sensors get SDRs and readings; nil means none.
	Sensors []Sensor

	// NoHook starts ipmi_sim without a chassis_control hook: power is
	// then internal to ipmi_sim and setting the boot device fails with
	// completion code 0xCC, as on BMCs that do not support it.
	NoHook bool
	// Power plugs the hook's power actions; see Power.
	Power Power
	// PoweredOn is the initial state of the simulated power (ignored when
	// Power.Status is set).
	PoweredOn bool

	// ManufacturerID and ProductID are reported by Get Device ID
	// (defaults: 0x1291, 0x0f02).
	ManufacturerID uint32
	ProductID      uint16
}

// BMC is a running ipmi_sim.
type BMC struct {
	cfg  Config
	dir  string
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	waitErr error
	stopped bool
}

func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("ipmisim: Name is empty")
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("ipmisim: name %q: use letters, digits, '-' and '_'", c.Name)
		}
	}
	if !c.Address.IsValid() || !labRange.Contains(c.Address) {
		return fmt.Errorf("ipmisim %s: address %v must be a lab address in %s (ipmisim.LabAddrs configures them)", c.Name, c.Address, labRange)
	}
	if c.User == "" || len(c.User) > 16 {
		return fmt.Errorf("ipmisim %s: user must be 1 to 16 bytes", c.Name)
	}
	if len(c.Password) > 20 {
		return fmt.Errorf("ipmisim %s: password must be at most 20 bytes", c.Name)
	}
	for _, s := range []string{c.User, c.Password} {
		if strings.ContainsAny(s, "\" \t\n\\") {
			return fmt.Errorf("ipmisim %s: user and password must not contain spaces, quotes or backslashes", c.Name)
		}
	}
	if c.Dir == "" {
		return fmt.Errorf("ipmisim %s: Dir is empty", c.Name)
	}
	seen := map[uint8]bool{}
	for _, s := range c.Sensors {
		if err := s.validate(); err != nil {
			return fmt.Errorf("ipmisim %s: %w", c.Name, err)
		}
		if seen[s.Number] {
			return fmt.Errorf("ipmisim %s: sensor number %d is used twice", c.Name, s.Number)
		}
		seen[s.Number] = true
	}
	return nil
}

// Start writes the BMC's files under cfg.Dir/cfg.Name, starts ipmi_sim
// and waits until it answers an RMCP presence ping.
func Start(ctx context.Context, cfg Config) (*BMC, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.ManufacturerID == 0 {
		cfg.ManufacturerID = 0x1291
	}
	if cfg.ProductID == 0 {
		cfg.ProductID = 0x0f02
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// A leftover ipmi_sim on the address would answer the readiness ping
	// while the new one fails to bind: refuse up front.
	probe, err := net.ListenPacket("udp", net.JoinHostPort(cfg.Address.String(), strconv.Itoa(cfg.Port)))
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return nil, fmt.Errorf("ipmisim %s: address %s is not configured on this machine (ipmisim.LabAddrs configures it): %w", cfg.Name, cfg.Address, err)
	}
	if err != nil {
		return nil, fmt.Errorf("ipmisim %s: %s:%d is taken (a leftover ipmi_sim?): %w", cfg.Name, cfg.Address, cfg.Port, err)
	}
	probe.Close()
	dir, err := filepath.Abs(filepath.Join(cfg.Dir, cfg.Name))
	if err != nil {
		return nil, err
	}
	b := &BMC{cfg: cfg, dir: dir, done: make(chan struct{})}
	if err := b.writeFiles(ctx); err != nil {
		return nil, fmt.Errorf("ipmisim %s: %w", cfg.Name, err)
	}
	log, err := os.OpenFile(filepath.Join(dir, "ipmi_sim.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	// The password lives in lan.conf only: never on the command line.
	cmd := exec.Command("ipmi_sim", "-c", b.path("lan.conf"), "-f", b.path("cmds.emu"), "-s", b.path("state"), "-n")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "IPMISIM_DIR="+dir)
	// Own process group, so the hook's children are stopped with it.
	// Pdeathsig: a test binary killed on timeout takes ipmi_sim with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting ipmi_sim %s: %w", cfg.Name, err)
	}
	b.cmd = cmd
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.waitErr = err
		b.mu.Unlock()
		close(b.done)
	}()
	if err := b.waitReady(ctx); err != nil {
		_ = b.Stop()
		out, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
		return nil, fmt.Errorf("ipmi_sim %s on %s: %w\n%s", cfg.Name, b.Addr(), err, tail(out, 2000))
	}
	return b, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func (b *BMC) path(name string) string { return filepath.Join(b.dir, name) }

// Name is the instance name.
func (b *BMC) Name() string { return b.cfg.Name }

// Addr is the BMC's "address:port".
func (b *BMC) Addr() string {
	return net.JoinHostPort(b.cfg.Address.String(), strconv.Itoa(b.cfg.Port))
}

// Address and Port are where the BMC listens.
func (b *BMC) Address() netip.Addr { return b.cfg.Address }

// Port is the UDP port the BMC listens on.
func (b *BMC) Port() int { return b.cfg.Port }

// Dir is the BMC's directory (configuration, hook log, state).
func (b *BMC) Dir() string { return b.dir }

// Pid is ipmi_sim's process id.
func (b *BMC) Pid() int { return b.cmd.Process.Pid }

// Stop terminates ipmi_sim (SIGTERM, then SIGKILL after 5 s) and waits for
// it. It is safe to call more than once.
func (b *BMC) Stop() error {
	b.mu.Lock()
	if b.stopped || b.cmd == nil {
		b.mu.Unlock()
		return nil
	}
	b.stopped = true
	b.mu.Unlock()
	pgid := -b.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-b.done
	}
	return nil
}

// Exited reports whether ipmi_sim has exited, and how.
func (b *BMC) Exited() (bool, error) {
	select {
	case <-b.done:
		b.mu.Lock()
		defer b.mu.Unlock()
		return true, b.waitErr
	default:
		return false, nil
	}
}

func (b *BMC) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var last error
	for time.Now().Before(deadline) {
		if exited, err := b.Exited(); exited {
			return fmt.Errorf("exited during start-up: %w", err)
		}
		if last = Ping(ctx, b.Addr(), 100*time.Millisecond); last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("no answer to an RMCP ping within 10s: %w", last)
}

// Ping sends an RMCP/ASF presence ping to addr ("host:port") and waits up
// to timeout for the pong.
func Ping(ctx context.Context, addr string, timeout time.Duration) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// RMCP v1.0, no ACK, class ASF; IANA 4542, Presence Ping, tag 0x42.
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x42, 0x00, 0x00}
	if _, err := conn.Write(ping); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if n < 12 || buf[3] != 0x06 || buf[8] != 0x40 {
		return fmt.Errorf("unexpected answer to RMCP ping: % x", buf[:n])
	}
	return nil
}

func (b *BMC) writeFiles(ctx context.Context) error {
	cfg := b.cfg
	state := b.path(filepath.Join("state", "ipmi_sim", cfg.Name))
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	// Stale logs from an earlier run would confuse Events.
	for _, f := range []string{"hook.log", "boot", "power"} {
		if err := os.Remove(b.path(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	var lan strings.Builder
	fmt.Fprintf(&lan, "name %q\nset_working_mc 0x20\n  startlan 1\n    addr %s %d\n    priv_limit admin\n",
		cfg.Name, cfg.Address, cfg.Port)
	for _, p := range []string{"callback", "user", "operator", "admin"} {
		fmt.Fprintf(&lan, "    allowed_auths_%s md5 straight\n", p)
	}
	lan.WriteString("    guid a123456789abcdefa123456789abcdef\n  endlan\n")
	if !cfg.NoHook {
		fmt.Fprintf(&lan, "  chassis_control \"%s %s\"\n", b.path("hook.sh"), cfg.Name)
	}
	fmt.Fprintf(&lan, "  user 2 true %q %q admin 10 md5 straight\n", cfg.User, cfg.Password)
	if err := writeFileAtomic(b.path("lan.conf"), []byte(lan.String()), 0o600); err != nil {
		return err
	}

	var emu strings.Builder
	fmt.Fprintf(&emu, "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x%06x 0x%04x persist_sdr\n",
		cfg.ManufacturerID, cfg.ProductID)
	emu.WriteString("sel_enable 0x20 50 0x0a\n")
	if cfg.FRU != nil {
		img, err := EncodeFRU(*cfg.FRU)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(b.path("fru.bin"), img, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&emu, "mc_add_fru_data 0x20 0 %d file 0 %q\n", FRUSize, b.path("fru.bin"))
	}
	emu.WriteString(sensorCommands(cfg.Sensors))
	emu.WriteString("mc_enable 0x20\n")
	if err := writeFileAtomic(b.path("cmds.emu"), []byte(emu.String()), 0o644); err != nil {
		return err
	}

	// SDRs: sdrcomp output placed where persist_sdr reads it. An empty
	// repository is fine when there are no sensors.
	src := sdrSource(cfg.Name, cfg.Sensors)
	if err := writeFileAtomic(b.path("sdr.src"), []byte(src), 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(state, ".sdr.20.main.tmp")
	out, err := exec.CommandContext(ctx, "sdrcomp", "-o", tmp, b.path("sdr.src")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sdrcomp: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, filepath.Join(state, "sdr.20.main")); err != nil {
		return err
	}

	if !cfg.NoHook {
		if cfg.Power.Status == "" {
			v := "0"
			if cfg.PoweredOn {
				v = "1"
			}
			if err := writeFileAtomic(b.path("power"), []byte(v+"\n"), 0o644); err != nil {
				return err
			}
		}
		if err := writeFileAtomic(b.path("hook.sh"), []byte(hookScript(b.dir, cfg.Power.withDefaults())), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// hookScript is ipmi_sim's chassis_control program. ipmi_sim runs it as
// "hook.sh NAME get power", "hook.sh NAME set power 1", "... set boot pxe",
// "... set shutdown 1", "... set reset 1", "... get boot"; "get" answers
// "param:value" lines and a non-zero exit becomes an IPMI error.
func hookScript(dir string, p Power) string {
	return `#!/bin/sh
# chassis_control hook for ipmi_sim, generated by tricenter's ipmisim.
IPMISIM_DIR='` + dir + `'
export IPMISIM_DIR
shift
echo "$*" >> "$IPMISIM_DIR/hook.log"
op=$1
shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power)
			if { ` + p.Status + `; } >/dev/null 2>&1; then echo power:1; else echo power:0; fi ;;
		boot)
			b=
			[ -e "$IPMISIM_DIR/boot" ] && read -r b < "$IPMISIM_DIR/boot"
			echo "boot:${b:-default}" ;;
		*)
			echo "unsupported parameter $p"; exit 1 ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		p=$1 v=$2
		shift 2
		case $p in
		power)
			if [ "$v" = 1 ]; then
				` + p.On + ` || exit 1
			else
				` + p.Off + ` || exit 1
			fi ;;
		shutdown) ` + p.SoftOff + ` || exit 1 ;;
		reset) ` + p.Reset + ` || exit 1 ;;
		boot) echo "$v" > "$IPMISIM_DIR/boot" ;;
		identify) [ $# -ge 1 ] && shift ;;
		*) echo "unsupported parameter $p"; exit 1 ;;
		esac
	done ;;
*)
	echo "unsupported operation $op"; exit 1 ;;
esac
exit 0
`
}

// Events returns the hook calls so far, oldest first, without the
// instance name: "get power", "set power 1", "set boot pxe", ...
func (b *BMC) Events() ([]string, error) {
	f, err := os.Open(b.path("hook.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

// SetEvents returns the hook calls that change something ("set ...").
func (b *BMC) SetEvents() ([]string, error) {
	all, err := b.Events()
	var out []string
	for _, e := range all {
		if strings.HasPrefix(e, "set ") {
			out = append(out, e)
		}
	}
	return out, err
}

// WaitEvent polls the hook log until an event equal to want appears, or
// ctx ends.
func (b *BMC) WaitEvent(ctx context.Context, want string) error {
	for {
		evs, err := b.Events()
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ipmisim %s: hook never saw %q (saw %q): %w", b.cfg.Name, want, evs, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PoweredOn reads the simulated power state file (default Power only).
func (b *BMC) PoweredOn() (bool, error) {
	v, err := os.ReadFile(b.path("power"))
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(v)) == "1", nil
}

// BootDevice is the last boot device the hook was given ("pxe",
// "default", ...), or "" if none.
func (b *BMC) BootDevice() (string, error) {
	v, err := os.ReadFile(b.path("boot"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(v)), err
}

// writeFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// StartAll starts the BMCs, at most parallel at a time. If one fails, the
// ones already started are stopped and the first error is returned.
func StartAll(ctx context.Context, cfgs []Config, parallel int) ([]*BMC, error) {
	if parallel < 1 {
		parallel = 1
	}
	out := make([]*BMC, len(cfgs))
	errs := make([]error, len(cfgs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = Start(ctx, cfgs[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		StopAll(out)
		return nil, err
	}
	return out, nil
}

// StopAll stops every non-nil BMC.
func StopAll(bmcs []*BMC) {
	var wg sync.WaitGroup
	for _, b := range bmcs {
		if b == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Stop()
		}()
	}
	wg.Wait()
}

// Ipmitool runs "ipmitool -I lanplus -C 3" against the BMC with its
// credentials; the password goes through the environment (-E), never the
// command line. It returns the combined output.
func (b *BMC) Ipmitool(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"-I", "lanplus", "-C", "3", "-H", b.cfg.Address.String(),
		"-p", strconv.Itoa(b.cfg.Port), "-U", b.cfg.User, "-E"}, args...)
	cmd := exec.CommandContext(ctx, "ipmitool", full...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+b.cfg.Password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ipmitool %s against %s: %w: %s", strings.Join(args, " "), b.cfg.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
