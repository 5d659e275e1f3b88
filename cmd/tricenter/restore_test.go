package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func runRestoreCmd(t *testing.T, stateDir string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, logFlags: cliflags.Logging{Format: "text", Level: "warn"}}
	cmd := newRestoreCmd(g, &recordingFencePower{})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(append([]string{"-f", drillInventory, "--state-dir", stateDir}, args...))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// A restore names an unknown lost center, and needs the state's etcd PKI
// before it asks any member anything.
func TestRestoreStopsEarly(t *testing.T) {
	_, err := runRestoreCmd(t, t.TempDir(), "--lost", "dc1,dc9", "--yes")
	if err == nil || !strings.Contains(err.Error(), "--lost dc9") {
		t.Errorf("restore with an unknown lost center: %v", err)
	}
	_, err = runRestoreCmd(t, t.TempDir(), "--lost", "dc1,dc2", "--yes")
	if !errors.Is(err, errNoPKI) {
		t.Errorf("restore without a state: %v", err)
	}
}

func TestPrintRestore(t *testing.T) {
	taken := time.Now().Add(-90 * time.Second).UTC().Truncate(time.Second)
	snap := installer.StoredSnapshot{Meta: backup.Meta{ID: "c-20261207T111902Z-dc1-s01", TakenAt: taken, Revision: 812, Keys: 390, PlainBytes: 1 << 20}, Check: "ok"}
	r := &installer.RestoreReport{Lost: []string{"dc1", "dc2"}, LostServers: []string{"dc1-s01", "dc2-s01"},
		Stores: []installer.SnapshotStoreStatus{{Center: "dc3", Server: "dc3-s01", Snapshots: []installer.StoredSnapshot{snap}},
			{Center: "dc3", Server: "dc3-s02", Error: "connection refused\nmore"}},
		Snapshot: &snap, From: "dc3-s01", Members: []string{"dc3-s01", "dc3-s02", "dc3-s03"}, New: []string{"dc3-s02", "dc3-s03"},
		DryRun: true}
	var b bytes.Buffer
	printRestore(&b, r)
	out := b.String()
	for _, want := range []string{"dry run: nothing was changed", "lost centers: dc1, dc2 (servers dc1-s01, dc2-s01)",
		"dc3-s02  dc3     -          not read: connection refused\n", "snapshot: c-20261207T111902Z-dc1-s01 from dc3-s01",
		"writes after " + taken.Format(time.RFC3339) + " are lost", "dc3-s01, dc3-s02 (new), dc3-s03 (new)"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
