package libvirt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// labRange is where every VM address comes from.
var labRange = netip.MustParsePrefix("198.18.0.0/15")

// Defaults of DomainConfig.
const (
	DefaultMemoryMiB = 1024
	DefaultVCPUs     = 1
)

// TBCacheMiB is the size of qemu's TCG translation cache per VM: without
// the limit a VM grows to ~1.1 GB of RSS, with it it stays near 500 MB.
const TBCacheMiB = 128

// PowerOnWait bounds how long the BMC's power-on hook waits for a VM that
// is still shutting down after a power off (ipmi_sim's power cycle is off,
// then on about a second later).
const PowerOnWait = 20 * time.Second

// DomainConfig describes one VM.
type DomainConfig struct {
	// Name is the libvirt domain name: letters, digits, '.', '_' and '-',
	// starting with a letter or digit, at most 63 bytes. Give every VM of
	// a lab a common prefix so that ListDomains finds them after a crash.
	Name string
	// Dir holds the VM's files (overlay, seed disk, console log, domain
	// XML); it is created, and removed by Undefine.
	Dir string
	// Bridge is an existing Linux bridge the VM's NIC (eth0 inside) is
	// plugged into, such as a labnet.Bridge.
	Bridge string
	// MAC is the NIC's address; empty derives a locally administered
	// 52:54:00:xx:xx:xx from Name.
	MAC string
	// Address is the VM's static address and prefix, in 198.18.0.0/15.
	Address netip.Prefix
	// Gateway is the VM's default route; the zero value leaves it without
	// one. It must lie in Address's subnet.
	Gateway netip.Addr
	// Hostname defaults to Name.
	Hostname string
	// AuthorizedKey is root's authorized_keys ("ssh-ed25519 AAAA...").
	AuthorizedKey []byte
	// MemoryMiB and VCPUs default to DefaultMemoryMiB and DefaultVCPUs.
	MemoryMiB int
	VCPUs     int
}

var (
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// setDefaults fills the zero fields.
func (c *DomainConfig) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = c.Name
	}
	if c.MAC == "" {
		h := sha256.Sum256([]byte(c.Name))
		c.MAC = fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.VCPUs == 0 {
		c.VCPUs = DefaultVCPUs
	}
}

// validate checks a configuration after setDefaults.
func (c *DomainConfig) validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("libvirt domain name %q: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	if c.Dir == "" {
		return fmt.Errorf("VM %s: Dir is empty", c.Name)
	}
	if c.Bridge == "" || strings.ContainsAny(c.Bridge, "/ \t\n'\"<>&") {
		return fmt.Errorf("VM %s: Bridge %q: name an existing Linux bridge", c.Name, c.Bridge)
	}
	mac, err := net.ParseMAC(c.MAC)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
		return fmt.Errorf("VM %s: MAC %q: want a unicast Ethernet address such as 52:54:00:12:34:56", c.Name, c.MAC)
	}
	c.MAC = mac.String()
	if !c.Address.IsValid() || !c.Address.Addr().Is4() || !labRange.Contains(c.Address.Addr()) ||
		c.Address.Bits() < labRange.Bits() || c.Address.Bits() > 30 {
		return fmt.Errorf("VM %s: Address %v must be an IPv4 address with a prefix of /15 to /30 in the lab range %s", c.Name, c.Address, labRange)
	}
	if c.Address.Addr() == c.Address.Masked().Addr() {
		return fmt.Errorf("VM %s: Address %v is its subnet's network address", c.Name, c.Address)
	}
	if c.Gateway.IsValid() && (!c.Address.Masked().Contains(c.Gateway) || c.Gateway == c.Address.Addr()) {
		return fmt.Errorf("VM %s: Gateway %v is not another address of %v", c.Name, c.Gateway, c.Address.Masked())
	}
	if !hostnameRE.MatchString(c.Hostname) {
		return fmt.Errorf("VM %s: Hostname %q: use 1 to 63 lower-case letters, digits and '-'", c.Name, c.Hostname)
	}
	if len(bytes.TrimSpace(c.AuthorizedKey)) == 0 {
		return fmt.Errorf("VM %s: AuthorizedKey is empty: nobody could log in", c.Name)
	}
	if c.MemoryMiB < 256 {
		return fmt.Errorf("VM %s: MemoryMiB %d: give it at least 256", c.Name, c.MemoryMiB)
	}
	if c.VCPUs < 1 || c.VCPUs > 64 {
		return fmt.Errorf("VM %s: VCPUs %d: want 1 to 64", c.Name, c.VCPUs)
	}
	return nil
}

