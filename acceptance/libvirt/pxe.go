package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PXE is the lab's network boot service for its VMs: dnsmasq as the DHCP
// server of the VMs' racks (it answers the VMs' MAC addresses only, each
// with its static address) and as the TFTP server of an iPXE script per VM
// and the image's kernel and initramfs.
//
// A VM whose BMC's boot device is pxe boots from its NIC (Domain.Power):
// qemu's iPXE option ROM (Debian package ipxe-qemu) asks for an address,
// loads NAME.ipxe over TFTP, and the script loads the kernel and the
// initramfs over TFTP and boots them with the command line of the direct
// kernel boot, so the same root disk comes up.
type PXE struct {
	dir string
	c   *child
	log *slog.Logger
}

// PXEConfig configures StartPXE.
type PXEConfig struct {
	// Netns is the network namespace dnsmasq runs in (a path such as
	// /run/netns/NAME); empty is this process's.
	Netns string
	// Interfaces are where dnsmasq answers: interfaces in Netns on the
	// VMs' layer 2, each with an address in the subnet of the VMs it
	// serves (a rack's gateway).
	Interfaces []string
	// Dir holds the TFTP root, the configuration, the log and the leases;
	// it is created.
	Dir string
	// Domains are the VMs served.
	Domains []*Domain
	Image   *Image
	Logger  *slog.Logger
}

// PXE files in Dir.
const (
	pxeTFTP   = "tftp"
	pxeConf   = "dnsmasq.conf"
	pxeLog    = "dnsmasq.log"
	pxeLeases = "dnsmasq.leases"
)

// StartPXE writes the TFTP root and starts dnsmasq as a child of this
// process; Stop stops it.
func StartPXE(ctx context.Context, cfg PXEConfig) (*PXE, error) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		return nil, errors.New("dnsmasq not installed: run make deps (Debian package dnsmasq-base)")
	}
	if len(cfg.Interfaces) == 0 || len(cfg.Domains) == 0 || cfg.Image == nil {
		return nil, errors.New("PXE: no interface, VM or image to serve")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, pxeTFTP)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	for name, src := range map[string]string{"vmlinuz": cfg.Image.Kernel, "initrd.img": cfg.Image.Initrd} {
		if err := linkOrCopy(src, filepath.Join(root, name)); err != nil {
			return nil, fmt.Errorf("PXE: %w", err)
		}
	}
	conf, err := pxeConfig(dir, cfg)
	if err != nil {
		return nil, err
	}
	for _, d := range cfg.Domains {
		if err := os.WriteFile(filepath.Join(root, d.cfg.Name+".ipxe"), d.ipxeScript(), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, pxeConf), conf, 0o644); err != nil {
		return nil, err
	}
	args := []string{"dnsmasq", "--keep-in-foreground", "--conf-file=" + filepath.Join(dir, pxeConf)}
	if cfg.Netns != "" {
		args = append([]string{"nsenter", "--net=" + cfg.Netns}, args...)
	}
	c, err := startChild("dnsmasq-run", exec.Command(args[0], args[1:]...), dir, false)
	if err != nil {
		return nil, err
	}
	p := &PXE{dir: dir, c: c, log: cfg.Logger}
	// dnsmasq logs "started" once it has read its configuration and bound
	// its sockets; a bad configuration makes it exit.
	if err := c.waitFor(ctx, 10*time.Second, func() error {
		if b, _ := os.ReadFile(p.LogFile()); !bytes.Contains(b, []byte("started, version")) {
			return errors.New("not started yet")
		}
		return nil
	}); err != nil {
		_ = p.Stop()
		return nil, err
	}
	cfg.Logger.Info("PXE: dnsmasq serves DHCP and TFTP", "pid", p.Pid(), "vms", len(cfg.Domains), "interfaces", cfg.Interfaces)
	return p, nil
}

