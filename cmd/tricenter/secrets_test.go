package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
)

const secretsInventory = "../../examples/inventory/lab.yaml"

// TestRotateKeyFlags: values no rotation can run with are refused before
// the inventory or the state is read.
func TestRotateKeyFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--reload-timeout", "0s"}, "--reload-timeout 0s: use a positive duration"},
		{[]string{"--reload-timeout", "soon"}, `invalid argument "soon"`},
		{[]string{"-o", "yaml"}, "yaml"},
		{[]string{"extra"}, `unknown command "extra"`},
	} {
		stateDir := t.TempDir()
		args := append([]string{"secrets", "rotate-key", "-f", secretsInventory, "--state-dir", stateDir, "--dry-run"}, tc.args...)
		out, errs, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error containing %q (stdout %q)", tc.args, code, errs, tc.want, out)
		}
		if _, err := os.Stat(filepath.Join(stateDir, "lab")); err == nil {
			t.Errorf("%v: the state directory was created for a refused command", tc.args)
		}
	}
}

// TestRotateKeyRefusesWithoutATerminal: without --yes and without a
// terminal to answer on, rotate-key stops before it reads anything.
func TestRotateKeyRefusesWithoutATerminal(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	stateDir := t.TempDir()
	_, errs, code := runCLIIn(t, devnull, "secrets", "rotate-key", "-f", secretsInventory, "--state-dir", stateDir)
	if code != 1 || !strings.Contains(errs, "stdin is not a terminal, so nobody can confirm the key rotation: pass --yes to go ahead without confirmation (--dry-run shows the stages)") {
		t.Errorf("no terminal: exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "lab")); err == nil {
		t.Error("the refused rotation opened the state directory")
	}
	inv, err := os.ReadFile(secretsInventory)
	if err != nil {
		t.Fatal(err)
	}
	_, errs, code = runCLIIn(t, strings.NewReader(string(inv)), "secrets", "rotate-key", "-f", "-", "--state-dir", stateDir)
	if code != 1 || !strings.Contains(errs, "stdin held the inventory (-f -) and there is no terminal to confirm on: pass --yes") {
		t.Errorf("-f - without a terminal: exit %d, stderr %q", code, errs)
	}
}

// TestRotateKeyNeedsAKeyring: a state without the keys an apply creates is
// refused with what to do, before any server is reached, for a dry run and
// a run alike.
func TestRotateKeyNeedsAKeyring(t *testing.T) {
	for _, extra := range [][]string{{"--dry-run"}, {"--yes"}, {"--dry-run", "-o", "json"}} {
		stateDir := t.TempDir()
		start := time.Now()
		out, errs, code := runCLI(t, append([]string{"secrets", "rotate-key", "-f", secretsInventory, "--state-dir", stateDir}, extra...)...)
		want := "planning the key rotation: the state holds no Secrets encryption keys (" +
			filepath.Join(stateDir, "lab", "pki", encryption.StoreDir, encryption.KeyringFile) + "): run tricenter apply first"
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("%v on a state without keys: exit %d, stderr %q, want %q", extra, code, errs, want)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%v: the refusal took %v (it reached for the servers?)", extra, took)
		}
		if extra[len(extra)-1] == "json" && !strings.Contains(out, `"keyring": "`+filepath.Join(stateDir, "lab")) {
			t.Errorf("-o json: stdout %q", out)
		}
	}
}

// TestRotateKeyHelpNamesItsFlags: the flags the documentation promises are
// there, with their defaults, under tricenter secrets.
func TestRotateKeyHelpNamesItsFlags(t *testing.T) {
	out, errs, code := runCLI(t, "secrets", "rotate-key", "--help")
	if code != 0 {
		t.Fatalf("secrets rotate-key --help: exit %d: %s", code, errs)
	}
	for _, want := range []string{"--dry-run", "-y, --yes", "--reload-timeout duration", "(default 5m0s)", "--lock-timeout",
		"--state-dir", "--bastion", "-o, --output", "1 add", "2 promote", "3 rewrite", "4 drop", "nothing restarts"} {
		if !strings.Contains(out, want) {
			t.Errorf("secrets rotate-key --help lacks %q", want)
		}
	}
	out, _, _ = runCLI(t, "--help")
	if !strings.Contains(out, "secrets     Secrets encrypted in etcd: rotate the encryption key") {
		t.Errorf("tricenter --help does not list secrets:\n%s", out)
	}
}