// ipArg is the kernel's ip= argument: ADDR::GW:MASK:HOST:eth0:off.
func (c *DomainConfig) ipArg() string {
	gw := ""
	if c.Gateway.IsValid() {
		gw = c.Gateway.String()
	}
	return fmt.Sprintf("ip=%s::%s:%s:%s:eth0:off", c.Address.Addr(), gw, netmask(c.Address.Bits()), c.Hostname)
}

// Domain is a VM defined in libvirt.
type Domain struct {
	cfg       DomainConfig
	hostKey   string
	machineID string
	uuid      string
}

// Files in a VM's directory.
const (
	overlayFile = "disk.qcow2"
	seedFile    = "seed.img"
	consoleFile = "console.log"
	xmlFile     = "domain.xml"
	// pxeXMLFile is the same domain booting from its NIC (PXE); the
	// BMC's power on defines whichever its boot device asks for.
	pxeXMLFile = "domain-pxe.xml"
)

// metadataNS marks the domains this package defines; their directory is
// kept there for UndefineDomain.
const metadataNS = "https://github.com/tricenter/terraform-provider-tricenter/acceptance/libvirt"

// Define creates the VM's files in cfg.Dir (a qcow2 overlay on img.Disk,
// the seed disk with a new ed25519 host key, an empty console log) and
// defines the domain in libvirt. The VM is not started: lab servers start
// powered off (Start, or power on through its BMC).
func Define(ctx context.Context, img *Image, cfg DomainConfig) (*Domain, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if img == nil {
		return nil, fmt.Errorf("VM %s: no image (EnsureImage)", cfg.Name)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if _, err := os.Stat(filepath.Join("/sys/class/net", cfg.Bridge, "bridge")); err != nil {
		return nil, fmt.Errorf("VM %s: %s is not a Linux bridge on this machine", cfg.Name, cfg.Bridge)
	}
	if _, err := virsh(ctx, "domstate", cfg.Name); err == nil {
		return nil, fmt.Errorf("VM %s is already defined in libvirt: undefine it first (UndefineDomain)", cfg.Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("VM %s: %w", cfg.Name, err)
	}
	u := randHex(16)
	d := &Domain{cfg: cfg, machineID: randHex(16), uuid: u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]}
	overlay := filepath.Join(dir, overlayFile)
	_ = os.Remove(overlay)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.Disk, overlay).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("VM %s: qemu-img create an overlay on %s: %w: %s", cfg.Name, img.Disk, err, tail(out, 500))
	}
	if err := d.makeSeed(ctx); err != nil {
		return nil, fmt.Errorf("VM %s: seed disk: %w", cfg.Name, err)
	}
	if err := os.WriteFile(d.ConsoleLog(), nil, 0o644); err != nil {
		return nil, err
	}
	for file, pxe := range map[string]bool{xmlFile: false, pxeXMLFile: true} {
		x, err := d.domainXML(img, pxe)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, file), x, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := virsh(ctx, "define", filepath.Join(dir, xmlFile)); err != nil {
		return nil, fmt.Errorf("VM %s: %w", cfg.Name, err)
	}
	return d, nil
}