// pxeConfig renders dnsmasq's configuration: no DNS, DHCP only for the
// VMs' MAC addresses (static leases), an iPXE script per VM over TFTP.
func pxeConfig(dir string, cfg PXEConfig) ([]byte, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# dnsmasq for the lab's network boot, written by tricenter.\nport=0\nno-resolv\nno-hosts\nuser=root\n")
	fmt.Fprintf(&b, "bind-interfaces\nexcept-interface=lo\nlog-facility=%s\nlog-dhcp\ndhcp-leasefile=%s\n",
		filepath.Join(dir, pxeLog), filepath.Join(dir, pxeLeases))
	fmt.Fprintf(&b, "pid-file=%s\n", filepath.Join(dir, "dnsmasq.pid"))
	fmt.Fprintf(&b, "dhcp-authoritative\ndhcp-ignore=tag:!known\nenable-tftp\ntftp-root=%s\n", filepath.Join(dir, pxeTFTP))
	for _, i := range cfg.Interfaces {
		if strings.ContainsAny(i, " \t\n/=,") || i == "" {
			return nil, fmt.Errorf("PXE: interface name %q", i)
		}
		fmt.Fprintf(&b, "interface=%s\n", i)
	}
	subnets := map[netip.Prefix]bool{}
	for i, d := range cfg.Domains {
		sub := d.cfg.Address.Masked()
		if !subnets[sub] {
			subnets[sub] = true
			m := netmask(sub.Bits())
			fmt.Fprintf(&b, "dhcp-range=%s,static,%s,1h\n", sub.Addr(), m)
		}
		tag := "vm" + strconv.Itoa(i)
		fmt.Fprintf(&b, "dhcp-host=%s,set:%s,%s,%s,1h\n", d.cfg.MAC, tag, d.cfg.Address.Addr(), d.cfg.Hostname)
		fmt.Fprintf(&b, "dhcp-boot=tag:%s,%s.ipxe\n", tag, d.cfg.Name)
	}
	return []byte(b.String()), nil
}

// netmask is the dotted IPv4 mask of a prefix length.
func netmask(bits int) netip.Addr {
	m := net.CIDRMask(bits, 32)
	return netip.AddrFrom4([4]byte{m[0], m[1], m[2], m[3]})
}

// ipxeScript boots the image's kernel and initramfs from the TFTP server
// with the VM's command line (the paths are relative to the script's).
func (d *Domain) ipxeScript() []byte {
	return []byte("#!ipxe\necho tricenter lab: network boot of " + d.cfg.Name + "\n" +
		"kernel vmlinuz " + d.cmdline() + "\ninitrd initrd.img\nboot\n")
}

// linkOrCopy makes dst hold src's content: a hard link when both are on
// one file system, else a copy.
func linkOrCopy(src, dst string) error {
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}

// Pid is dnsmasq's process id.
func (p *PXE) Pid() int { return p.c.cmd.Process.Pid }

// LogFile is dnsmasq's log: every DHCP exchange and TFTP transfer.
func (p *PXE) LogFile() string { return filepath.Join(p.dir, pxeLog) }

// Served lists the files dnsmasq sent over TFTP to addr so far, in order.
func (p *PXE) Served(addr netip.Addr) ([]string, error) { return PXEServed(p.LogFile(), addr) }

// PXEServed reads a PXE log (PXE.LogFile) and lists the files sent over
// TFTP to addr, in order (dnsmasq logs "sent /DIR/tftp/FILE to ADDR").
func PXEServed(logFile string, addr netip.Addr) ([]string, error) {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return nil, err
	}
	var out []string
	root := filepath.Join(filepath.Dir(logFile), pxeTFTP) + "/"
	for _, l := range strings.Split(string(b), "\n") {
		_, rest, ok := strings.Cut(l, " sent "+root)
		if !ok {
			continue
		}
		if f, to, ok := strings.Cut(rest, " to "); ok && strings.TrimSpace(to) == addr.String() {
			out = append(out, f)
		}
	}
	return out, nil
}

// Stop stops dnsmasq (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (p *PXE) Stop() error { return p.c.stop(p.log, 5*time.Second) }
