package libvirt

import (
	"context"
	"encoding/xml"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/golden"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

func validConfig() DomainConfig {
	return DomainConfig{
		Name: "tctest-vm1", Dir: "/var/lib/lab/vm1", Bridge: "tcbr0",
		Address: netip.MustParsePrefix("198.19.230.10/24"), Gateway: netip.MustParseAddr("198.19.230.1"),
		AuthorizedKey: []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey lab\n"),
	}
}

func TestDomainConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*DomainConfig)
		want   string // "" when valid
	}{
		{"valid", func(*DomainConfig) {}, ""},
		{"no gateway", func(c *DomainConfig) { c.Gateway = netip.Addr{} }, ""},
		{"198.18", func(c *DomainConfig) { c.Address, c.Gateway = netip.MustParsePrefix("198.18.1.5/24"), netip.Addr{} }, ""},
		{"private range", func(c *DomainConfig) { c.Address = netip.MustParsePrefix("192.168.1.10/24") }, "lab range 198.18.0.0/15"},
		{"public", func(c *DomainConfig) { c.Address = netip.MustParsePrefix("8.8.8.8/24") }, "lab range"},
		{"ipv6", func(c *DomainConfig) { c.Address = netip.MustParsePrefix("fd00::5/64") }, "IPv4"},
		{"no address", func(c *DomainConfig) { c.Address = netip.Prefix{} }, "Address"},
		{"network address", func(c *DomainConfig) { c.Address = netip.MustParsePrefix("198.19.230.0/24") }, "network address"},
		{"/31", func(c *DomainConfig) { c.Address = netip.MustParsePrefix("198.19.230.10/31") }, "/30"},
		{"gateway outside", func(c *DomainConfig) { c.Gateway = netip.MustParseAddr("198.19.231.1") }, "Gateway"},
		{"gateway is the VM", func(c *DomainConfig) { c.Gateway = c.Address.Addr() }, "Gateway"},
		{"empty name", func(c *DomainConfig) { c.Name = "" }, "domain name"},
		{"name with quote", func(c *DomainConfig) { c.Name = "vm'1" }, "domain name"},
		{"name with space", func(c *DomainConfig) { c.Name = "vm 1" }, "domain name"},
		{"hostname from name", func(c *DomainConfig) { c.Name = "VM_1" }, "Hostname"},
		{"hostname", func(c *DomainConfig) { c.Name, c.Hostname = "VM_1", "vm-1" }, ""},
		{"no dir", func(c *DomainConfig) { c.Dir = "" }, "Dir"},
		{"no bridge", func(c *DomainConfig) { c.Bridge = "" }, "Bridge"},
		{"bridge with quote", func(c *DomainConfig) { c.Bridge = "br'0" }, "Bridge"},
		{"bad mac", func(c *DomainConfig) { c.MAC = "52:54:00:zz:00:01" }, "MAC"},
		{"multicast mac", func(c *DomainConfig) { c.MAC = "01:00:5e:00:00:01" }, "MAC"},
		{"mac", func(c *DomainConfig) { c.MAC = "52:54:00:AB:CD:EF" }, ""},
		{"no key", func(c *DomainConfig) { c.AuthorizedKey = []byte(" \n") }, "AuthorizedKey"},
		{"little memory", func(c *DomainConfig) { c.MemoryMiB = 128 }, "MemoryMiB"},
		{"negative cpus", func(c *DomainConfig) { c.VCPUs = -1 }, "VCPUs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			c.setDefaults()
			err := c.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid configuration refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("invalid configuration accepted: %+v", c)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := validConfig()
	c.setDefaults()
	if c.Hostname != c.Name || c.MemoryMiB != DefaultMemoryMiB || c.VCPUs != DefaultVCPUs {
		t.Errorf("defaults: %+v", c)
	}
	if !strings.HasPrefix(c.MAC, "52:54:00:") {
		t.Errorf("derived MAC %q", c.MAC)
	}
	other := validConfig()
	other.Name = "tctest-vm2"
	other.setDefaults()
	if other.MAC == c.MAC {
		t.Errorf("two VMs got the same MAC %s", c.MAC)
	}
}

// Define refuses a bad configuration before it touches anything.
func TestDefineRefusesAddressOutsideTheLab(t *testing.T) {
	c := validConfig()
	c.Dir = filepath.Join(t.TempDir(), "vm")
	c.Address = netip.MustParsePrefix("10.0.0.5/24")
	c.Gateway = netip.Addr{}
	_, err := Define(context.Background(), &Image{}, c)
	if err == nil || !strings.Contains(err.Error(), "198.18.0.0/15") {
		t.Fatalf("Define with 10.0.0.5: %v", err)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		t.Errorf("the refused Define created %s", c.Dir)
	}
}

func TestIPArg(t *testing.T) {
	c := validConfig()
	c.setDefaults()
	if got, want := c.ipArg(), "ip=198.19.230.10::198.19.230.1:255.255.255.0:tctest-vm1:eth0:off"; got != want {
		t.Errorf("ipArg = %q, want %q", got, want)
	}
	c.Gateway = netip.Addr{}
	c.Address = netip.MustParsePrefix("198.18.4.9/22")
	if got, want := c.ipArg(), "ip=198.18.4.9:::255.255.252.0:tctest-vm1:eth0:off"; got != want {
		t.Errorf("ipArg = %q, want %q", got, want)
	}
}

// The domain XMLs (direct kernel boot and PXE) are golden files (go test
// -run TestDomainXML -update).
func TestDomainXML(t *testing.T) {
	c := validConfig()
	c.setDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	img := &Image{Disk: "/cache/libvirt/image-x/disk.qcow2", Kernel: "/cache/libvirt/image-x/vmlinuz", Initrd: "/cache/libvirt/image-x/initrd.img"}
	dom := &Domain{cfg: c, machineID: "0123456789abcdef0123456789abcdef", uuid: "01234567-89ab-cdef-0123-456789abcdef"}
	for file, pxe := range map[string]bool{"domain.xml": false, "domain-pxe.xml": true} {
		got, err := dom.domainXML(img, pxe)
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, file, got)
		var d struct {
			Type   string `xml:"type,attr"`
			Name   string `xml:"name"`
			UUID   string `xml:"uuid"`
			Dir    string `xml:"metadata>vm>dir"`
			Kernel string `xml:"os>kernel"`
			Cmd    string `xml:"os>cmdline"`
			Boot   []struct {
				Dev string `xml:"dev,attr"`
			} `xml:"os>boot"`
			TB     string `xml:"features>tcg>tb-cache"`
			Bridge struct {
				Name string `xml:"bridge,attr"`
			} `xml:"devices>interface>source"`
			Graphics []struct{} `xml:"devices>graphics"`
		}
		if err := xml.Unmarshal(got, &d); err != nil {
			t.Fatalf("%s does not parse: %v", file, err)
		}
		if d.Type != "qemu" || d.Name != c.Name || d.UUID != dom.uuid || d.Dir != c.Dir || d.TB != "128" || d.Bridge.Name != c.Bridge || len(d.Graphics) != 0 {
			t.Errorf("parsed %s: %+v", file, d)
		}
		if pxe {
			if d.Kernel != "" || len(d.Boot) != 1 || d.Boot[0].Dev != "network" {
				t.Errorf("%s: kernel %q, boot %+v: want only boot from the network", file, d.Kernel, d.Boot)
			}
			continue
		}
		if d.Kernel != img.Kernel || len(d.Boot) != 0 {
			t.Errorf("%s: kernel %q, boot %+v: want direct kernel boot", file, d.Kernel, d.Boot)
		}
		for _, w := range []string{"root=/dev/vda", "console=ttyS0", "net.ifnames=0", c.ipArg(), "systemd.machine_id=0123456789abcdef0123456789abcdef"} {
			if !strings.Contains(d.Cmd, w) {
				t.Errorf("kernel command line %q lacks %q", d.Cmd, w)
			}
		}
	}
}

