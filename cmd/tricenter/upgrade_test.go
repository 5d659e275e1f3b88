package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
