package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// BMC indices of this package's tests: 198.18.53.0/24 (ipmisim.LabAddr
// 1270-1523), apart from the other packages' blocks.
const bmcIndexBase = 1270

// TestBMCPowerAgainstIPMISim drives BMCPower against two real ipmi_sim
// BMCs whose chassis_control hook records every call: the drill powers
// off every server of dc1 (the etcd member and the worker) and powers
// them back on, through IPMI chassis control.
func TestBMCPowerAgainstIPMISim(t *testing.T) {
	testenv.Need(t, ipmisim.Available())
	addrs, closeAddrs, err := ipmisim.LabAddrs(context.Background(), bmcIndexBase, bmcIndexBase+1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeAddrs(); err != nil {
			t.Error(err)
		}
	})
	const pw = "drill-bmc-s3cret"
	t.Setenv("TRICENTER_TEST_DRILL_BMC_PW", pw)
	dir := t.TempDir()
	var cfgs []ipmisim.Config
	for i, a := range addrs {
		cfgs = append(cfgs, ipmisim.Config{Name: dc1All[i], Address: a, User: "admin", Password: pw, Dir: dir, PoweredOn: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bmcs, err := ipmisim.StartAll(ctx, cfgs, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ipmisim.StopAll(bmcs) })

	c, p := drillFixture(t)
	for i := range c.Spec.Racks[0].Servers {
		s := &c.Spec.Racks[0].Servers[i]
		s.BMC = &inventory.BMC{Address: addrs[i].String(), User: "admin",
			Password: inventory.SecretRef{Env: "TRICENTER_TEST_DRILL_BMC_PW"}, CipherSuites: []int{3}}
	}
	pw2 := &BMCPower{Options: bmc.Options{}}

	cl := newFakeCluster(p)
	cl.stallOnLoss = 100 * time.Millisecond
	rep, err := drill(ctx, drillOpts(c, p, pw2), cl)
	if err != nil {
		t.Fatalf("drill through the BMCs: %v", err)
	}
	if !rep.PowerCut || !slices.Equal(rep.PoweredBackOn, dc1All) {
		t.Errorf("power cut %v, powered back on %v", rep.PowerCut, rep.PoweredBackOn)
	}
	for _, b := range bmcs {
		ev, err := b.SetEvents()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ev, []string{"set power 0", "set power 1"}) {
			t.Errorf("%s: hook saw %q, want a power off then a power on", b.Name(), ev)
		}
		on, err := b.PoweredOn()
		if err != nil || !on {
			t.Errorf("%s is not powered on after the drill (%v)", b.Name(), err)
		}
	}
	for _, s := range rep.Servers {
		if s.OffAt.IsZero() || s.OnAt.Before(s.OffAt) {
			t.Errorf("%s: off at %v, on at %v", s.Name, s.OffAt, s.OnAt)
		}
	}
}

// sshBlock is this package's sshd lab block (installer/sshtest).
var sshBlock = netip.MustParsePrefix("198.18.120.0/22")

// fakeEtcdSystemctl is a recording fake of systemctl for the sshd test
// hosts (which share this machine's init, where etcd must never be
// touched): "etcd.service" is a real process (sleep) it starts, SIGKILLs
// and stops, with its state under the host's private /srv.
const fakeEtcdSystemctl = `#!/bin/sh
# fake systemctl (tests only)
d=/srv/fake-systemd; mkdir -p $d
echo "$*" >> $d/calls
cmd=$1; shift
[ "$1" = --signal=SIGKILL ] && shift
[ "$1" = --no-block ] && shift
u=$1
[ "$u" = etcd.service ] || { echo "fake systemctl: unit $u not found" >&2; exit 5; }
case "$cmd" in
start) [ -s $d/etcd.pid ] && kill -0 "$(cat $d/etcd.pid)" 2>/dev/null && exit 0
  setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > $d/etcd.pid;;
kill) [ -s $d/etcd.pid ] && kill -9 "$(cat $d/etcd.pid)" 2>/dev/null; exit 0;;
stop) [ -s $d/etcd.pid ] && kill -9 "$(cat $d/etcd.pid)" 2>/dev/null; rm -f $d/etcd.pid;;
is-active) [ -s $d/etcd.pid ] && kill -0 "$(cat $d/etcd.pid)" 2>/dev/null && { echo active; exit 0; }; echo inactive; exit 3;;
*) echo "fake systemctl: unsupported $cmd" >&2; exit 1;;
esac
`