// makeSeed writes the seed disk: an ext4 image (mke2fs -d) with the VM's
// host name, machine-id, SSH host key and root's authorized keys, which
// the image's seed unit copies into place at every boot.
func (d *Domain) makeSeed(ctx context.Context) error {
	src := filepath.Join(d.cfg.Dir, "seed.d")
	if err := os.RemoveAll(src); err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := os.Mkdir(src, 0o700); err != nil {
		return err
	}
	key := filepath.Join(src, "ssh_host_ed25519_key")
	if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@"+d.cfg.Hostname, "-f", key).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %w: %s", err, tail(out, 300))
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	f := strings.Fields(string(pub))
	if len(f) < 2 {
		return fmt.Errorf("ssh-keygen wrote %q", pub)
	}
	d.hostKey = f[0] + " " + f[1]
	auth := append(bytes.TrimSpace(d.cfg.AuthorizedKey), '\n')
	for name, data := range map[string][]byte{
		"hostname":        []byte(d.cfg.Hostname + "\n"),
		"machine-id":      []byte(d.machineID + "\n"),
		"authorized_keys": auth,
	} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o600); err != nil {
			return err
		}
	}
	seed := filepath.Join(d.cfg.Dir, seedFile)
	_ = os.Remove(seed)
	if out, err := exec.CommandContext(ctx, "mke2fs", "-q", "-t", "ext4", "-O", "^has_journal", "-L", "tcseed", "-d", src, seed, "4M").CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs -d: %w: %s", err, tail(out, 500))
	}
	return os.Chmod(seed, 0o600)
}

// domainTmpl is the libvirt domain: TCG (type qemu), direct kernel boot
// (or, for PXE, boot from the NIC: qemu's iPXE option ROM), virtio disk
// and NIC on a Linux bridge, the seed disk read-only, the serial console
// to a file, no graphics, qemu as root without relabelling (whatever the
// libvirtd's qemu.conf says).
var domainTmpl = template.Must(template.New("domain").Funcs(template.FuncMap{"x": xmlEscape}).Parse(`<domain type='qemu'>
  <name>{{x .Cfg.Name}}</name>
  <uuid>{{.UUID}}</uuid>
  <metadata>
    <tricenter:vm xmlns:tricenter='{{x .NS}}'>
      <dir>{{x .Cfg.Dir}}</dir>
    </tricenter:vm>
  </metadata>
  <memory unit='MiB'>{{.Cfg.MemoryMiB}}</memory>
  <vcpu>{{.Cfg.VCPUs}}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
{{- if .PXE}}
    <boot dev='network'/>
{{- else}}
    <kernel>{{x .Img.Kernel}}</kernel>
    <initrd>{{x .Img.Initrd}}</initrd>
    <cmdline>{{x .Cmdline}}</cmdline>
{{- end}}
  </os>
  <features>
    <acpi/>
    <apic/>
    <tcg>
      <tb-cache unit='MiB'>{{.TBCache}}</tb-cache>
    </tcg>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{{x .Overlay}}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{{x .Seed}}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <interface type='bridge'>
      <mac address='{{x .Cfg.MAC}}'/>
      <source bridge='{{x .Cfg.Bridge}}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{{x .Console}}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{{x .Console}}' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'>
    <label>+0:+0</label>
  </seclabel>
</domain>
`))

func xmlEscape(s string) (string, error) {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil // quotes included: attributes use '...'

}

// cmdline is the VM's kernel command line. It carries the VM's machine-id
// too (the seed has the same): systemd uses it from its first instant and
// writes it to /etc/machine-id.
func (d *Domain) cmdline() string {
	return strings.Join([]string{"root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0",
		d.cfg.ipArg(), "systemd.machine_id=" + d.machineID}, " ")
}

// domainXML renders the domain definition: direct kernel boot, or boot
// from the NIC when pxe.
func (d *Domain) domainXML(img *Image, pxe bool) ([]byte, error) {
	cfg := d.cfg
	var b bytes.Buffer
	err := domainTmpl.Execute(&b, map[string]any{
		"Cfg": cfg, "Img": img, "NS": metadataNS, "Cmdline": d.cmdline(), "TBCache": TBCacheMiB,
		"UUID": d.uuid, "PXE": pxe,
		"Overlay": filepath.Join(cfg.Dir, overlayFile),
		"Seed":    filepath.Join(cfg.Dir, seedFile),
		"Console": filepath.Join(cfg.Dir, consoleFile),
	})
	return b.Bytes(), err
}