// PXE serves the VMs' MAC addresses only, with their addresses and an
// iPXE script each that boots the direct boot's command line (golden
// files: go test -run TestPXEConfig -update).
func TestPXEConfig(t *testing.T) {
	c := validConfig()
	c.setDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	dom := &Domain{cfg: c, machineID: "0123456789abcdef0123456789abcdef"}
	conf, err := pxeConfig("/lab/pxe", PXEConfig{Interfaces: []string{"r0"}, Domains: []*Domain{dom}})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "dnsmasq.conf", conf)
	for _, w := range []string{"port=0\n", "dhcp-ignore=tag:!known\n", "interface=r0\n",
		"dhcp-host=" + c.MAC + ",set:vm0," + c.Address.Addr().String() + ",", "dhcp-boot=tag:vm0," + c.Name + ".ipxe\n"} {
		if !strings.Contains(string(conf), w) {
			t.Errorf("dnsmasq.conf lacks %q:\n%s", w, conf)
		}
	}
	script := dom.ipxeScript()
	golden.Check(t, "vm.ipxe", script)
	if !strings.HasPrefix(string(script), "#!ipxe\n") || !strings.Contains(string(script), "kernel vmlinuz "+dom.cmdline()+"\n") {
		t.Errorf("iPXE script:\n%s", script)
	}
	if _, err := pxeConfig("/lab/pxe", PXEConfig{Interfaces: []string{"r0,x"}, Domains: []*Domain{dom}}); err == nil {
		t.Error("an interface name with a comma was accepted")
	}
}

