package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestApplyDryRunFlag: --dry-run is apply's dry run; --plan, its old name,
// sets the same switch for one more release, hidden from the help and
// warning on stderr (stdout may be -o json) that it goes.
func TestApplyDryRunFlag(t *testing.T) {
	help, _, code := runCLI(t, "apply", "--help")
	if code != 0 || !strings.Contains(help, "--dry-run") || strings.Contains(help, "--plan ") {
		t.Fatalf("apply --help (exit %d) should show --dry-run and hide --plan:\n%s", code, help)
	}
	for _, flag := range []string{"--dry-run", "--plan"} {
		var out, errb bytes.Buffer
		cmd := newApplyCmd(&globals{stdout: &out, stderr: &errb})
		cmd.SetErr(&errb)
		if err := cmd.ParseFlags([]string{flag}); err != nil {
			t.Fatal(err)
		}
		if v := cmd.Flags().Lookup("dry-run").Value.String(); v != "true" {
			t.Errorf("%s: the dry-run switch is %s", flag, v)
		}
	}
	out, errs, code := runCLI(t, "apply", "--plan", "-o", "json", "-f", "/nonexistent/cluster.yaml")
	if code != 1 || out != "" || !strings.HasPrefix(errs, "Warning: --plan is deprecated: use --dry-run (--plan goes in the next release)\n") {
		t.Fatalf("apply --plan (exit %d) does not warn on stderr:\nstdout %q\nstderr %q", code, out, errs)
	}
	if _, errs, _ := runCLI(t, "apply", "--dry-run", "-f", "/nonexistent/cluster.yaml"); strings.Contains(errs, "deprecated") {
		t.Fatalf("apply --dry-run warns: %q", errs)
	}
	for _, cmd := range []string{"reset", "bgp install", "exec"} {
		out, _, code := runCLI(t, append(strings.Fields(cmd), "--help")...)
		if code != 0 || !strings.Contains(out, "--dry-run") {
			t.Errorf("%s --help has no --dry-run:\n%s", cmd, out)
		}
	}
}