// Name is the libvirt domain name.
func (d *Domain) Name() string { return d.cfg.Name }

// Dir is the VM's directory.
func (d *Domain) Dir() string { return d.cfg.Dir }

// Address is the VM's address (without the prefix length).
func (d *Domain) Address() netip.Addr { return d.cfg.Address.Addr() }

// ConsoleLog is the file the VM's serial console is written to.
func (d *Domain) ConsoleLog() string { return filepath.Join(d.cfg.Dir, consoleFile) }

// HostKey is the VM's SSH host key as a known_hosts key
// ("ssh-ed25519 AAAA..."): prefix it with the address for known_hosts.
func (d *Domain) HostKey() string { return d.hostKey }

// Start powers the VM on (virsh start). It returns once qemu runs; the
// guest then boots (WaitSSH).
func (d *Domain) Start(ctx context.Context) error {
	if _, err := virsh(ctx, "start", d.cfg.Name); err != nil {
		return fmt.Errorf("VM %s: %w", d.cfg.Name, err)
	}
	return nil
}

// Destroy cuts the VM's power (virsh destroy: qemu is killed, the guest
// gets no warning). A VM that is off stays off.
func (d *Domain) Destroy(ctx context.Context) error {
	return destroy(ctx, d.cfg.Name)
}

func destroy(ctx context.Context, name string) error {
	if _, err := virsh(ctx, "destroy", name); err != nil {
		if st, serr := domState(ctx, name); serr == nil && st != "running" && st != "paused" {
			return nil
		}
		return fmt.Errorf("VM %s: %w", name, err)
	}
	return nil
}

// Running reports whether the VM runs (virsh domstate says "running").
func (d *Domain) Running(ctx context.Context) (bool, error) {
	st, err := domState(ctx, d.cfg.Name)
	if err != nil {
		return false, fmt.Errorf("VM %s: %w", d.cfg.Name, err)
	}
	return st == "running", nil
}

func domState(ctx context.Context, name string) (string, error) {
	out, err := virsh(ctx, "domstate", name)
	return strings.TrimSpace(out), err
}

// Undefine destroys the VM if it runs, removes its definition from
// libvirt and deletes its directory.
func (d *Domain) Undefine(ctx context.Context) error {
	return undefine(ctx, d.cfg.Name, d.cfg.Dir)
}

func undefine(ctx context.Context, name, dir string) error {
	if err := destroy(ctx, name); err != nil {
		return err
	}
	if _, err := virsh(ctx, "undefine", name); err != nil {
		// A transient domain (one a new libvirtd found running after a
		// crash, its definition lost with the old configuration
		// directory) is gone once destroyed.
		if _, serr := domState(ctx, name); serr == nil {
			return fmt.Errorf("VM %s: %w", name, err)
		}
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("VM %s: %w", name, err)
		}
	}
	return nil
}

// UndefineDomain is Undefine for a domain known only by name (found with
// ListDomains after a crash): it destroys and undefines it and deletes the
// directory Define recorded in the domain's metadata, if any.
func UndefineDomain(ctx context.Context, name string) error {
	dir := ""
	if out, err := virsh(ctx, "metadata", name, metadataNS); err == nil {
		var m struct {
			Dir string `xml:"dir"`
		}
		if xml.Unmarshal([]byte(out), &m) == nil && filepath.IsAbs(m.Dir) {
			// Only a directory that still looks like a VM's.
			if _, err := os.Stat(filepath.Join(m.Dir, xmlFile)); err == nil {
				dir = m.Dir
			}
		}
	}
	return undefine(ctx, name, dir)
}

