package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/upgrade"
)

const upgradeInventory = "../../examples/inventory/lab.yaml"

// TestUpgradeFlags: values no upgrade can run with are refused before the
// inventory or the state is read.
func TestUpgradeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-unavailable-per-rack", "0"}, "--max-unavailable-per-rack 0: use 1 or more"},
		{[]string{"--drain-timeout", "0s"}, "--drain-timeout 0s: use a positive duration"},
		{[]string{"--to", "1.37.2"}, `--to: "1.37.2" is not a version: write it as vMAJOR.MINOR.PATCH`},
		{[]string{"--etcd-to", "latest"}, `--etcd-to: "latest" is not a version`},
		{[]string{"-o", "yaml"}, "yaml"},
		{[]string{"--drain-timeout", "soon"}, `invalid argument "soon"`},
	} {
		stateDir := t.TempDir()
		args := append([]string{"upgrade", "-f", upgradeInventory, "--state-dir", stateDir, "--dry-run"}, tc.args...)
		out, errs, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error containing %q (stdout %q)", tc.args, code, errs, tc.want, out)
		}
		if _, err := os.Stat(filepath.Join(stateDir, "lab")); err == nil {
			t.Errorf("%v: the state directory was created for a refused command", tc.args)
		}
	}
}

// TestUpgradeRefusesWithoutATerminal: without --yes and without a terminal
// to answer on, upgrade stops before it observes or changes anything,
// saying how to go ahead.
func TestUpgradeRefusesWithoutATerminal(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stateDir := t.TempDir()
	_, errs, code := runCLIIn(t, devnull, "upgrade", "-f", upgradeInventory, "--state-dir", stateDir, "--to", "v1.37.2")
	if code != 1 || !strings.Contains(errs, "stdin is not a terminal, so nobody can confirm the upgrade: pass --yes to go ahead without confirmation (--dry-run shows the plan)") {
		t.Errorf("no terminal: exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "lab")); err == nil {
		t.Error("the refused upgrade opened the state directory")
	}

	inv, err := os.ReadFile(upgradeInventory)
	if err != nil {
		t.Fatal(err)
	}
	_, errs, code = runCLIIn(t, strings.NewReader(string(inv)), "upgrade", "-f", "-", "--state-dir", stateDir)
	if code != 1 || !strings.Contains(errs, "stdin held the inventory (-f -) and there is no terminal to confirm on: pass --yes") {
		t.Errorf("-f - without a terminal: exit %d, stderr %q", code, errs)
	}
}

// TestUpgradeNeedsAnAppliedCluster: --dry-run and --yes go past the
// question and ask the engine, which needs the PKI an apply created; a
// state without it is named, with what to do.
func TestUpgradeNeedsAnAppliedCluster(t *testing.T) {
	for _, extra := range []string{"--dry-run", "--yes"} {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		_, errs, code := runCLIIn(t, devnull, "upgrade", "-f", upgradeInventory, "--state-dir", t.TempDir(), extra)
		devnull.Close()
		if code != 1 || !strings.Contains(errs, "planning the upgrade: no etcd PKI in the state directory: run tricenter apply first") {
			t.Errorf("%s on a state without PKI: exit %d, stderr %q", extra, code, errs)
		}
	}
}

// TestUpgradeHelpNamesItsFlags: the flags the documentation promises are
// there, with their defaults.
func TestUpgradeHelpNamesItsFlags(t *testing.T) {
	out, errs, code := runCLI(t, "upgrade", "--help")
	if code != 0 {
		t.Fatalf("upgrade --help: exit %d: %s", code, errs)
	}
	for _, want := range []string{"--to string", "--etcd-to string", "--dry-run", "-y, --yes", "--max-unavailable-per-rack int",
		`(default 1)`, "--drain-timeout duration", "(default 5m0s)", "--allow-patch-downgrade", "--replan", "--lock-timeout",
		"--state-dir", "--bastion", "-o, --output"} {
		if !strings.Contains(out, want) {
			t.Errorf("upgrade --help lacks %q", want)
		}
	}
}

// TestUpgradePrinting: a resumed, paused upgrade shows how far it got,
// why it paused and where it goes on; a finished one says so.
func TestUpgradePrinting(t *testing.T) {
	steps := []upgrade.Step{
		{ID: "etcd/a/v3.6.16", Number: 1, Batch: 1, Component: upgrade.CompEtcd, Action: upgrade.ActionLeader, Host: "a", From: "v3.5.35", To: "v3.6.16", Target: "v3.6.16"},
		{ID: "node/b/v1.37.2", Number: 2, Batch: 2, Component: upgrade.CompNode, Action: upgrade.ActionNode, Host: "b", From: "v1.36.3", To: "v1.37.2", Target: "v1.37.2"},
	}
	plan := &upgrade.Plan{Cluster: "lab", Kubernetes: "v1.37.2", Etcd: "v3.6.16", MaxUnavailablePerRack: 1, Steps: steps}
	pause := &upgrade.Pause{Step: steps[1].ID, Number: 2, Host: "b", Reason: "draining b: pods still on the node"}
	r := &installer.UpgradeResult{Plan: plan, Digest: plan.Digest(), Resumed: true, Started: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		Status: map[string]string{steps[0].ID: "done", steps[1].ID: "pending"}, Paused: pause, Record: "/state/lab/upgrade.json"}
	var b strings.Builder
	printUpgradePlan(&b, r)
	for _, want := range []string{"Upgrade in progress since ", ": 1 of 2 steps done\n", "Paused at step 2 (node/b/v1.37.2) on b: draining b: pods still on the node\n",
		"  done\n", "  pending\n", "1 step to run, from step 2 (node/b/v1.37.2)\n", "Progress is recorded in /state/lab/upgrade.json\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	r.Outcome = &upgrade.Outcome{AlreadyDone: []string{steps[0].ID}}
	printUpgraded(&b, r)
	if !strings.Contains(b.String(), "ran 0 steps (1 found already done)") || !strings.Contains(b.String(), "paused at step 2 (node/b/v1.37.2) on b") ||
		!strings.Contains(b.String(), "1 step remains: fix that, then run the same command again to resume") {
		t.Errorf("paused run:\n%s", b.String())
	}
	b.Reset()
	r.Paused, r.Status[steps[1].ID] = nil, "done"
	r.Outcome = &upgrade.Outcome{AlreadyDone: []string{steps[0].ID}, Ran: []string{steps[1].ID}}
	printUpgraded(&b, r)
	if !strings.Contains(b.String(), "ran 1 step (1 found already done)") || !strings.Contains(b.String(), "upgraded: etcd v3.6.16, Kubernetes v1.37.2 on every server") {
		t.Errorf("finished run:\n%s", b.String())
	}
}
