package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// recordingFencePower records the BMC calls of a fence and touches
// nothing.
type recordingFencePower struct {
	mu    sync.Mutex
	calls []string
}

func (p *recordingFencePower) State(_ context.Context, h inventory.Host) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "state "+h.Name)
	return false, nil
}

func (p *recordingFencePower) Off(_ context.Context, h inventory.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "off "+h.Name)
	return nil
}

func runFenceCmd(t *testing.T, pw installer.PowerControl, stateDir string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, logFlags: cliflags.Logging{Format: "text", Level: "warn"}}
	cmd := newFenceCmd(g, pw)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(append([]string{"-f", drillInventory, "--state-dir", stateDir}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// A fence that cannot reach the API (here: a cluster never applied, so no
// credential) or names an unknown center stops before any BMC is asked.
func TestFenceStopsBeforeTheBMCs(t *testing.T) {
	pw := &recordingFencePower{}
	_, _, err := runFenceCmd(t, pw, t.TempDir(), "--center", "dc2", "--yes")
	if !errors.Is(err, errNoPKI) {
		t.Errorf("fence of a cluster never applied: %v, want %v", err, errNoPKI)
	}
	_, _, err = runFenceCmd(t, pw, t.TempDir(), "--center", "dc9")
	if err == nil || !strings.Contains(err.Error(), `center "dc9"`) || !strings.Contains(err.Error(), "dc1, dc2, dc3") {
		t.Errorf("fence of an unknown center: %v", err)
	}
	_, _, err = runFenceCmd(t, pw, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `"center" not set`) {
		t.Errorf("fence without --center: %v", err)
	}
	if len(pw.calls) != 0 {
		t.Errorf("BMC calls: %v", pw.calls)
	}
}

func TestPrintFence(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    installer.FenceReport
		want []string
	}{
		{"fenced", installer.FenceReport{Center: "dc2", Fenced: true, Servers: []installer.FencedServer{
			{Name: "dc2-s01", Power: "powered off now (BMC)", Node: "tainted"},
			{Name: "dc2-s02", Power: "assumed dead (BMC did not answer: no answer)", Node: "tainted", Error: "no answer"},
			{Name: "dc2-s03", Power: "off (BMC)", Node: "not registered"},
		}}, []string{
			"Fence of center dc2\n",
			"SERVER   NODE            POWER\n",
			"dc2-s01  tainted         powered off now (BMC)\n",
			"dc2-s02  tainted         assumed dead (BMC did not answer: no answer)\n",
			"Fenced: the Nodes carry node.kubernetes.io/out-of-service=nodeshutdown:NoExecute;",
			"When the servers are back: tricenter unfence -f inv.yaml --center dc2\n",
		}},
		{"refused", installer.FenceReport{Center: "dc2", Refused: "the BMCs of dc2-s02 did not confirm they are off", Servers: []installer.FencedServer{
			{Name: "dc2-s02", Power: "not confirmed (BMC did not answer: no answer)", Node: "not tainted", Error: "no answer"},
		}}, []string{"dc2-s02  not tainted  not confirmed (BMC did not answer: no answer)\n", "REFUSED: the BMCs of dc2-s02 did not confirm they are off\n"}},
		{"dry run", installer.FenceReport{Center: "dc2", DryRun: true, Fenced: true, Servers: []installer.FencedServer{
			{Name: "dc2-s01", Power: "on (BMC): would power off", Node: "would taint"},
		}}, []string{"Fence of center dc2 (dry run: nothing was changed)\n", "dc2-s01  would taint  on (BMC): would power off\n", "fence would taint"}},
		{"taint failed", installer.FenceReport{Center: "dc2", Servers: []installer.FencedServer{
			{Name: "dc2-s01", Power: "off (BMC)", Node: "not tainted", Error: "tainting Node dc2-s01 out-of-service: forbidden"},
		}}, []string{"dc2-s01: tainting Node dc2-s01 out-of-service: forbidden\n", "NOT fenced"}},
	} {
		var b bytes.Buffer
		printFence(&b, &tc.r, "inv.yaml")
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, b.String())
			}
		}
	}
}

func TestPrintUnfence(t *testing.T) {
	var b bytes.Buffer
	printUnfence(&b, &installer.UnfenceReport{Center: "dc2", Servers: []installer.UnfencedServer{
		{Name: "dc2-s01", Ready: true, Boot: "matches", Node: "untainted"},
		{Name: "dc2-s02", Reason: "kubelet heartbeat 3m0s old (fresh within 20s)", Boot: "not verified (server not reachable: i/o timeout)", Node: "kept tainted"},
	}})
	for _, w := range []string{
		"Unfence of center dc2\n",
		"SERVER   NODE          READY  WHY\n",
		"dc2-s01  untainted     yes    boot matches\n",
		"dc2-s02  kept tainted  no     kubelet heartbeat 3m0s old (fresh within 20s)\n",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, b.String())
		}
	}
}
