package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/libvirt"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestDownRemovesOnlyTheLabsIptablesChains runs `lab down` (Down) on labs
// whose process died, in real iptables and ip6tables tables: LIBVIRT_*
// chains that existed before the lab started its libvirtd survive the
// sweep and are not reported as left, while the chains that appeared after
// (the lab's libvirtd's; the test makes them, no daemon runs) and the jumps
// to them are removed — whether the lab died before or after lab.json
// named the record. A lab that used a libvirtd it did not start removes
// no chain.
func TestDownRemovesOnlyTheLabsIptablesChains(t *testing.T) {
	testenv.RequireRoot(t, "the test makes iptables chains")
	testenv.RequireBinary(t, "iptables", "ip6tables")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	old := []libvirt.IptablesChain{
		{Bin: "iptables", Table: "filter", Name: "LIBVIRT_TESTOLD" + id},
		{Bin: "iptables", Table: "nat", Name: "LIBVIRT_TESTOLD" + id},
		{Bin: "ip6tables", Table: "filter", Name: "LIBVIRT_TESTOLD" + id},
	}
	for _, c := range old {
		makeChain(t, c)
	}
	mine := []libvirt.IptablesChain{
		{Bin: "iptables", Table: "filter", Name: "LIBVIRT_TESTNEW" + id},
		{Bin: "iptables", Table: "mangle", Name: "LIBVIRT_TESTNEW" + id},
		{Bin: "ip6tables", Table: "nat", Name: "LIBVIRT_TESTNEW" + id},
	}
	jumper := libvirt.IptablesChain{Bin: "iptables", Table: "filter", Name: "TCTEST_" + id}

	// crashedLab writes the record of a lab whose process died; started
	// says whether it had started its libvirtd (then the snapshot is in
	// its directory, and in lab.json when inRecord), then makes the
	// chains its libvirtd made.
	crashedLab := func(t *testing.T, started, inRecord bool) (*Record, string) {
		dir := filepath.Join(t.TempDir(), "lab")
		p := Paths{Dir: dir}
		rec := &Record{Name: "iptables-" + id, Dir: dir, Started: time.Now().UTC()}
		if started {
			snap, err := libvirt.RecordIptablesChains(p.Libvirt())
			if err != nil {
				t.Fatal(err)
			}
			if inRecord {
				rec.LibvirtIptables = snap
			}
		}
		if err := rec.save(p); err != nil {
			t.Fatal(err)
		}
		for _, c := range mine {
			makeChain(t, c)
		}
		makeChain(t, jumper)
		iptables(t, jumper.Bin, "-t", jumper.Table, "-A", jumper.Name, "-j", mine[0].Name)
		return rec, dir
	}
	oldKept := func(t *testing.T) {
		t.Helper()
		for _, c := range old {
			if !chainExists(c) {
				t.Errorf("chain %v, there before the lab's libvirtd started, is gone", c)
			}
		}
	}

	for _, tc := range []struct {
		name     string
		inRecord bool
	}{
		{"died before lab.json named the snapshot", false},
		{"lab.json names the snapshot", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, dir := crashedLab(t, true, tc.inRecord)
			left, err := Leftovers(context.Background(), rec)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range mine {
				if !slices.Contains(left, "iptables chain "+c.String()) {
					t.Errorf("Leftovers %q lacks the lab's chain %v", left, c)
				}
			}
			for _, c := range old {
				if slices.Contains(left, "iptables chain "+c.String()) {
					t.Errorf("Leftovers counts %v, which was there before the lab's libvirtd started", c)
				}
			}
			var out bytes.Buffer
			start := time.Now()
			if err := Down(context.Background(), dir, &out); err != nil {
				t.Fatalf("lab down: %v\n%s", err, out.String())
			}
			t.Logf("lab down took %v:\n%s", time.Since(start).Round(time.Millisecond), out.String())
			for _, c := range mine {
				if chainExists(c) {
					t.Errorf("the lab's chain %v is left after lab down", c)
				}
				if !strings.Contains(out.String(), "removed leftover iptables chain "+c.String()) {
					t.Errorf("lab down does not say it removed %v", c)
				}
			}
			oldKept(t)
			if rules := chainRules(t, jumper); strings.Contains(rules, mine[0].Name) {
				t.Errorf("the jump to %s is left in %s:\n%s", mine[0].Name, jumper.Name, rules)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("lab down left %s", dir)
			}
		})
	}

	t.Run("used a libvirtd it did not start", func(t *testing.T) {
		rec, dir := crashedLab(t, false, false)
		left, err := Leftovers(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range left {
			if strings.HasPrefix(l, "iptables chain ") {
				t.Errorf("Leftovers counts %s, but no chain is the lab's", l)
			}
		}
		var out bytes.Buffer
		if err := Down(context.Background(), dir, &out); err != nil {
			t.Fatalf("lab down: %v\n%s", err, out.String())
		}
		for _, c := range append(slices.Clone(mine), old...) {
			if !chainExists(c) {
				t.Errorf("lab down removed %v although the lab started no libvirtd:\n%s", c, out.String())
			}
		}
		if rules := chainRules(t, jumper); !strings.Contains(rules, mine[0].Name) {
			t.Errorf("lab down removed the jump to %s from %s", mine[0].Name, jumper.Name)
		}
	})
}

// iptables runs iptables or ip6tables with -w.
func iptables(t *testing.T, bin string, args ...string) {
	t.Helper()
	if out, err := exec.Command(bin, append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", bin, strings.Join(args, " "), err, out)
	}
}

// makeChain creates the chain; the test's cleanup removes it if it is
// still there.
func makeChain(t *testing.T, c libvirt.IptablesChain) {
	t.Helper()
	iptables(t, c.Bin, "-t", c.Table, "-N", c.Name)
	t.Cleanup(func() {
		if chainExists(c) {
			_ = exec.Command(c.Bin, "-w", "-t", c.Table, "-F", c.Name).Run()
			if out, err := exec.Command(c.Bin, "-w", "-t", c.Table, "-X", c.Name).CombinedOutput(); err != nil {
				t.Errorf("removing the test's chain %v: %v: %s", c, err, out)
			}
		}
	})
}

func chainExists(c libvirt.IptablesChain) bool {
	return exec.Command(c.Bin, "-w", "-t", c.Table, "-S", c.Name).Run() == nil
}

func chainRules(t *testing.T, c libvirt.IptablesChain) string {
	t.Helper()
	out, err := exec.Command(c.Bin, "-w", "-t", c.Table, "-S", c.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", c, err, out)
	}
	return string(out)
}
