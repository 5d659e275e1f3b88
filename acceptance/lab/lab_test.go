package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestParseSpecErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/lab-test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"management outside the lab block", "management: 198.19.90.0/24", "management: 10.0.0.0/24", "spec.management"},
		{"rack subnet not a /24", "subnet: 198.19.91.0/24", "subnet: 198.19.91.0/25", "spec.racks[0] (dc1-r01): subnet"},
		{"rack on the management network", "subnet: 198.19.92.0/24", "subnet: 198.19.90.0/24", "overlaps the management network"},
		{"unknown machine kind", "{name: dc3-r01-w01, roles: [worker]}", "{name: dc3-r01-w01, roles: [worker], machine: docker}", `machine "docker": use nspawn or libvirt`},
		{"unknown boot device", "{name: dc3-r01-w01, roles: [worker]}", "{name: dc3-r01-w01, roles: [worker], machine: libvirt, boot: cdrom}", `(dc3-r01-w01): boot "cdrom": use disk or pxe`},
		{"PXE on an nspawn machine", "{name: dc3-r01-w01, roles: [worker]}", "{name: dc3-r01-w01, roles: [worker], boot: pxe}", "(dc3-r01-w01): boot pxe needs machine: libvirt"},
		{"unknown field", "torASN: 65200", "torASN: 65200\n  tor: 1", "field tor not found"},
		{"no TOR ASN", "torASN: 65200", "torASN: 0", "spec.torASN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Replace(string(good), tc.from, tc.to, 1)
			if data == string(good) {
				t.Fatalf("the test's replacement %q did not apply", tc.from)
			}
			_, err := ParseSpec([]byte(data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestExampleInventory renders the inventory of examples/lab/lab.yaml: it
// validates, every center has a jump host, every server a BMC with a
// password file, every path is absolute, and no two objects share an
// address.
func TestExampleInventory(t *testing.T) {
	s, err := LoadSpec("../../examples/lab/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, c, err := s.Inventory(dir, "/artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.VMs()) < 2 {
		t.Errorf("the example lab has %d libvirt VMs, want 2 or more", len(s.VMs()))
	}
	seen := map[string]string{}
	use := func(addr, what string) {
		if prev, dup := seen[addr]; dup {
			t.Errorf("address %s used by %s and %s", addr, prev, what)
		}
		seen[addr] = what
	}
	plan := s.Plan()
	use(plan.Host.String(), "the host")
	use(plan.Router.String(), "the router")
	for _, ctr := range c.Spec.Centers {
		if ctr.JumpHost == nil || ctr.JumpHost.Address == "" {
			t.Errorf("center %s has no jump host", ctr.Name)
			continue
		}
		use(ctr.JumpHost.Address, "jump host of "+ctr.Name)
	}
	for _, h := range c.Hosts() {
		use(h.SSH.Address, h.Name)
		if h.BMC == nil || h.BMC.Password.File != (Paths{Dir: dir}).BMCPassword() {
			t.Errorf("server %s: BMC %+v, want one with the lab's password file", h.Name, h.BMC)
			continue
		}
		use(h.BMC.Address, "BMC of "+h.Name)
		if !plan.Management.Contains(netip.MustParseAddr(h.BMC.Address)) {
			t.Errorf("server %s: BMC %s outside the management network %s", h.Name, h.BMC.Address, plan.Management)
		}
		if h.JumpHost() == nil {
			t.Errorf("server %s is reached without a jump host", h.Name)
		}
	}
	for _, p := range []string{c.Spec.SSH.KeyFile, c.Spec.SSH.KnownHosts[0], c.Spec.Kubernetes.ArtifactDir} {
		if !filepath.IsAbs(p) {
			t.Errorf("path %q in the inventory is relative", p)
		}
	}
	for _, want := range []string{`workers        = ["dc1-r01-w01", "dc2-r01-w01", "dc3-r01-w01"]`, `boot_devices   = {"dc1-r01-w01" = "pxe"}`} {
		if !bytes.Contains(s.TFVars(dir), []byte(want)) {
			t.Errorf("tfvars lack %s:\n%s", want, s.TFVars(dir))
		}
	}
	if _, _, err := inventory.Parse(data); err != nil {
		t.Fatal(err)
	}
}

// tricenterBinary builds the CLI.
func tricenterBinary(t testing.TB) string { return buildCommand(t, "tricenter") }

// labBinary builds the lab's binary: `up` starts `tricenter-lab serve`.
func labBinary(t testing.TB) string { return buildCommand(t, "tricenter-lab") }

// buildCommand builds cmd/NAME into a temporary directory.
func buildCommand(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

func needLab(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "the lab builds network namespaces and nspawn machines")
	testenv.Need(t, labnet.Available())
	testenv.Need(t, nspawn.Available())
	testenv.Need(t, ipmisim.Available())
	testenv.RequireBinary(t, "ssh", "iptables", "vtysh")
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("tricenter %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// sshVia runs a command on a lab server through its center's jump host
// with the lab's key and pinned host keys.
func sshVia(ctx context.Context, dir, jump, addr, command string) (string, error) {
	p := Paths{Dir: dir}
	common := []string{"-i", p.Key(), "-o", "UserKnownHostsFile=" + p.KnownHosts(), "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=5"}
	proxy := "ssh " + strings.Join(common, " ") + " -W %h:%p root@" + jump
	args := append(append([]string{}, common...), "-o", "ProxyCommand="+proxy, "root@"+addr, command)
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func labBMC(t *testing.T, rec *Record, server int) *bmc.Client {
	t.Helper()
	targets, err := BMCTargets(rec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bmc.NewClient(targets[server], bmc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// TestLabUpDown runs the product: `lab up` (and again: a no-op), every
// server off behind its BMC, power on through the BMC boots the machine,
// which answers SSH through its center's jump host and not directly from
// this machine, power off cuts it, and `lab down` leaves nothing.
func TestLabUpDown(t *testing.T) {
	needLab(t)
	bin := labBinary(t)
	dir := filepath.Join(t.TempDir(), "lab")
	spec := "testdata/lab-test.yaml"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var rec *Record
	t.Cleanup(func() {
		if rec != nil {
			if left, _ := Leftovers(context.Background(), rec); len(left) > 0 {
				_ = Down(context.Background(), dir, os.Stderr)
			}
		}
	})
	start := time.Now()
	out := run(t, bin, "up", "-f", spec, "--dir", dir)
	t.Logf("lab up took %v", time.Since(start).Round(time.Millisecond))
	rec, err := ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Ready || !rec.Process().Alive() {
		t.Fatalf("after lab up the lab is not ready and running: %+v\n%s", rec, out)
	}
	again := run(t, bin, "up", "-f", spec, "--dir", dir)
	if !strings.Contains(again, "already up") {
		t.Errorf("a second lab up did not find the lab up:\n%s", again)
	}
	if rec2, _ := ReadRecord(dir); rec2 == nil || rec2.PID != rec.PID {
		t.Errorf("a second lab up replaced the lab process")
	}

	var st struct {
		Running bool              `json:"running"`
		Power   map[string]string `json:"power"`
	}
	if err := json.Unmarshal([]byte(run(t, bin, "status", "--dir", dir, "-f", spec, "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Running || len(st.Power) != 4 {
		t.Fatalf("lab status: %+v, want 4 servers of a running lab", st)
	}
	for name, p := range st.Power {
		if p != "off" {
			t.Errorf("server %s starts with power %q, want off", name, p)
		}
	}
	// Each site's core router has its session to the TORs up.
	if len(rec.CoreRouters) != 2 {
		t.Fatalf("lab record has core routers %+v, want core-a and core-b", rec.CoreRouters)
	}
	for _, c := range rec.CoreRouters {
		if err := waitEstablished(ctx, c.Vty, 30*time.Second); err != nil {
			t.Errorf("core router %s: %v", c.Name, err)
		}
	}
	// Only the jump hosts are reachable from here; servers are not.
	for _, j := range rec.JumpHosts {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(j.Address, "22"), 3*time.Second)
		if err != nil {
			t.Errorf("jump host %s: %v", j.Name, err)
			continue
		}
		c.Close()
	}
	s := rec.Servers[0]
	client := labBMC(t, rec, 0)
	t0 := time.Now()
	if _, err := client.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("power on %s through its BMC: %v", s.Name, err)
	}
	jump := ""
	for _, j := range rec.JumpHosts {
		if j.Center == s.Center {
			jump = j.Address
		}
	}
	var host string
	for {
		if host, err = sshVia(ctx, dir, jump, s.Address, "hostname"); err == nil {
			break
		}
		if time.Since(t0) > 2*time.Minute {
			t.Fatalf("server %s did not answer SSH through %s after power on: %v: %s", s.Name, jump, err, host)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("power on through the BMC to SSH through the jump host: %v", time.Since(t0).Round(time.Millisecond))
	if host != s.Name {
		t.Errorf("SSH to %s answered as %q", s.Name, host)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(s.Address, "22"), 3*time.Second); err == nil {
		c.Close()
		t.Errorf("server %s is reachable from this machine without its jump host", s.Name)
	}
	if p, err := client.PowerState(ctx); err != nil || p != bmc.PowerOn {
		t.Errorf("BMC power state after power on: %v %v", p, err)
	}
	other := labBMC(t, rec, 1)
	if p, err := other.PowerState(ctx); err != nil || p != bmc.PowerOff {
		t.Errorf("server %s: power %v %v, want still off", rec.Servers[1].Name, p, err)
	}
	if _, err := client.SetPower(ctx, bmc.ActionOff); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := client.PowerState(ctx)
		if err == nil && p == bmc.PowerOff {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s still %v %v 30 s after power off", s.Name, p, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := sshVia(ctx, dir, jump, s.Address, "true"); err == nil {
		t.Errorf("server %s answers SSH after power off: %s", s.Name, out)
	}

	start = time.Now()
	run(t, bin, "down", "-f", spec, "--dir", dir)
	t.Logf("lab down took %v", time.Since(start).Round(time.Millisecond))
	assertNothingLeft(t, rec)
}

// TestLabDownAfterCrash kills the lab process with a machine running and
// checks that `lab down` still removes everything.
func TestLabDownAfterCrash(t *testing.T) {
	needLab(t)
	bin := labBinary(t)
	dir := filepath.Join(t.TempDir(), "lab")
	spec := "testdata/lab-test.yaml"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run(t, bin, "up", "-f", spec, "--dir", dir)
	rec, err := ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left, _ := Leftovers(context.Background(), rec); len(left) > 0 {
			_ = Down(context.Background(), dir, os.Stderr)
		}
	})
	s := rec.Servers[len(rec.Servers)-1]
	if _, err := labBMC(t, rec, len(rec.Servers)-1).SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatal(err)
	}
	// Wait until the machine runs (its power state file says on and its
	// sshd answers through the jump host).
	jump := rec.JumpHosts[len(rec.JumpHosts)-1].Address
	for i := 0; ; i++ {
		if _, err := sshVia(ctx, dir, jump, s.Address, "true"); err == nil {
			break
		}
		if i > 600 {
			t.Fatalf("server %s did not boot", s.Name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && rec.Process().Alive(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	left, err := Leftovers(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) == 0 {
		t.Fatal("a killed lab left nothing to clean up: the test proves nothing")
	}
	t.Logf("the killed lab left %d things, e.g. %s", len(left), left[0])
	out := run(t, bin, "down", "-f", spec, "--dir", dir)
	if !strings.Contains(out, "removed leftover") {
		t.Errorf("lab down after a crash removed nothing:\n%s", out)
	}
	assertNothingLeft(t, rec)
}

// assertNothingLeft checks the lab's processes, namespaces, links,
// cgroups, mounts, domains, iptables chains and directory are gone, and
// that no process still runs in a machine's root filesystem.
func assertNothingLeft(t testing.TB, rec *Record) {
	t.Helper()
	left, err := Leftovers(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("left after lab down: %s", strings.Join(left, ", "))
	}
	ns, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if rec.NetID == "" || strings.Contains(string(ns), rec.NetID) {
		t.Errorf("namespaces of lab %q still listed:\n%s", rec.NetID, ns)
	}
	for _, p := range rec.Procs {
		if p.Alive() {
			t.Errorf("process %d (%s) still runs", p.PID, p.What)
		}
	}
	// Machine processes are gone once nothing has the lab directory as
	// its root or working directory.
	procs, _ := filepath.Glob("/proc/[0-9]*/root")
	for _, r := range procs {
		target, err := os.Readlink(r)
		if err == nil && strings.HasPrefix(target, rec.Dir) {
			if stat, err := os.ReadFile(filepath.Join(filepath.Dir(r), "stat")); err == nil && !strings.Contains(string(stat), ") Z ") {
				t.Errorf("process %s still runs in the lab's machines: %s", filepath.Dir(r), target)
			}
		}
	}
	if _, err := os.Stat(rec.Dir); err == nil {
		t.Errorf("lab directory %s still exists", rec.Dir)
	}
}

// waitEstablished waits until every BGP session of the FRR router whose
// vty directory is dir is Established.
func waitEstablished(ctx context.Context, dir string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		out, err := exec.CommandContext(ctx, "vtysh", "--vty_socket", dir, "-c", "show bgp ipv4 unicast summary json").Output()
		last = string(out)
		var sum struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		}
		if err == nil && json.Unmarshal(out, &sum) == nil && len(sum.Peers) > 0 {
			up := 0
			for _, p := range sum.Peers {
				if p.State == "Established" {
					up++
				}
			}
			if up == len(sum.Peers) {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("BGP sessions not all Established after %v: %s", limit, last)
}

// lab status names the VMs that boot from their NIC and the PXE log.
func TestStatusPrintShowsPXE(t *testing.T) {
	rec := &Record{Name: "lab", Dir: "/lab", PXELog: "/lab/pxe/dnsmasq.log", Servers: []RecordServer{
		{Name: "w1", Center: "dc1", Rack: "r1", Machine: MachineLibvirt, Boot: BootPXE, Address: "198.19.81.11", BMC: "198.19.80.102"},
		{Name: "w2", Center: "dc2", Rack: "r2", Machine: MachineLibvirt, Address: "198.19.83.11", BMC: "198.19.80.104"},
	}}
	var b bytes.Buffer
	(&Report{Record: rec, Power: map[string]string{"w1": "on"}}).Print(&b)
	out := b.String()
	for _, want := range []string{"PXE log     /lab/pxe/dnsmasq.log", "libvirt (pxe)"} {
		if !strings.Contains(out, want) {
			t.Errorf("lab status lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "(pxe)") != 1 {
		t.Errorf("lab status marks %d servers pxe, want 1:\n%s", strings.Count(out, "(pxe)"), out)
	}
}