// TestRotateKeyPrinting: the dry run shows the keys, the servers and every
// stage with its configuration; a stopped run says where it resumes; a
// finished one what it dropped. No secret is among what is printed.
func TestRotateKeyPrinting(t *testing.T) {
	stages, err := encryption.PlanRotation(&encryption.Keyring{Keys: []encryption.Key{
		{Name: "key-1", Provider: encryption.Secretbox, Secret: "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="}}}, []string{encryption.Secrets})
	if err != nil {
		t.Fatal(err)
	}
	plan := &installer.RotateKeyResult{DryRun: true, Keyring: "/state/lab/pki/encryption/keys.json", Keys: []string{"key-1"}, Key: "key-2",
		Stages: stages, Resources: []string{encryption.Secrets}, Objects: map[string]int{encryption.Secrets: 42},
		Servers: []installer.ServerKeys{
			{Server: "dc1-r01-s01", Keys: []string{"key-1"}, Loaded: "yes", Changes: true},
			{Server: "dc3-r01-s01", Keys: []string{"key-1"}, Loaded: "unknown: connection refused", Changes: true},
		}}
	var b strings.Builder
	printRotateKeyPlan(&b, plan)
	got := b.String()
	for _, want := range []string{
		"Secrets encryption keys in /state/lab/pki/encryption/keys.json: key-1\n",
		"A new rotation: key-2 is generated and replaces key-1\n",
		"SERVER       KEYS             IN USE                       NEXT STAGE CHANGES IT\n",
		"dc1-r01-s01  key-1, identity  yes                          yes\n",
		"To rewrite: 42 secrets\n",
		"1      add      next     key-1, key-2, identity  add key-2 as the second key on every control-plane server",
		"2      promote  pending  key-2, key-1, identity  make key-2 the first key",
		"3      rewrite  pending  -                       rewrite every object of secrets through the API",
		"4      drop     pending  key-2, identity         drop key-1 from every control-plane server",
		"Runs from stage 1 (add); the stage is recorded in the state",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the plan lacks %q:\n%s", want, got)
		}
	}

	// Stopped at the rewrite.
	stages, _ = encryption.PlanRotation(&encryption.Keyring{Keys: []encryption.Key{
		{Name: "key-2", Provider: encryption.Secretbox, Secret: "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI="},
		{Name: "key-1", Provider: encryption.Secretbox, Secret: "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE="}},
		Rotation: &encryption.Rotation{Key: "key-2", Stage: encryption.StageRewrite}}, []string{encryption.Secrets})
	stopped := &installer.RotateKeyResult{Key: "key-2", InProgress: true, Stages: stages, Lock: "cluster lease", Took: 95 * time.Second,
		Rotation: &encryption.RotateResult{From: []string{"key-1"}, Key: "key-2", Ran: []encryption.Stage{encryption.StageAdd, encryption.StagePromote},
			Stopped: encryption.StageRewrite}}
	b.Reset()
	printKeyRotated(&b, stopped)
	for _, want := range []string{"ran stages 1 (add), 2 (promote) in 1m35s\n", "locks held: cluster lease\n",
		"the rotation to key-2 stopped at stage 3 (rewrite): every server still reads every Secret; fix the cause, then run the same command again to resume\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("stopped run lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	plan.InProgress, plan.Started, plan.Stages = true, time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), stages
	printRotateKeyPlan(&b, plan)
	if !strings.Contains(b.String(), "Rotation to key-2 in progress since ") || !strings.Contains(b.String(), ": resumes at stage 3 (rewrite)\n") ||
		!strings.Contains(b.String(), "1      add      done") {
		t.Errorf("plan of a rotation in progress:\n%s", b.String())
	}

	// Done.
	done := &installer.RotateKeyResult{Key: "key-2", Took: 3 * time.Minute,
		Rotation: &encryption.RotateResult{From: []string{"key-2", "key-1"}, To: []string{"key-2"}, Key: "key-2", Resumed: true,
			Ran: []encryption.Stage{encryption.StageRewrite, encryption.StageDrop}, Rewrite: encryption.RewriteReport{Rewritten: 42, Checked: 42}}}
	b.Reset()
	printKeyRotated(&b, done)
	for _, want := range []string{"ran stages 3 (rewrite), 4 (drop) in 3m0s\n", "42 objects rewritten through the API, 42 checked in etcd\n",
		"rotated: Secrets are encrypted with key-2 on every control-plane server; key-1 dropped from the servers and the state\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("finished run lacks %q:\n%s", want, b.String())
		}
	}
	for _, s := range []string{"MTExMTEx", "MjIyMjIy"} {
		if strings.Contains(got+b.String(), s) {
			t.Errorf("a secret is printed")
		}
	}
}