// Paths and names end up in XML attributes: they are escaped.
func TestDomainXMLEscapes(t *testing.T) {
	c := validConfig()
	c.Dir = `/tmp/a'b&c<d>"e`
	c.setDefaults()
	got, err := (&Domain{cfg: c, machineID: "00"}).domainXML(&Image{Disk: "d", Kernel: "k", Initrd: "i"}, false)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Disks []struct {
			Source struct {
				File string `xml:"file,attr"`
			} `xml:"source"`
		} `xml:"devices>disk"`
	}
	if err := xml.Unmarshal(got, &d); err != nil {
		t.Fatalf("%v:\n%s", err, got)
	}
	if len(d.Disks) != 2 || d.Disks[0].Source.File != c.Dir+"/disk.qcow2" {
		t.Errorf("disks %+v", d.Disks)
	}
}

// fakeVirsh is a fake virsh for the unit test of the power hook: the
// domain's state lives in a file, "start" of a running domain fails like
// libvirt's, "shutdown" takes a second.
const fakeVirsh = `#!/bin/sh
# fake virsh for acceptance/libvirt's unit tests
while [ "${1#-}" != "$1" ]; do
	case $1 in -c) shift 2 ;; *) shift ;; esac
done
echo "$*" >> "$FAKE_DIR/calls"
st=$(cat "$FAKE_DIR/state")
case $1 in
domstate) echo "$st" ;;
define) [ -e "$2" ] || { echo "error: Failed to open file '$2'" >&2; exit 1; } ;;
start)
	[ "$st" = running ] && { echo "error: Domain is already active" >&2; exit 1; }
	echo running > "$FAKE_DIR/state" ;;
destroy)
	[ "$st" = running ] || { echo "error: domain is not running" >&2; exit 1; }
	echo "shut off" > "$FAKE_DIR/state" ;;
shutdown)
	[ "$st" = running ] || { echo "error: domain is not running" >&2; exit 1; }
	( sleep 1; echo "shut off" > "$FAKE_DIR/state" ) >/dev/null 2>&1 & ;;
reset)
	[ "$st" = running ] || { echo "error: domain is not running" >&2; exit 1; } ;;
*) exit 2 ;;
esac
`