// sshFakeSystemdLab starts three sshd hosts (one per center) whose root
// login shell puts the fake systemctl first in PATH.
func sshFakeSystemdLab(t *testing.T) *sshtest.Lab {
	t.Helper()
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: sshBlock, Hosts: 3})
	l.FakeCommands(t, map[string]string{"systemctl": fakeEtcdSystemctl})
	// The fake etcd processes escape sshd's process group: kill them
	// before the lab goes (cleanups run last-in first-out).
	t.Cleanup(func() {
		for _, h := range l.Hosts {
			if b, err := os.ReadFile(h.Path("/srv/fake-systemd/etcd.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
	return l
}

func fakeUnitPid(t *testing.T, h *sshtest.Host) int {
	t.Helper()
	b, err := os.ReadFile(h.Path("/srv/fake-systemd/etcd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie waiting for its parent is gone too.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// TestSSHPowerAgainstSSHD drives SSHPower over real SSH sessions: the
// drill stops etcd only on dc1's member (SIGKILL, then stop), says it was
// no power cut, and starts it again; the fake unit is a real process that
// dies and comes back.
func TestSSHPowerAgainstSSHD(t *testing.T) {
	l := sshFakeSystemdLab(t)
	c := l.Cluster(sshtest.ClusterOptions{})
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &phase.Manager{Cluster: c}
	defer m.Close()
	pw := &SSHPower{Manager: m}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Start every member's fake etcd over SSH.
	hosts := map[string]*sshtest.Host{}
	for _, h := range l.Hosts {
		hosts[h.Name] = h
	}
	for _, mb := range p.Etcd.Members {
		h, _ := c.Host(mb.Name)
		if err := pw.On(ctx, h); err != nil {
			t.Fatalf("starting etcd on %s: %v", mb.Name, err)
		}
	}
	var dc1 string
	for _, mb := range p.Etcd.Members {
		if mb.Center == "dc1" {
			dc1 = mb.Name
		}
	}
	before := fakeUnitPid(t, hosts[dc1])
	if !alive(before) {
		t.Fatalf("the fake etcd on %s did not start (pid %d)", dc1, before)
	}

	// Off and On, observed on the host while the drill runs.
	watch := &sshWatchPower{SSHPower: pw, t: t, host: hosts[dc1]}
	cl := newFakeCluster(p)
	o := drillOpts(c, p, watch)
	rep, err := drill(ctx, o, cl)
	if err != nil {
		t.Fatalf("drill over SSH: %v", err)
	}
	if rep.PowerCut || !strings.Contains(rep.Note, "not a power cut") || !strings.Contains(rep.Method, "not a power cut") {
		t.Errorf("SSH mode claims a power cut: %v %q %q", rep.PowerCut, rep.Method, rep.Note)
	}
	if !slices.Equal(rep.Stopped, []string{dc1}) || !slices.Equal(rep.PoweredBackOn, []string{dc1}) {
		t.Errorf("stopped %v, started %v, want only the dc1 member %s", rep.Stopped, rep.PoweredBackOn, dc1)
	}
	if watch.aliveAfterOff {
		t.Errorf("the fake etcd on %s was still running after Off", dc1)
	}
	after := fakeUnitPid(t, hosts[dc1])
	if after == before || !alive(after) {
		t.Errorf("etcd on %s was not started again (pid %d before, %d after)", dc1, before, after)
	}
	calls, err := os.ReadFile(hosts[dc1].Path("/srv/fake-systemd/calls"))
	if err != nil {
		t.Fatal(err)
	}
	want := "start --no-block etcd.service\nkill --signal=SIGKILL etcd.service\nstop etcd.service\nstart --no-block etcd.service\n"
	if string(calls) != want {
		t.Errorf("systemctl calls on %s:\n%s\nwant:\n%s", dc1, calls, want)
	}
	for _, mb := range p.Etcd.Members {
		if mb.Name == dc1 {
			continue
		}
		b, _ := os.ReadFile(hosts[mb.Name].Path("/srv/fake-systemd/calls"))
		if string(b) != "start --no-block etcd.service\n" {
			t.Errorf("%s in another center was touched: %q", mb.Name, b)
		}
	}
}

// sshWatchPower checks, right after Off returned, that the fake etcd
// process is gone.
type sshWatchPower struct {
	*SSHPower
	t             *testing.T
	host          *sshtest.Host
	aliveAfterOff bool
}

func (p *sshWatchPower) Off(ctx context.Context, h inventory.Host) error {
	pid := fakeUnitPid(p.t, p.host)
	if err := p.SSHPower.Off(ctx, h); err != nil {
		return err
	}
	// kill -9 delivered; the process may need a moment to be reaped.
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.aliveAfterOff = alive(pid)
	return nil
}
