package libvirt

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

func TestLibvirtRules(t *testing.T) {
	out := `-P INPUT ACCEPT
-P FORWARD ACCEPT
-N LIBVIRT_FWI
-N LIBVIRT_INP
-N LIBVIRT_OLD
-N OTHER
-A INPUT -j LIBVIRT_INP
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_OLD
-A FORWARD -i tcb1 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_INP -j LIBVIRT_FWI
-A LIBVIRT_OLD -j LIBVIRT_FWI
-A OTHER -g LIBVIRT_FWI
`
	// Every LIBVIRT_* chain, and the jumps to them from other chains.
	rules, chains := libvirtRules(out, nil)
	wantRules := [][]string{{"INPUT", "-j", "LIBVIRT_INP"}, {"FORWARD", "-j", "LIBVIRT_FWI"}, {"FORWARD", "-j", "LIBVIRT_OLD"}, {"OTHER", "-g", "LIBVIRT_FWI"}}
	if !slices.EqualFunc(rules, wantRules, slices.Equal) {
		t.Errorf("rules %q, want %q", rules, wantRules)
	}
	if want := []string{"LIBVIRT_FWI", "LIBVIRT_INP", "LIBVIRT_OLD"}; !slices.Equal(chains, want) {
		t.Errorf("chains %q, want %q", chains, want)
	}

	// LIBVIRT_OLD stays: its jump from FORWARD stays; its own jump to a
	// chain that goes is deleted (or that chain could not be removed).
	rules, chains = libvirtRules(out, func(c string) bool { return c != "LIBVIRT_OLD" })
	wantRules = [][]string{{"INPUT", "-j", "LIBVIRT_INP"}, {"FORWARD", "-j", "LIBVIRT_FWI"}, {"LIBVIRT_OLD", "-j", "LIBVIRT_FWI"}, {"OTHER", "-g", "LIBVIRT_FWI"}}
	if !slices.EqualFunc(rules, wantRules, slices.Equal) {
		t.Errorf("keeping LIBVIRT_OLD: rules %q, want %q", rules, wantRules)
	}
	if want := []string{"LIBVIRT_FWI", "LIBVIRT_INP"}; !slices.Equal(chains, want) {
		t.Errorf("keeping LIBVIRT_OLD: chains %q, want %q", chains, want)
	}
}

