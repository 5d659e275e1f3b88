package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCertsRenewFlags: selections no renewal can run with are refused
// before the inventory's state is read.
func TestCertsRenewFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--all", "--kind", "kubelet serving"}, "--all selects every leaf certificate"},
		{[]string{"--all", "--due"}, "--all selects every leaf certificate"},
		{[]string{"-o", "yaml"}, "yaml"},
		{[]string{"extra"}, `unknown command "extra"`},
	} {
		stateDir := t.TempDir()
		args := append([]string{"certs", "renew", "-f", secretsInventory, "--state-dir", stateDir, "--dry-run"}, tc.args...)
		out, errs, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error containing %q (stdout %q)", tc.args, code, errs, tc.want, out)
		}
		if _, err := os.Stat(filepath.Join(stateDir, "lab")); err == nil {
			t.Errorf("%v: the state directory was created for a refused command", tc.args)
		}
	}
}

// TestCertsRenewRefusesWithoutATerminal: without --yes and without a
// terminal to answer on, renew stops before it reads anything.
func TestCertsRenewRefusesWithoutATerminal(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stateDir := t.TempDir()
	_, errs, code := runCLIIn(t, devnull, "certs", "renew", "-f", secretsInventory, "--state-dir", stateDir)
	if code != 1 || !strings.Contains(errs, "nobody can confirm the renewal: pass --yes") {
		t.Errorf("no terminal: exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "lab")); err == nil {
		t.Error("the refused renewal opened the state directory")
	}
}

// TestCertsBeforeApply: list and renew on a state without certificates
// say there is nothing yet, and name the first apply.
func TestCertsBeforeApply(t *testing.T) {
	stateDir := t.TempDir()
	for _, args := range [][]string{
		{"certs", "list", "-f", secretsInventory, "--state-dir", stateDir},
		{"certs", "renew", "-f", secretsInventory, "--state-dir", stateDir, "--dry-run", "--kind", "kubelet serving"},
	} {
		out, errs, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(errs, "apply") {
			t.Errorf("%v: exit %d, stderr %q (stdout %q), want an error naming apply", args, code, errs, out)
		}
	}
	_, errs, code := runCLI(t, "certs", "renew", "-f", secretsInventory, "--state-dir", stateDir, "--dry-run", "--kind", "CA kubernetes")
	if code == 0 || !strings.Contains(errs, `certificate kind "CA kubernetes"`) {
		t.Errorf("a CA as kind: exit %d, stderr %q", code, errs)
	}
}