// ListDomains returns the names of all defined domains (running or not)
// that start with prefix, sorted.
func ListDomains(ctx context.Context, prefix string) ([]string, error) {
	out, err := virsh(ctx, "list", "--all", "--name")
	if err != nil {
		return nil, err
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if n := strings.TrimSpace(sc.Text()); n != "" && strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	return names, nil
}

// WaitSSH waits until the VM's sshd sends its banner on port 22, or ctx
// ends; the error then quotes the end of the console log.
func (d *Domain) WaitSSH(ctx context.Context) error {
	addr := netip.AddrPortFrom(d.cfg.Address.Addr(), 22).String()
	var last error
	for {
		if last = sshBanner(ctx, addr); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			console, _ := os.ReadFile(d.ConsoleLog())
			return fmt.Errorf("VM %s: no SSH banner on %s: %w; its console (%s) ends: %s",
				d.cfg.Name, addr, errors.Join(ctx.Err(), last), d.ConsoleLog(), tail(console, 1500))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func sshBanner(ctx context.Context, addr string) error {
	dl := net.Dialer{Timeout: 2 * time.Second}
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("not an SSH banner: %q", line)
	}
	return nil
}

// Power is what the VM's BMC does for IPMI chassis control: the shell
// lines of ipmi_sim's chassis_control hook (ipmisim.Config.Power).
//
//   - On starts the VM (virsh start): from its NIC (PXE, see PXE) when
//     the BMC's boot device is pxe, else its kernel directly, as a
//     server's boot loader would. The BMC keeps the boot device until it
//     is set again (ipmi_sim does not tell the hook whether an override
//     is for one boot only). After an Off or SoftOff it first
//     waits, at most PowerOnWait, until the VM no longer runs: ipmi_sim's
//     power cycle sends on about a second after off, and virsh start on a
//     domain still shutting down fails with "Domain is already active".
//     On a VM that runs and was not asked to stop it does nothing, like a
//     BMC's power on of a server that is on.
//   - Off cuts the power (virsh destroy); SoftOff asks the guest to shut
//     down (virsh shutdown: ACPI power button); Reset is a hard reset
//     (virsh reset). Off and SoftOff of a VM that is off succeed.
//   - Status exits 0 only when virsh domstate says "running".
func (d *Domain) Power() ipmisim.Power {
	v := "virsh -q -c " + shell.Quote(URI)
	n := shell.Quote(d.cfg.Name)
	state := `"$(` + v + ` domstate ` + n + ` 2>/dev/null)"`
	// stopping marks an Off or SoftOff that On must wait out.
	stopping := `"$IPMISIM_DIR/libvirt-stopping"`
	tries := strconv.Itoa(int(PowerOnWait / (200 * time.Millisecond)))
	// The boot device the BMC was given picks the definition to start.
	define := `x=` + shell.Quote(filepath.Join(d.cfg.Dir, xmlFile)) + `; b=; [ -e "$IPMISIM_DIR/boot" ] && read -r b < "$IPMISIM_DIR/boot"; ` +
		`[ "$b" = pxe ] && x=` + shell.Quote(filepath.Join(d.cfg.Dir, pxeXMLFile)) + `; ` + v + ` define "$x" >/dev/null`
	return ipmisim.Power{
		On: `{ i=0; while [ -e ` + stopping + ` ] && [ ` + state + ` = running ] && [ $i -lt ` + tries + ` ]; do sleep 0.2; i=$((i+1)); done; ` +
			`rm -f ` + stopping + `; [ ` + state + ` = running ] || { ` + define + ` && ` + v + ` start ` + n + ` >/dev/null; }; }`,
		Off:     `{ touch ` + stopping + `; ` + v + ` destroy ` + n + ` >/dev/null || [ ` + state + ` != running ]; }`,
		SoftOff: `{ touch ` + stopping + `; ` + v + ` shutdown ` + n + ` >/dev/null || [ ` + state + ` != running ]; }`,
		Reset:   v + ` reset ` + n + ` >/dev/null`,
		Status:  `[ ` + state + ` = running ]`,
	}
}

// virsh runs virsh against URI and returns its standard output.
func virsh(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", URI}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg += " (timed out)"
		}
		return string(out), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return string(out), nil
}
