package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
)

const (
	threeCenter = "../../examples/inventory/three-center.yaml"
	labInv      = "../../examples/inventory/lab.yaml"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInventoryFromStdin: -f - reads the inventory from stdin, for
// validate and for plan (whose JSON is the file's), and names it "stdin".
func TestInventoryFromStdin(t *testing.T) {
	inv := readFile(t, threeCenter)
	out, errs, code := runCLIIn(t, strings.NewReader(inv), "validate", "-f", "-")
	if code != 0 || out != "stdin is valid: 2 sites, 3 centers, 8 racks, 48 servers (0 warnings)\n" {
		t.Fatalf("validate -f - (exit %d): %q %q", code, out, errs)
	}
	fromFile, _, code := runCLI(t, "plan", "-f", threeCenter, "-o", "json", "--state-dir=")
	if code != 0 {
		t.Fatalf("plan -f FILE exit %d", code)
	}
	fromStdin, errs, code := runCLIIn(t, strings.NewReader(inv), "plan", "-f", "-", "-o", "json", "--state-dir=")
	if code != 0 || fromStdin != fromFile {
		t.Fatalf("plan -f - (exit %d) differs from plan -f FILE: %q", code, errs)
	}

	out, _, code = runCLIIn(t, strings.NewReader("apiVersion: tricenter.io/v1alpha1\nkind: Cluster\nspec: {sites: 3}\n"), "validate", "-f", "-", "-o", "json")
	var v validateJSON
	if code != 1 || json.Unmarshal([]byte(out), &v) != nil || v.Valid || len(v.Errors) != 1 || v.Errors[0].Path != "stdin" ||
		!strings.Contains(v.Errors[0].Message, "inventory from stdin") {
		t.Fatalf("a bad inventory on stdin (exit %d): %s", code, out)
	}
	if _, errs, code := runCLIIn(t, strings.NewReader(""), "validate", "-f", "-"); code != 1 || !strings.Contains(errs, "the document is empty") {
		t.Fatalf("empty stdin (exit %d): %q", code, errs)
	}
	if _, errs, code := runCLIIn(t, strings.NewReader(inv), "state", "restore", "-f", "-", "--from", "-"); code != 1 ||
		!strings.Contains(errs, "-f - and --from - both read stdin") {
		t.Fatalf("state restore -f - --from - (exit %d): %q", code, errs)
	}
}

// TestInventoryFromEnvironment: TRICENTER_INVENTORY names the inventory
// when -f is not given; -f wins; with neither the error says both ways.
func TestInventoryFromEnvironment(t *testing.T) {
	env := testEnv{env: map[string]string{envInventory: labInv}}
	out, errs, code := runCLIWith(t, env, nil, "validate")
	if code != 0 || !strings.HasPrefix(out, labInv+" is valid: 2 sites, 3 centers, 4 racks, 8 servers") {
		t.Fatalf("validate with %s (exit %d): %q %q", envInventory, code, out, errs)
	}
	out, _, code = runCLIWith(t, env, nil, "validate", "-f", threeCenter)
	if code != 0 || !strings.HasPrefix(out, threeCenter+" is valid: 2 sites, 3 centers, 8 racks, 48 servers") {
		t.Fatalf("-f does not win over %s (exit %d): %q", envInventory, code, out)
	}
	// The variable may name stdin too.
	env.env[envInventory] = "-"
	out, _, code = runCLIWith(t, env, strings.NewReader(readFile(t, labInv)), "validate")
	if code != 0 || !strings.HasPrefix(out, "stdin is valid") {
		t.Fatalf("%s=- (exit %d): %q", envInventory, code, out)
	}
	for _, args := range [][]string{{"validate"}, {"plan"}, {"bmc", "status"}, {"apply"}, {"validate", "-f", ""}} {
		_, errs, code := runCLI(t, args...)
		if code != 1 || !strings.Contains(errs, "no inventory: pass -f FILE (- reads it from stdin) or set TRICENTER_INVENTORY") {
			t.Errorf("%v without an inventory (exit %d): %q", args, code, errs)
		}
	}
}

// TestConfirmWithInventoryOnStdin: with -f - a confirmation cannot read
// stdin. Without a terminal it fails asking for --yes, before anything is
// touched; with one (a fake terminal here) the answer comes from it.
func TestConfirmWithInventoryOnStdin(t *testing.T) {
	inv := readFile(t, threeCenter)
	out, errs, code := runCLIIn(t, strings.NewReader(inv), "bmc", "off", "-f", "-", "--all")
	if code != 1 || !strings.Contains(errs, "bmc off: these 48 servers will be powered off hard") ||
		!strings.HasSuffix(errs, "Error: stdin held the inventory (-f -) and there is no terminal to confirm on: pass --yes to go ahead without confirmation\n") ||
		strings.Contains(errs, "[y/N]") {
		t.Fatalf("bmc off -f - without a terminal (exit %d): %q %q", code, out, errs)
	}

	var asked bool
	fakeTTY := testEnv{tty: func() (io.Reader, error) { asked = true; return strings.NewReader("no\n"), nil }}
	_, errs, code = runCLIWith(t, fakeTTY, strings.NewReader(inv), "bmc", "off", "-f", "-", "--all")
	if !asked || code != 1 || !strings.Contains(errs, "Power off these 48 servers? [y/N]") ||
		!strings.Contains(errs, "not confirmed: no server was touched") {
		t.Fatalf("bmc off -f - answered on the terminal (asked %v, exit %d): %q", asked, code, errs)
	}

	// A file inventory leaves stdin to the answer, as before.
	_, errs, code = runCLIIn(t, strings.NewReader("n\n"), "bmc", "off", "-f", threeCenter, "--all")
	if code != 1 || !strings.Contains(errs, "not confirmed: no server was touched") {
		t.Fatalf("bmc off -f FILE answered on stdin (exit %d): %q", code, errs)
	}
}