func TestPowerHook(t *testing.T) {
	testenv.RequireBinary(t, "sh")
	bin, state := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "virsh"), []byte(fakeVirsh), 0o755); err != nil {
		t.Fatal(err)
	}
	vmDir := t.TempDir()
	for _, f := range []string{xmlFile, pxeXMLFile} {
		if err := os.WriteFile(filepath.Join(vmDir, f), []byte("<domain/>"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := &Domain{cfg: DomainConfig{Name: "tctest-it's", Dir: vmDir}}
	p := d.Power()
	disk, pxe := "define "+filepath.Join(vmDir, xmlFile), "define "+filepath.Join(vmDir, pxeXMLFile)
	set := func(s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(state, "state"), []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(filepath.Join(state, "calls"))
	}
	run := func(line string) (ok bool, calls []string) {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", line)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_DIR="+state, "IPMISIM_DIR="+state)
		err := cmd.Run()
		b, _ := os.ReadFile(filepath.Join(state, "calls"))
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" && !strings.HasPrefix(l, "domstate") {
				calls = append(calls, l)
			}
		}
		return err == nil, calls
	}
	name := "tctest-it's"
	for _, tc := range []struct {
		name, state, line string
		boot              string // the BMC's boot device
		ok                bool
		calls             []string
	}{
		{"status on", "running", p.Status, "", true, nil},
		{"status off", "shut off", p.Status, "", false, nil},
		{"on when off", "shut off", p.On, "", true, []string{disk, "start " + name}},
		{"on when off, boot device default", "shut off", p.On, "default", true, []string{disk, "start " + name}},
		{"on when off, boot device pxe", "shut off", p.On, "pxe", true, []string{pxe, "start " + name}},
		{"on when on", "running", p.On, "pxe", true, nil},
		{"off", "running", p.Off, "", true, []string{"destroy " + name}},
		{"off when off", "shut off", p.Off, "", true, []string{"destroy " + name}},
		{"soft off", "running", p.SoftOff, "", true, []string{"shutdown " + name}},
		{"reset", "running", p.Reset, "", true, []string{"reset " + name}},
		{"reset when off", "shut off", p.Reset, "", false, []string{"reset " + name}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.state)
			_ = os.Remove(filepath.Join(state, "libvirt-stopping"))
			_ = os.Remove(filepath.Join(state, "boot"))
			if tc.boot != "" {
				if err := os.WriteFile(filepath.Join(state, "boot"), []byte(tc.boot+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ok, calls := run(tc.line)
			if ok != tc.ok || !slices.Equal(calls, tc.calls) {
				t.Errorf("%s: ok %v, virsh calls %q; want ok %v, calls %q", tc.line, ok, calls, tc.ok, tc.calls)
			}
		})
	}

	// Soft off, then on at once (as ipmi_sim's power cycle does): on
	// waits for the guest to shut down, then starts it again.
	set("running")
	if ok, _ := run(p.SoftOff); !ok {
		t.Fatal("soft off failed")
	}
	ok, calls := run(p.On)
	if want := []string{"shutdown " + name, disk, "start " + name}; !ok || !slices.Equal(calls, want) {
		t.Errorf("soft off then on: ok %v, virsh calls %q; want %q", ok, calls, want)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "state")); strings.TrimSpace(string(b)) != "running" {
		t.Errorf("after soft off and on the fake domain is %q", b)
	}
	if _, err := os.Stat(filepath.Join(state, "libvirt-stopping")); err == nil {
		t.Error("on left the stopping mark behind")
	}
}

// A build killed while debootstrap had proc mounted in it is removed
// after unmounting, never by deleting files through the mount.
func TestRemoveBuildDirUnmounts(t *testing.T) {
	testenv.RequireRoot(t, "mounting a tmpfs")
	dir := filepath.Join(t.TempDir(), "image-x.tmp-1")
	mnt := filepath.Join(dir, "root", "proc")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	if err := os.WriteFile(filepath.Join(mnt, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeBuildDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s is still there", dir)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), mnt) {
		t.Fatalf("%s is still mounted", mnt)
	}
}