// NewIptablesChains: what appeared since the snapshot, in the order of
// now; a name in another table or the other family is another chain.
func TestNewIptablesChains(t *testing.T) {
	v4 := func(table, name string) IptablesChain {
		return IptablesChain{Bin: "iptables", Table: table, Name: name}
	}
	v6 := func(table, name string) IptablesChain {
		return IptablesChain{Bin: "ip6tables", Table: table, Name: name}
	}
	for _, tc := range []struct {
		name              string
		before, now, want []IptablesChain
	}{
		{"nothing before: all are new", nil, []IptablesChain{v4("filter", "LIBVIRT_INP"), v4("nat", "LIBVIRT_PRT")},
			[]IptablesChain{v4("filter", "LIBVIRT_INP"), v4("nat", "LIBVIRT_PRT")}},
		{"all there before: none are new", []IptablesChain{v4("filter", "LIBVIRT_INP"), v6("filter", "LIBVIRT_INP")},
			[]IptablesChain{v6("filter", "LIBVIRT_INP"), v4("filter", "LIBVIRT_INP")}, nil},
		{"same name, other table or family", []IptablesChain{v4("filter", "LIBVIRT_INP")},
			[]IptablesChain{v4("filter", "LIBVIRT_INP"), v4("mangle", "LIBVIRT_INP"), v6("filter", "LIBVIRT_INP")},
			[]IptablesChain{v4("mangle", "LIBVIRT_INP"), v6("filter", "LIBVIRT_INP")}},
		{"gone since: not new", []IptablesChain{v4("filter", "LIBVIRT_OLD")}, []IptablesChain{v4("nat", "LIBVIRT_PRT")},
			[]IptablesChain{v4("nat", "LIBVIRT_PRT")}},
		{"nothing now", []IptablesChain{v4("filter", "LIBVIRT_OLD")}, nil, nil},
	} {
		if got := NewIptablesChains(tc.before, tc.now); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestDaemonRemovesOnlyItsIptablesChains runs libvirtd (no VM) next to
// LIBVIRT_* chains that existed before it started, in real iptables and
// ip6tables tables. Chains that appear while it runs (made by the test:
// libvirtd without a network makes none itself) stand for its own. A
// Daemon that reuses the running libvirtd removes none; Stop removes the
// new ones, and the jumps to them, and keeps the old; after a crash
// (libvirtd killed, Stop never called) SweepIptablesChains does the same
// from the record in the run directory.
func TestDaemonRemovesOnlyItsIptablesChains(t *testing.T) {
	testenv.Need(t, Available())
	testenv.RequireBinary(t, "iptables", "ip6tables")
	// libvirtd is the machine's: a lab starting while this test's runs
	// would use it, and lose it when the test stops it.
	testenv.Exclusive(t, "the libvirtd iptables test")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	testenv.Require(t, "no libvirtd answering on "+URI+" (this test starts its own and stops it; stop the running one)", answers(ctx) != nil)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	id := randHex(3)
	old := []IptablesChain{
		{Bin: "iptables", Table: "filter", Name: "LIBVIRT_TESTOLD" + id},
		{Bin: "iptables", Table: "nat", Name: "LIBVIRT_TESTOLD" + id},
		{Bin: "ip6tables", Table: "filter", Name: "LIBVIRT_TESTOLD" + id},
	}
	for _, c := range old {
		makeChain(t, c)
	}
	mine := []IptablesChain{
		{Bin: "iptables", Table: "filter", Name: "LIBVIRT_TESTNEW" + id},
		{Bin: "iptables", Table: "nat", Name: "LIBVIRT_TESTNEW" + id},
		{Bin: "ip6tables", Table: "mangle", Name: "LIBVIRT_TESTNEW" + id},
	}
	// A chain of someone else's that jumps to one of libvirtd's.
	jumper := IptablesChain{Bin: "iptables", Table: "filter", Name: "TCTEST_" + id}

	t.Run("teardown", func(t *testing.T) {
		runDir := t.TempDir()
		start := time.Now()
		d, err := StartDaemon(ctx, runDir, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Stop() })
		t.Logf("libvirtd answers after %v", time.Since(start).Round(time.Millisecond))
		if len(d.Pids()) == 0 {
			t.Fatal("StartDaemon started no daemon although none answered")
		}
		snap := d.IptablesBefore()
		if snap == nil {
			t.Fatal("a Daemon that started libvirtd recorded no iptables snapshot")
		}
		for _, c := range old {
			if !slices.Contains(snap.Chains, c) {
				t.Errorf("the snapshot %v lacks %v, which existed before libvirtd started", snap.Chains, c)
			}
		}
		rec, err := ReadIptablesSnapshot(runDir)
		if err != nil || rec == nil || !slices.Equal(rec.Chains, snap.Chains) {
			t.Fatalf("the recorded snapshot in %s is %+v (%v), want %+v", runDir, rec, err, snap)
		}

		// A second Daemon finds this libvirtd: it owns nothing, records
		// nothing and removes nothing.
		otherDir := t.TempDir()
		reuse, err := StartDaemon(ctx, otherDir, log)
		if err != nil {
			t.Fatal(err)
		}
		if reuse.IptablesBefore() != nil || len(reuse.Pids()) > 0 {
			t.Errorf("a Daemon that reused libvirtd has snapshot %v and pids %v, want none", reuse.IptablesBefore(), reuse.Pids())
		}
		if _, err := os.Stat(IptablesSnapshotPath(otherDir)); err == nil {
			t.Errorf("a Daemon that reused libvirtd recorded a snapshot in %s", otherDir)
		}

		for _, c := range mine {
			makeChain(t, c)
		}
		makeChain(t, jumper)
		ipt(t, jumper.Bin, "-t", jumper.Table, "-A", jumper.Name, "-j", mine[0].Name)

		if err := reuse.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, c := range append(slices.Clone(mine), old...) {
			if !chainExists(c) {
				t.Errorf("chain %v is gone after Stop of a Daemon that reused libvirtd", c)
			}
		}

		start = time.Now()
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("Stop took %v", time.Since(start).Round(time.Millisecond))
		for _, c := range mine {
			if chainExists(c) {
				t.Errorf("chain %v, made while the Daemon's libvirtd ran, is left after Stop", c)
			}
		}
		for _, c := range old {
			if !chainExists(c) {
				t.Errorf("chain %v, there before libvirtd started, was removed by Stop", c)
			}
		}
		if rules := chainRules(t, jumper); strings.Contains(rules, mine[0].Name) {
			t.Errorf("the jump to %s is left in %s:\n%s", mine[0].Name, jumper.Name, rules)
		}
		if _, err := os.Stat(IptablesSnapshotPath(runDir)); err == nil {
			t.Error("Stop left the snapshot: a later sweep would remove chains of a libvirtd started since")
		}
	})

	t.Run("crash", func(t *testing.T) {
		runDir := t.TempDir()
		d, err := StartDaemon(ctx, runDir, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Stop() })
		for _, c := range mine {
			makeChain(t, c)
		}
		// The crash: the daemons die, Stop never runs.
		for _, c := range d.procs {
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s (pid %d) did not die of SIGKILL", c.name, c.cmd.Process.Pid)
			}
		}
		removed, err := SweepIptablesChains(runDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range mine {
			if !slices.Contains(removed, c) || chainExists(c) {
				t.Errorf("the sweep did not remove %v (removed %v)", c, removed)
			}
		}
		for _, c := range old {
			if slices.Contains(removed, c) || !chainExists(c) {
				t.Errorf("the sweep removed %v, which existed before libvirtd started", c)
			}
		}
		if _, err := os.Stat(IptablesSnapshotPath(runDir)); err == nil {
			t.Error("the sweep left the snapshot")
		}
		makeChain(t, mine[0])
		if again, err := SweepIptablesChains(runDir); err != nil || len(again) > 0 || !chainExists(mine[0]) {
			t.Errorf("a second sweep without a snapshot removed %v (%v), want nothing", again, err)
		}
	})
}

// ipt runs iptables or ip6tables with -w.
func ipt(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", bin, strings.Join(args, " "), err, out)
	}
}

// makeChain creates the chain; the test's cleanup removes it if it is
// still there.
func makeChain(t *testing.T, c IptablesChain) {
	t.Helper()
	ipt(t, c.Bin, "-t", c.Table, "-N", c.Name)
	t.Cleanup(func() {
		if chainExists(c) {
			_ = exec.Command(c.Bin, "-w", "-t", c.Table, "-F", c.Name).Run()
			if out, err := exec.Command(c.Bin, "-w", "-t", c.Table, "-X", c.Name).CombinedOutput(); err != nil {
				t.Errorf("removing the test's chain %v: %v: %s", c, err, out)
			}
		}
	})
}

func chainExists(c IptablesChain) bool {
	return exec.Command(c.Bin, "-w", "-t", c.Table, "-S", c.Name).Run() == nil
}

func chainRules(t *testing.T, c IptablesChain) string {
	t.Helper()
	out, err := exec.Command(c.Bin, "-w", "-t", c.Table, "-S", c.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", c, err, out)
	}
	return string(out)
}
