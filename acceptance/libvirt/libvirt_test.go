package libvirt

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// testPrefix starts the name of every domain this package's tests define.
const testPrefix = "tctest-"

// bmcIndex is this package's first BMC address (ipmisim.LabAddr).
const bmcIndex = 1524

var (
	testBridge = netip.MustParsePrefix("198.19.230.1/24")
	testVM     = netip.MustParsePrefix("198.19.230.10/24")
)

// TestVMPowerThroughBMC boots a VM of the image through an ipmi_sim BMC
// whose power hook drives virsh: it starts powered off, IPMI power on
// boots it to SSH (the cloud kernel, containerd active, its own host name
// and host key), power off stops it within seconds, power on brings the
// same machine back, a power cycle reboots it and a soft off shuts it
// down cleanly.
func TestVMPowerThroughBMC(t *testing.T) {
	testenv.Need(t, Available())
	testenv.Need(t, ipmisim.Available())
	testenv.Need(t, labnet.Available())
	testenv.RequireBinary(t, "ipmitool", "ssh", "ssh-keygen")
	testenv.Exclusive(t, "the VM test")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	cache, err := nspawn.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	img, err := EnsureImage(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	imageFirst := time.Since(start)
	start = time.Now()
	img2, err := EnsureImage(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	imageCached := time.Since(start)
	if *img2 != *img {
		t.Fatalf("the cached image %+v differs from the first %+v", img2, img)
	}
	for _, f := range []string{img.Disk, img.Kernel, img.Initrd} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Fatalf("image file %s: %v", f, err)
		}
	}

	start = time.Now()
	daemon, err := StartDaemon(ctx, t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	daemonStart := time.Since(start)
	t.Cleanup(func() {
		if err := daemon.Stop(); err != nil {
			t.Errorf("stopping the libvirt daemons: %v", err)
		}
	})
	// Leftovers of a run that was killed before its cleanup.
	stale, err := ListDomains(ctx, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range stale {
		t.Logf("Undefining %s, left by an earlier run", n)
		if err := UndefineDomain(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		left, err := ListDomains(context.Background(), testPrefix)
		if err != nil {
			t.Errorf("listing domains after the test: %v", err)
		} else if len(left) > 0 {
			t.Errorf("domains left after the test: %q", left)
		}
	})

	lab, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("closing the lab network: %v", err)
		}
	})
	removeStaleBridge(t, testBridge)
	br, err := lab.Bridge(testBridge)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	name := testPrefix + randHex(3)
	d, err := Define(ctx, img, DomainConfig{
		Name: name, Dir: filepath.Join(dir, "vm"), Bridge: br.Name,
		Address: testVM, Gateway: testBridge.Addr(), AuthorizedKey: pub,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Undefine(context.Background()); err != nil {
			t.Errorf("undefining %s: %v", name, err)
		}
		if _, err := os.Stat(d.Dir()); err == nil {
			t.Errorf("Undefine left %s", d.Dir())
		}
	})
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(d.Address().String()+" "+d.HostKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ssh := func(script string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(sctx, "ssh", "-i", key, "-F", "/dev/null",
			"-o", "UserKnownHostsFile="+knownHosts, "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "root@"+d.Address().String(), script).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh %s %q: %v: %s", d.Address(), script, err, out)
		}
		return string(out)
	}
	if running, err := d.Running(ctx); err != nil || running {
		t.Fatalf("a defined VM runs (%v, %v): lab servers start powered off", running, err)
	}

	addrs, closeAddrs, err := ipmisim.LabAddrs(ctx, bmcIndex)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeAddrs() })
	bmc, err := ipmisim.Start(ctx, ipmisim.Config{
		Name: name, Address: addrs[0], User: "admin", Password: "lab-secret",
		Dir: t.TempDir(), Power: d.Power(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bmc.Stop() })
	ipmi := func(args ...string) string {
		t.Helper()
		out, err := bmc.Ipmitool(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantStatus := func(want string) {
		t.Helper()
		if out := ipmi("chassis", "power", "status"); !strings.Contains(out, "Chassis Power is "+want) {
			t.Fatalf("BMC power status %q, want %s", strings.TrimSpace(out), want)
		}
	}
	wantStatus("off")

	// Power on boots the VM to SSH.
	boot := func() time.Duration {
		t.Helper()
		start := time.Now()
		ipmi("chassis", "power", "on")
		if running, err := d.Running(ctx); err != nil || !running {
			t.Fatalf("after IPMI power on the VM does not run (%v, %v)", running, err)
		}
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := d.WaitSSH(bctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	firstBoot := boot()
	wantStatus("on")
	// One SSH connection for every check: a bare ssh costs seconds in TCG.
	out := ssh(`uname -r; hostname; cat /etc/machine-id; cat /proc/sys/kernel/random/boot_id
if command -v containerd >/dev/null || systemctl cat containerd >/dev/null 2>&1; then echo carried; else echo absent; fi; lsmod | awk '$1 == "overlay" || $1 == "br_netfilter" {print $1}' | sort | tr '\n' ' '; echo`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("unexpected answer from the VM:\n%s", out)
	}
	if !strings.HasSuffix(lines[0], "-cloud-amd64") {
		t.Errorf("uname -r = %q, want the Debian cloud kernel", lines[0])
	}
	if lines[1] != name {
		t.Errorf("hostname = %q, want %q", lines[1], name)
	}
	if lines[2] != d.machineID {
		t.Errorf("machine-id = %q, want the seed's %q", lines[2], d.machineID)
	}
	bootID := lines[3]
	if lines[4] != "absent" {
		t.Errorf("containerd is %q in the image, want absent: tricenter installs the container runtime from the artifact set", lines[4])
	}
	if strings.TrimSpace(lines[5]) != "br_netfilter overlay" {
		t.Errorf("modules loaded at boot: %q, want br_netfilter and overlay", lines[5])
	}

	rss := qemuRSS(t, name)

	// Power off: the domain is shut off within seconds.
	start = time.Now()
	ipmi("chassis", "power", "off")
	for {
		running, err := d.Running(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !running {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the VM still runs 10s after IPMI power off")
		}
		time.Sleep(100 * time.Millisecond)
	}
	powerOff := time.Since(start)
	wantStatus("off")

	// Power on again: the same machine (host key, identity) comes back.
	secondBoot := boot()
	out = ssh(`hostname; cat /proc/sys/kernel/random/boot_id`)
	if f := strings.Fields(out); len(f) != 2 || f[0] != name || f[1] == bootID {
		t.Errorf("after power off and on: hostname and boot id %q, want %s and a new boot id", out, name)
	} else {
		bootID = f[1]
	}

	// Power cycle: off, then on a second later; the hook's on waits for
	// the domain to be shut off, so the VM boots again.
	domID := func() string {
		t.Helper()
		out, err := virsh(ctx, "domid", name)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	before := domID()
	start = time.Now()
	ipmi("chassis", "power", "cycle")
	for domID() == before {
		if time.Since(start) > time.Minute {
			t.Fatalf("a minute after IPMI power cycle the VM still runs as domain id %s", before)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Minute)
	defer ccancel()
	if err := d.WaitSSH(cctx); err != nil {
		t.Fatal(err)
	}
	if out = ssh(`cat /proc/sys/kernel/random/boot_id`); strings.TrimSpace(out) == bootID {
		t.Errorf("after a power cycle the boot id %s is the same", bootID)
	}
	cycle := time.Since(start)
	// Soft off: the guest shuts down cleanly (ACPI power button).
	start = time.Now()
	ipmi("chassis", "power", "soft")
	for {
		running, err := d.Running(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !running {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatal("the VM still runs 2 minutes after IPMI soft off")
		}
		time.Sleep(250 * time.Millisecond)
	}
	softOff := time.Since(start)
	if console, err := os.ReadFile(d.ConsoleLog()); err != nil || !strings.Contains(string(console), "reboot: Power down") {
		t.Errorf("after IPMI soft off the console does not show a clean power down (%v)", err)
	}
	wantStatus("off")

	// PXE: boot device pxe through the BMC, then power on: the NIC's iPXE
	// gets its address and script from dnsmasq, loads the kernel and the
	// initramfs over TFTP, and the same machine comes up.
	pxe, err := StartPXE(ctx, PXEConfig{Interfaces: []string{br.Name}, Dir: filepath.Join(dir, "pxe"),
		Domains: []*Domain{d}, Image: img, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pxe.Stop() })
	ipmi("chassis", "bootdev", "pxe")
	if out := ipmi("chassis", "bootparam", "get", "5"); !strings.Contains(out, "Force PXE") {
		t.Fatalf("the BMC does not report boot device PXE:\n%s", out)
	}
	pxeBoot := boot()
	served, err := pxe.Served(d.Address())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{name + ".ipxe", "vmlinuz", "initrd.img"}; !slices.Equal(served, want) {
		dl, _ := os.ReadFile(pxe.LogFile())
		t.Errorf("TFTP sent %q to %s, want %q; dnsmasq's log:\n%s", served, d.Address(), want, tail(dl, 3000))
	}
	if dl, _ := os.ReadFile(pxe.LogFile()); !strings.Contains(string(dl), "DHCPACK("+br.Name+") "+d.Address().String()+" "+d.cfg.MAC) {
		t.Errorf("dnsmasq's log has no DHCPACK of %s to %s:\n%s", d.Address(), d.cfg.MAC, tail(dl, 3000))
	}
	if out = ssh(`hostname; cat /proc/sys/kernel/random/boot_id`); !strings.HasPrefix(out, name+"\n") || strings.Contains(out, bootID) {
		t.Errorf("after the PXE boot: hostname and boot id %q, want %s and a new boot id", out, name)
	}
	ipmi("chassis", "power", "off")

	evs, err := bmc.SetEvents()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BMC power events: %q", evs)
	if !slices.Contains(evs, "set boot pxe") {
		t.Errorf("the hook never saw the boot device pxe: %q", evs)
	}

	t.Logf("measured: image %v (first call: a build or the cache), cached %v; libvirtd start %v; "+
		"power on to SSH %v, again %v; power off %v; power cycle to SSH %v; soft off %v; PXE power on to SSH %v; qemu RSS after boot %s",
		imageFirst.Round(time.Microsecond), imageCached, daemonStart.Round(time.Millisecond),
		firstBoot.Round(time.Millisecond), secondBoot.Round(time.Millisecond), powerOff.Round(time.Millisecond),
		cycle.Round(time.Millisecond), softOff.Round(time.Millisecond), pxeBoot.Round(time.Millisecond), rss)
}

// removeStaleBridge deletes a labnet bridge that holds addr, left by a run
// of this test that was killed before its cleanup (the address block is
// this package's): with two bridges on one subnet the host would route to
// the dead one.
func removeStaleBridge(t *testing.T, addr netip.Prefix) {
	t.Helper()
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || f[3] != addr.String() {
			continue
		}
		if !strings.HasPrefix(f[1], "tcb") {
			t.Fatalf("%s is already configured on %s, which is not a lab bridge: remove it", addr, f[1])
		}
		t.Logf("Deleting bridge %s with %s, left by an earlier run", f[1], addr)
		if out, err := exec.Command("ip", "link", "del", f[1]).CombinedOutput(); err != nil {
			t.Fatalf("ip link del %s: %v: %s", f[1], err, out)
		}
	}
}

// qemuRSS is the VmRSS of the VM's qemu process (its pid file is in
// libvirtd's state directory), for the log.
func qemuRSS(t *testing.T, name string) string {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", name+".pid"))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	status, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "status"))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
