package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

const drillInventory = "testdata/drill-inventory.yaml"

// etcdMember is one real etcd process in its own network namespace.
type etcdMember struct {
	m    inventory.Member
	ns   *labnet.NS
	args []string
	log  *bytes.Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (em *etcdMember) start(t testing.TB, bin string) {
	t.Helper()
	em.mu.Lock()
	defer em.mu.Unlock()
	cmd := em.ns.Command(context.Background(), bin, em.args...)
	cmd.Stdout, cmd.Stderr = em.log, em.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd %s: %v", em.m.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	em.cmd, em.done = cmd, done
}

// kill stops the process (SIGKILL) and waits for it.
func (em *etcdMember) kill() {
	em.mu.Lock()
	cmd, done := em.cmd, em.done
	em.cmd = nil
	em.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// etcdLab is a real etcd cluster for the drill-inventory's members, each in
// its own namespace on one bridge; the root namespace reaches them.
type etcdLab struct {
	bin      string
	inv      string
	stateDir string
	members  map[string]*etcdMember
	// client reaches the cluster (for checks of what the drill left).
	client *etcd.Client
}

func startDrillEtcd(t *testing.T) *etcdLab {
	t.Helper()
	testenv.Need(t, labnet.Available())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".cache/artifacts", artifacts.DefaultName("etcd"))
	testenv.RequireFile(t, "run make artifacts (builds the pinned etcd)", bin)

	l := &etcdLab{bin: bin, inv: drillInventory, stateDir: t.TempDir(), members: map[string]*etcdMember{}}
	c, _, err := inventory.Load(drillInventory)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(l.stateDir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	var pm []pki.EtcdMember
	for _, m := range p.Etcd.Members {
		pm = append(pm, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	certs, err := st.PKI().EnsureEtcd(pm)
	if err != nil {
		t.Fatal(err)
	}

	n, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("removing the etcd lab network: %v", err)
		}
	})
	br, err := n.Bridge(netip.MustParsePrefix("198.19.240.254/24"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, certs.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// Peers trust the peer CA (pki.EtcdPeerCA), as installed members do.
	peerCA := filepath.Join(dir, "peer-ca.crt")
	if err := os.WriteFile(peerCA, certs.PeerCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var initial []string
	for _, m := range p.Etcd.Members {
		initial = append(initial, m.Name+"="+etcd.PeerURL(m.Address))
	}
	tm := p.Etcd.Timers
	for _, m := range p.Etcd.Members {
		ns, err := n.Namespace("etcd")
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Attach(br, "eth0", netip.PrefixFrom(netip.MustParseAddr(m.Address), 24)); err != nil {
			t.Fatal(err)
		}
		md := filepath.Join(dir, m.Name)
		if err := os.Mkdir(md, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, kp := range []struct {
			name string
			kp   *pki.KeyPair
		}{{"server", certs.Server[m.Name]}, {"peer", certs.Peer[m.Name]}} {
			if err := kp.kp.Save(filepath.Join(md, kp.name+".crt"), filepath.Join(md, kp.name+".key")); err != nil {
				t.Fatal(err)
			}
		}
		em := &etcdMember{m: m, ns: ns, log: &bytes.Buffer{}, args: []string{
			"--name", m.Name, "--data-dir", filepath.Join(md, "data"),
			"--listen-client-urls", etcd.ClientURL(m.Address), "--advertise-client-urls", etcd.ClientURL(m.Address),
			"--listen-peer-urls", etcd.PeerURL(m.Address), "--initial-advertise-peer-urls", etcd.PeerURL(m.Address),
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "drill-test",
			"--cert-file", filepath.Join(md, "server.crt"), "--key-file", filepath.Join(md, "server.key"),
			"--trusted-ca-file", ca, "--client-cert-auth",
			"--peer-cert-file", filepath.Join(md, "peer.crt"), "--peer-key-file", filepath.Join(md, "peer.key"),
			"--peer-trusted-ca-file", peerCA, "--peer-client-cert-auth",
			"--heartbeat-interval", fmt.Sprint(tm.HeartbeatMs), "--election-timeout", fmt.Sprint(tm.ElectionTimeoutMs),
			"--log-level", "warn",
		}}
		l.members[m.Name] = em
		em.start(t, bin)
		t.Cleanup(em.kill)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, em := range l.members {
				t.Logf("etcd %s log (tail):\n%s", name, tailOf(em.log.String(), 2000))
			}
		}
	})
	tc, err := etcd.TLSConfig(certs)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, m := range p.Etcd.Members {
		eps = append(eps, etcd.ClientURL(m.Address))
	}
	cli, err := etcd.NewClient(eps, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	if _, err := cli.WaitHealthy(context.Background(), p.Etcd.Members, 30*time.Second); err != nil {
		t.Fatalf("the test's etcd cluster did not become healthy: %v", err)
	}
	l.client = cli
	return l
}

// drillKeys counts the keys under /tricenter/drill/, read through etcd.
func (l *etcdLab) drillKeys(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := l.client.KV().Get(ctx, "/tricenter/drill/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("counting the drill keys: %v", err)
	}
	return int(r.Count)
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// fakeLabPower stands in for the BMCs: it cuts an etcd member's network
// port first (a dead server sends nothing), then kills its process; On
// brings the port up and starts etcd again. Servers without etcd are only
// recorded. block makes On wait until its context ends.
type fakeLabPower struct {
	t     *testing.T
	lab   *etcdLab
	block bool
	onOff func(name string)
	onOn  func(name string)

	mu   sync.Mutex
	offs []string
	ons  []string
}

func (p *fakeLabPower) Describe() string { return "fake power: port down and SIGKILL etcd" }

func (p *fakeLabPower) Off(ctx context.Context, h inventory.Host) error {
	p.mu.Lock()
	p.offs = append(p.offs, h.Name)
	p.mu.Unlock()
	if em := p.lab.members[h.Name]; em != nil {
		if err := em.ns.SetPortUp("eth0", false); err != nil {
			return err
		}
		em.kill()
	}
	if p.onOff != nil {
		p.onOff(h.Name)
	}
	return nil
}

func (p *fakeLabPower) On(ctx context.Context, h inventory.Host) error {
	p.mu.Lock()
	p.ons = append(p.ons, h.Name)
	p.mu.Unlock()
	if p.onOn != nil {
		p.onOn(h.Name)
	}
	if p.block {
		<-ctx.Done()
		return ctx.Err()
	}
	if em := p.lab.members[h.Name]; em != nil {
		if err := em.ns.SetPortUp("eth0", true); err != nil {
			return err
		}
		em.mu.Lock()
		running := em.cmd != nil
		em.mu.Unlock()
		if !running {
			em.start(p.t, p.lab.bin)
		}
	}
	return nil
}

func (p *fakeLabPower) calls() (offs, ons []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.offs...), append([]string(nil), p.ons...)
}

// runDrillCmd runs "drill center-loss --yes" with the given power; kinds
// records the --power the command chose.
func runDrillCmd(ctx context.Context, l *etcdLab, pw etcd.Power, kinds *[]string, args ...string) (string, string, error) {
	return runDrillSub(ctx, newDrillCenterLossCmd, l.inv, l.stateDir, nil, pw, kinds,
		append([]string{"--yes", "--hold", "500ms"}, args...)...)
}

// runDrillSub runs a drill subcommand (center-loss, resume) with stdin in
// (nil: none) and the given power.
func runDrillSub(ctx context.Context, newCmd func(*globals, drillPower) *cobra.Command, inv, stateDir string, in io.Reader,
	pw etcd.Power, kinds *[]string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, logFlags: cliflags.Logging{Format: "text", Level: "warn"}}
	cmd := newCmd(g, func(kind string) (etcd.Power, error) {
		*kinds = append(*kinds, kind)
		return pw, nil
	})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(append([]string{"-f", inv, "--state-dir", stateDir}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if in != nil {
		cmd.SetIn(in)
	}
	err := cmd.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

// TestDrillCommand runs "tricenter drill center-loss" against a real
// three-member etcd cluster, with a fake power that cuts the members'
// network and kills them.
func TestDrillCommand(t *testing.T) {
	l := startDrillEtcd(t)

	t.Run("table: every server of dc1, confirmed, restored and verified", func(t *testing.T) {
		pw := &fakeLabPower{t: t, lab: l}
		var kinds []string
		start := time.Now()
		// Answered at the prompt instead of --yes.
		out, errOut, err := runDrillSub(context.Background(), newDrillCenterLossCmd, l.inv, l.stateDir, strings.NewReader("y\n"), pw, &kinds,
			"--center", "dc1", "--hold", "500ms", "--health-timeout", "45s")
		t.Logf("drill dc1 took %v:\n%s%s", time.Since(start).Round(time.Millisecond), out, errOut)
		if err != nil {
			t.Fatalf("drill: %v", err)
		}
		for _, want := range []string{
			"Center-loss drill of dc1 (fake power: port down and SIGKILL etcd) takes down 2 servers:",
			"center dc1  rack dc1-r01  dc1-s01 (etcd member, control plane), dc1-s02",
			"etcd members among them: dc1-s01 (1 of 3; 2 remain, quorum 2)",
			"control-plane servers among them: dc1-s01 (1 of 3)",
			"Take center dc1 down now? [y/N]",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("the confirmation lacks %q", want)
			}
		}
		if n := l.drillKeys(t); n != 0 {
			t.Errorf("%d keys left under /tricenter/drill/ after the drill", n)
		}
		if _, err := os.Stat(filepath.Join(l.stateDir, "drill", "drill-journal.json")); !os.IsNotExist(err) {
			t.Errorf("drill journal left after a drill that restored everything: %v", err)
		}
		if len(kinds) != 1 || kinds[0] != "bmc" {
			t.Errorf("power chosen %v, want bmc (every dc1 server has a BMC)", kinds)
		}
		offs, ons := pw.calls()
		if strings.Join(sortedCopy(offs), ",") != "dc1-s01,dc1-s02" || strings.Join(sortedCopy(ons), ",") != "dc1-s01,dc1-s02" {
			t.Errorf("powered off %v and on %v, want both dc1 servers", offs, ons)
		}
		for _, want := range []string{
			"powered off        dc1-s01 (etcd), dc1-s02",
			"0 acknowledged but lost",
			"restore            powered back on: dc1-s01, dc1-s02",
			"restored healthy   ",
			"leader after       dc1-s01 (dc1): ",
			"power-off took     ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if strings.Contains(out, "not verified") || strings.Contains(out, "STILL DOWN") {
			t.Errorf("a clean drill reported a problem:\n%s", out)
		}
	})

	t.Run("json: dc3", func(t *testing.T) {
		pw := &fakeLabPower{t: t, lab: l}
		var kinds []string
		out, errOut, err := runDrillCmd(context.Background(), l, pw, &kinds, "--center", "dc3", "-o", "json", "--health-timeout", "45s")
		if err != nil {
			t.Fatalf("drill: %v\n%s%s", err, out, errOut)
		}
		if len(kinds) != 1 || kinds[0] != "ssh" {
			t.Errorf("power chosen %v, want ssh (dc3-s01 has no BMC)", kinds)
		}
		if !strings.Contains(errOut, "not a power cut") {
			t.Errorf("choosing ssh did not warn that it is no power cut:\n%s", errOut)
		}
		var rep map[string]any
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if rep["verified"] != true || rep["lost"] != float64(0) || rep["healthy"] != true || rep["restored"] != true {
			t.Errorf("verified=%v lost=%v healthy=%v restored=%v", rep["verified"], rep["lost"], rep["healthy"], rep["restored"])
		}
		if fmt.Sprint(rep["poweredBackOn"]) != "[dc3-s01]" || rep["acknowledged"].(float64) < 20 {
			t.Errorf("poweredBackOn=%v acknowledged=%v", rep["poweredBackOn"], rep["acknowledged"])
		}
		t.Logf("dc3: resumed %vns after the loss, power-off took %vns, gaps %v/%v ns, healthy %vns after power-on",
			rep["resumedAfter"], rep["powerOffTook"], rep["writeGap"], rep["rejoinWriteGap"], rep["restoredHealthy"])
		if rep["keysDeleted"] != true || !strings.HasPrefix(fmt.Sprint(rep["keys"]), "/tricenter/drill/dc3/") {
			t.Errorf("keys %v deleted %v (%v)", rep["keys"], rep["keysDeleted"], rep["keysError"])
		}
		if n := l.drillKeys(t); n != 0 {
			t.Errorf("%d keys left under /tricenter/drill/ after the drill", n)
		}
	})

	t.Run("second Ctrl-C abandons the restore and says what is still off", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx, second := withSecondInterrupt(ctx)
		var once sync.Once
		pw := &fakeLabPower{t: t, lab: l, block: true,
			onOff: func(string) { cancel() }, // first Ctrl-C during the power-off
			onOn:  func(string) { once.Do(func() { go second.handOver() }) },
		}
		var kinds []string
		start := time.Now()
		out, errOut, err := runDrillCmd(ctx, l, pw, &kinds, "--center", "dc1", "--restore-timeout", "5m")
		if err == nil {
			t.Fatalf("an abandoned drill succeeded:\n%s%s", out, errOut)
		}
		if took := time.Since(start); took > time.Minute {
			t.Errorf("abandoning took %v", took)
		}
		for _, want := range []string{
			"Restoring center dc1 before exiting (Ctrl-C again to abandon the restore)",
			"Servers of center dc1 that may still be off: dc1-s01, dc1-s02",
			"The drill journal " + filepath.Join(l.stateDir, "drill", "drill-journal.json") + " names them",
			"tricenter drill resume -f testdata/drill-inventory.yaml --state-dir " + l.stateDir,
			"tricenter bmc on -f testdata/drill-inventory.yaml --server dc1-s01,dc1-s02",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
		if !strings.Contains(out, "STILL DOWN         dc1-s01, dc1-s02") || !strings.Contains(out, "loss not verified (") {
			t.Errorf("table does not say what is down and unverified:\n%s", out)
		}
		// The printed command is a real one.
		root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
		c, rest, err := root.Find([]string{"bmc", "on", "-f", drillInventory, "--server", "dc1-s01,dc1-s02"})
		if err != nil || c.Name() != "on" {
			t.Fatalf("bmc on: %v", err)
		}
		if err := c.ParseFlags(rest); err != nil {
			t.Fatalf("the printed command does not parse: %v", err)
		}
		if v, _ := c.Flags().GetStringSlice("server"); strings.Join(v, ",") != "dc1-s01,dc1-s02" {
			t.Errorf("--server parsed as %v", v)
		}
		// The journal stays, naming what may still be down; a new drill
		// is refused while it does.
		out, errOut, err = runDrillCmd(context.Background(), l, &fakeLabPower{t: t, lab: l}, &kinds, "--center", "dc2")
		if err == nil || !errors.Is(err, etcd.ErrDrillJournal) || !strings.Contains(err.Error(), "tricenter drill resume -f testdata/drill-inventory.yaml") {
			t.Fatalf("a drill with a journal present: %v\n%s%s", err, out, errOut)
		}
	})

	t.Run("drill resume brings back what the abandoned drill left down", func(t *testing.T) {
		pw := &fakeLabPower{t: t, lab: l}
		var kinds []string
		out, errOut, err := runDrillSub(context.Background(), newDrillResumeCmd, l.inv, l.stateDir, nil, pw, &kinds, "--health-timeout", "45s")
		t.Logf("resume:\n%s%s", out, errOut)
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		if len(kinds) != 1 || kinds[0] != "bmc" {
			t.Errorf("power asked for %v, want the journal's bmc", kinds)
		}
		if _, ons := pw.calls(); strings.Join(sortedCopy(ons), ",") != "dc1-s01,dc1-s02" {
			t.Errorf("resume powered on %v, want both dc1 servers", ons)
		}
		for _, want := range []string{"Drill resume: center dc1", "brought back       dc1-s01, dc1-s02", "healthy            ", "journal            removed"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if _, err := os.Stat(filepath.Join(l.stateDir, "drill", "drill-journal.json")); !os.IsNotExist(err) {
			t.Errorf("journal left after resume: %v", err)
		}
		if n := l.drillKeys(t); n != 0 {
			t.Errorf("%d keys left under /tricenter/drill/ after the resume", n)
		}
		// Nothing left: resume says so and succeeds.
		out, _, err = runDrillSub(context.Background(), newDrillResumeCmd, l.inv, l.stateDir, nil, pw, &kinds)
		if err != nil || !strings.Contains(out, "Nothing to resume") {
			t.Errorf("second resume: %v\n%s", err, out)
		}
	})
}

func mustCluster(t *testing.T) *inventory.Cluster {
	t.Helper()
	c, _, err := inventory.Load(drillInventory)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	return c
}

func sortedCopy(xs []string) []string {
	out := append([]string(nil), xs...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestDrillTableNeverClaimsWhatWasNotChecked(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rep       etcd.DrillReport
		want, not []string
	}{
		{"not verified", etcd.DrillReport{Center: "dc1", PowerCut: true, Acknowledged: 78, Failed: 3,
			NotVerified: "reading the writes back failed: context deadline exceeded", Restored: true,
			PoweredBackOn: []string{"a"}, StillOff: []string{"b"}, RestoreError: "restoring center dc1: powering b back on: timeout"},
			[]string{"loss not verified (reading the writes back failed: context deadline exceeded)", "STILL DOWN         b",
				"restored healthy   NO: restoring center dc1"},
			[]string{"acknowledged but lost"}},
		{"verified", etcd.DrillReport{Center: "dc1", PowerCut: true, Acknowledged: 78, Verified: true, Restored: true, Healthy: true,
			PoweredBackOn: []string{"a", "b"}, RestoredHealthy: 2560 * time.Millisecond, ResumedAfter: 2088 * time.Millisecond,
			PowerOffTook: 120 * time.Millisecond, Probes: []etcd.ProbeReport{{Name: "api", Attempts: 9, Failures: 2, MaxGap: time.Second}}},
			[]string{"0 acknowledged but lost", "writes resumed     2.088s after the loss", "power-off took     120ms",
				"restored healthy   2.56s after power-on", "probe api          9 checks, 2 failed, longest gap 1s"},
			[]string{"not verified", "STILL DOWN", "leader after"}},
		{"leader moved back", etcd.DrillReport{Center: "dc1", PowerCut: true, Verified: true, Restored: true, Healthy: true,
			LeaderHome:      &etcd.LeaderPlacement{Leader: "dc1-s01", LeaderCenter: "dc1", LeaderRole: inventory.RoleProduction, Home: true},
			LeaderMovedFrom: "dc3-s01 (dc3)", LeaderMoveTook: 142 * time.Millisecond},
			[]string{"leader after       dc1-s01 (dc1): moved back from dc3-s01 (dc3) in 142ms"}, []string{"NOT moved"}},
		{"leader stayed home", etcd.DrillReport{Center: "dc3", PowerCut: true, Verified: true, Restored: true, Healthy: true,
			LeaderHome: &etcd.LeaderPlacement{Leader: "dc1-s01", LeaderCenter: "dc1", LeaderRole: inventory.RoleProduction, Home: true}},
			[]string{"leader after       dc1-s01 (dc1): in production, not moved"}, []string{"moved back"}},
		{"leader move failed", etcd.DrillReport{Center: "dc1", PowerCut: true, Verified: true, Restored: true, Healthy: true,
			LeaderHome: &etcd.LeaderPlacement{Leader: "dc2-s01", LeaderCenter: "dc2", LeaderRole: inventory.RoleLocalDR,
				Target: "dc1-s01", TargetCenter: "dc1"}, LeaderMoveError: "moving etcd leadership from dc2-s01 (dc2) to dc1-s01: refused"},
			[]string{"leader after       dc2-s01 (dc2), NOT moved into production: moving etcd leadership"}, []string{"moved back"}},
		{"ssh is no power cut", etcd.DrillReport{Center: "dc1", PowerCut: false, Note: "not a power cut", Verified: true,
			Servers: []etcd.DrillServer{{Name: "a", EtcdMember: true}}, Restored: true, Healthy: true, PoweredBackOn: []string{"a"}},
			[]string{"note               not a power cut", "etcd stopped on    a (etcd)", "etcd started on: a"},
			[]string{"powered off"}},
	} {
		var b bytes.Buffer
		printDrill(&b, &tc.rep)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, b.String())
			}
		}
		for _, n := range tc.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("%s: output says %q:\n%s", tc.name, n, b.String())
			}
		}
	}
}

func TestRestoreCommand(t *testing.T) {
	for _, tc := range []struct{ kind, inv, want string }{
		{"bmc", "inv.yaml", "tricenter bmc on -f inv.yaml --server a,b"},
		{"bmc", "my inv.yaml", "tricenter bmc on -f 'my inv.yaml' --server a,b"},
		{"ssh", "inv.yaml", "tricenter exec -f inv.yaml --sudo --host a,b -- systemctl start etcd.service"},
	} {
		if got := restoreCommand(tc.kind, tc.inv, []string{"a", "b"}); got != tc.want {
			t.Errorf("restoreCommand(%s, %q) = %q, want %q", tc.kind, tc.inv, got, tc.want)
		}
	}
}

func TestSecondInterruptGoesToTheCommandThatClaimedIt(t *testing.T) {
	ctx, s := withSecondInterrupt(context.Background())
	if s.handOver() {
		t.Fatal("handOver with no claim: main must exit at once")
	}
	ch := claimSecondInterrupt(ctx)
	select {
	case <-ch:
		t.Fatal("closed before the second Ctrl-C")
	default:
	}
	first, again := s.handOver(), s.handOver()
	if !first || !again {
		t.Fatal("handOver after a claim returned false")
	}
	select {
	case <-ch:
	default:
		t.Fatal("the claimed channel is not closed after the second Ctrl-C")
	}
	if claimSecondInterrupt(context.Background()) != nil {
		t.Error("a context without main's hook gave a channel")
	}
}
