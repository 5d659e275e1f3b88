package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// complete runs cobra's __complete (what the shell scripts call) and
// returns the values offered, without descriptions, and the directive line.
func complete(t *testing.T, env testEnv, args ...string) ([]string, string) {
	t.Helper()
	out, errs, code := runCLIWith(t, env, nil, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %v: exit %d: %s", args, code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var vals []string
	for _, l := range lines[:len(lines)-1] {
		v, _, _ := strings.Cut(l, "\t")
		vals = append(vals, v)
	}
	return vals, lines[len(lines)-1]
}

// noFiles is cobra's ShellCompDirectiveNoFileComp.
const noFiles = ":4"

func TestCompleteFromInventory(t *testing.T) {
	none := testEnv{}
	for _, tc := range []struct {
		name string
		env  testEnv
		args []string
		want []string
	}{
		{"bmc --center", none, []string{"bmc", "off", "-f", labInv, "--center", ""}, []string{"dc1", "dc2", "dc3"}},
		{"bmc --rack with a prefix", none, []string{"bmc", "status", "-f", labInv, "--rack", "dc1"}, []string{"dc1-r01", "dc1-r02"}},
		{"bmc --server", none, []string{"bmc", "on", "-f", labInv, "--server", "dc2"}, []string{"dc2-r01-s01", "dc2-r01-s02"}},
		{"a comma list completes its last item, without the chosen ones", none,
			[]string{"bmc", "on", "-f", labInv, "--server", "dc2-r01-s01,dc"},
			[]string{"dc2-r01-s01,dc1-r01-s01", "dc2-r01-s01,dc1-r01-s02", "dc2-r01-s01,dc1-r02-s01", "dc2-r01-s01,dc1-r02-s02",
				"dc2-r01-s01,dc2-r01-s02", "dc2-r01-s01,dc3-r01-s01", "dc2-r01-s01,dc3-r01-s02"}},
		{"drill --center from TRICENTER_INVENTORY", testEnv{env: map[string]string{envInventory: labInv}},
			[]string{"drill", "center-loss", "--center", "dc"}, []string{"dc1", "dc2", "dc3"}},
		{"-f wins over TRICENTER_INVENTORY", testEnv{env: map[string]string{envInventory: threeCenter}},
			[]string{"drill", "center-loss", "-f", labInv, "--center", "dc3"}, []string{"dc3"}},
		{"apply --servers", none, []string{"apply", "-f", labInv, "--servers", "dc3"}, []string{"dc3-r01-s01", "dc3-r01-s02"}},
		{"reset --servers", none, []string{"reset", "-f", labInv, "--servers", "dc1-r02"}, []string{"dc1-r02-s01", "dc1-r02-s02"}},
		{"exec --rack", none, []string{"exec", "-f", labInv, "--rack", "dc3"}, []string{"dc3-r01"}},
		{"kubeconfig --server is a URL, not a server", none, []string{"kubeconfig", "-f", labInv, "--server", ""}, nil},
		{"no inventory", none, []string{"bmc", "off", "--center", ""}, nil},
		{"a missing file", none, []string{"bmc", "off", "-f", "/nonexistent.yaml", "--center", ""}, nil},
		{"stdin is not the inventory while completing", none, []string{"bmc", "off", "-f", "-", "--center", ""}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dir := complete(t, tc.env, tc.args...)
			if !slices.Equal(got, tc.want) || dir != noFiles {
				t.Fatalf("completions %q %s, want %q %s", got, dir, tc.want, noFiles)
			}
		})
	}

	t.Run("an invalid inventory completes nothing", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(bad, []byte("apiVersion: [\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, dir := complete(t, none, "bmc", "off", "-f", bad, "--rack", ""); got != nil || dir != noFiles {
			t.Fatalf("completions %q %s", got, dir)
		}
	})

	t.Run("descriptions", func(t *testing.T) {
		out, _, _ := runCLI(t, "__complete", "bmc", "off", "-f", labInv, "--server", "dc1-r01-s01")
		if !strings.HasPrefix(out, "dc1-r01-s01\track dc1-r01, etcd, control-plane\n") {
			t.Fatalf("server description: %q", out)
		}
		out, _, _ = runCLI(t, "__complete", "bmc", "off", "-f", labInv, "--center", "dc3")
		if !strings.HasPrefix(out, "dc3\tsite-b, remote-dr\n") {
			t.Fatalf("center description: %q", out)
		}
	})
}
