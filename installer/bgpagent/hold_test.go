package bgpagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// fakeRunner is a fake node for the hold logic: it records the commands and
// answers with canned output; the real transport is installer/phase's, the
// real command line and agent are exercised by TestHoldAgainstFRR.
type fakeRunner struct {
	dryRun bool
	out    string
	err    error
	cmds   []phase.Command
	logs   []string
}

func (r *fakeRunner) String() string { return "cp1" }
func (r *fakeRunner) DryRun() bool   { return r.dryRun }
func (r *fakeRunner) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *fakeRunner) Run(_ context.Context, c phase.Command) error {
	r.cmds = append(r.cmds, c)
	if r.dryRun {
		return nil
	}
	if c.Stdout != nil {
		_, _ = io.WriteString(c.Stdout, r.out)
	}
	return r.err
}

func TestHoldCommand(t *testing.T) {
	if APIServerService != "kube-apiserver" {
		t.Errorf("APIServerService = %q", APIServerService)
	}
	r := &fakeRunner{out: `{"service":"kube-apiserver","hold":{"reason":"x"},"withdrawn":["198.18.46.1/32"],"peers":["core-a1 (198.18.32.1)","core-a2 (198.18.32.2)"]}`}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := hold(ctx, r, nodeCLI(), APIServerService, "upgrading kube-apiserver to v1.37.2 (step 3/9)", 0); err != nil {
		t.Fatal(err)
	}
	c := r.cmds[0]
	want := "/usr/local/bin/tricenter-bgp hold kube-apiserver --reason 'upgrading kube-apiserver to v1.37.2 (step 3/9)' --timeout "
	if !strings.HasPrefix(c.Cmd, want) || !strings.HasSuffix(c.Cmd, " -o json") || !c.Sudo {
		t.Errorf("command %q (sudo %v), want %q…(remaining time) -o json as root", c.Cmd, c.Sudo, want)
	}
	if c.Describe != "hold BGP service kube-apiserver (withdraw its VIPs): upgrading kube-apiserver to v1.37.2 (step 3/9)" {
		t.Errorf("change record %q", c.Describe)
	}
	if len(r.logs) != 1 || r.logs[0] != "BGP service kube-apiserver held: 198.18.46.1/32 withdrawn, sent to core-a1 (198.18.32.1), core-a2 (198.18.32.2)" {
		t.Errorf("progress %q", r.logs)
	}

	r = &fakeRunner{}
	if err := release(context.Background(), r, agentCLI{bin: "/opt/tricenter-bgp", config: "/tmp/lab dir/agent.yaml"}, APIServerService); err != nil {
		t.Fatal(err)
	}
	if got, want := r.cmds[0].Cmd, "/opt/tricenter-bgp release kube-apiserver --config '/tmp/lab dir/agent.yaml' -o json"; got != want {
		t.Errorf("release command %q, want %q", got, want)
	}
}

func TestHoldErrors(t *testing.T) {
	ctx := context.Background()
	// A VIP kept by another healthy service still routes requests here.
	r := &fakeRunner{out: `{"service":"kube-apiserver","withdrawn":[],"peers":[],"kept":{"198.18.46.1/32":["ingress"]}}`}
	err := hold(ctx, r, nodeCLI(), APIServerService, "upgrading", 0)
	if !errors.Is(err, ErrVIPKept) || err.Error() != "VIP still announced: kube-apiserver held, but 198.18.46.1/32 (also listed by ingress): hold those services too" {
		t.Errorf("kept VIP: %v", err)
	}
	// The command failing (timeout, no such service) says the VIPs may
	// still be announced.
	r = &fakeRunner{err: errors.New(`exit status 1: Error: no such service "kube-apiservr" on cp1`)}
	err = hold(ctx, r, nodeCLI(), "kube-apiservr", "upgrading", 0)
	if err == nil || !strings.Contains(err.Error(), "its VIPs may still be announced: do not stop it") || !strings.Contains(err.Error(), "no such service") {
		t.Errorf("failed command: %v", err)
	}
	r = &fakeRunner{out: "Held kube-apiserver"}
	if err := hold(ctx, r, nodeCLI(), APIServerService, "upgrading", 0); err == nil || !strings.Contains(err.Error(), "unreadable answer") {
		t.Errorf("unreadable answer: %v", err)
	}
	// Refused before anything runs.
	r = &fakeRunner{}
	if err := hold(ctx, r, nodeCLI(), APIServerService, "", 0); err == nil || len(r.cmds) != 0 {
		t.Errorf("empty reason: %v, %d command(s)", err, len(r.cmds))
	}
	if err := release(ctx, r, nodeCLI(), "a b; reboot"); err == nil || len(r.cmds) != 0 {
		t.Errorf("bad service name: %v, %d command(s)", err, len(r.cmds))
	}
	// A dry run records the change only.
	r = &fakeRunner{dryRun: true}
	if err := hold(ctx, r, nodeCLI(), APIServerService, "upgrading", 0); err != nil || len(r.cmds) != 1 {
		t.Errorf("dry run: %v, %d command(s)", err, len(r.cmds))
	}
}

// The unit keeps /run/tricenter-bgp (where holds live) across restarts of
// the agent.
func TestUnitKeepsHoldsAcrossRestarts(t *testing.T) {
	u := string(Unit(bgp.DefaultConfigFile))
	if !strings.Contains(u, "\nRuntimeDirectory=tricenter-bgp\n") || !strings.Contains(u, "\nRuntimeDirectoryPreserve=yes\n") {
		t.Errorf("unit:\n%s", u)
	}
	if !strings.HasPrefix(bgp.DefaultHoldDir, "/run/tricenter-bgp/") {
		t.Errorf("DefaultHoldDir %s is not under the unit's runtime directory", bgp.DefaultHoldDir)
	}
}
