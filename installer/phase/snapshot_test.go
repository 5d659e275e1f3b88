package phase_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// A dry run that lists the managed directories once per host judges every
// write exactly as the per-file sessions do — same FileResult, same change
// records — for a file that matches, differs, has another mode, is
// absent, sits in an absent directory or under an absent root, and for
// what the listing cannot settle (a file over the size it hashes, a
// symbolic link, a file below a linked directory, a directory where a file
// is wanted), in far fewer sessions. An apply does not use the listing.
// Real sshd, non-root login through sudo.
func TestDryRunSnapshotJudgesLikeTheSessions(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t, 2*time.Minute)
	host := l.Hosts[0]
	c := l.Cluster(sshtest.ClusterOptions{User: "deploy", PinHostKeys: true})
	want := []byte("the content tricenter writes\n")
	big := bytes.Repeat([]byte("x"), 2<<20)
	put := func(p string, data []byte, mode fs.FileMode) {
		t.Helper()
		full := host.Path(p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	put("/srv/managed/same.conf", want, 0o644)
	put("/srv/managed/sub/differs.conf", []byte("edited by hand\n"), 0o644)
	put("/srv/managed/sub/mode.conf", want, 0o600)
	put("/srv/managed/big.bin", big, 0o644)
	put("/srv/elsewhere/target.conf", want, 0o644)
	put("/srv/elsewhere/dir/inner.conf", want, 0o644)
	if err := os.Symlink("/srv/elsewhere/target.conf", host.Path("/srv/managed/link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/srv/elsewhere/dir", host.Path("/srv/managed/linkdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(host.Path("/srv/managed/adir.conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	type write struct {
		path string
		data []byte
		mode fs.FileMode
	}
	writes := []write{
		{"/srv/managed/same.conf", want, 0o644},
		{"/srv/managed/sub/differs.conf", want, 0o644},
		{"/srv/managed/sub/mode.conf", want, 0o644},
		{"/srv/managed/absent.conf", want, 0o644},
		{"/srv/managed/nodir/absent.conf", want, 0o644},
		{"/srv/absent-root/file.conf", want, 0o644},
		{"/srv/managed/big.bin", big, 0o644},
		{"/srv/managed/link.conf", want, 0o644},
		{"/srv/managed/linkdir/inner.conf", want, 0o644},
		{"/srv/managed/same.conf", []byte("new content\n"), 0o644},
	}
	type outcome struct {
		changed []bool
		changes []string
		err     error
	}
	run := func(dry bool, dirs []string) (outcome, int64) {
		t.Helper()
		var o outcome
		m := &phase.Manager{Cluster: c, DryRun: dry, SnapshotDirs: dirs}
		defer m.Close()
		o.err = m.Run(ctx, &phase.HostPhase{Name: "write", Apply: func(ctx context.Context, h *phase.Host) error {
			for _, w := range writes {
				r, err := h.WriteFile(ctx, w.path, w.data, w.mode)
				if err != nil {
					return err
				}
				o.changed = append(o.changed, r.Changed)
			}
			// A directory where a file is wanted fails either way.
			if _, err := h.WriteFile(ctx, "/srv/managed/adir.conf", want, 0o644); err == nil {
				t.Errorf("a directory where a file is wanted: no error (snapshot %v)", dirs != nil)
			}
			return nil
		}})
		o.changes = m.Changes()[host.Name]
		return o, m.Usage()[host.Name].Sessions
	}
	dirs := []string{"/srv/managed", "/srv/absent-root"}
	each, eachSessions := run(true, nil)
	listed, listedSessions := run(true, dirs)
	if each.err != nil || listed.err != nil {
		t.Fatalf("dry runs: %v / %v", each.err, listed.err)
	}
	if !slices.Equal(each.changed, listed.changed) || !slices.Equal(each.changes, listed.changes) {
		t.Fatalf("the listing judged otherwise than the sessions:\n  sessions: %v %q\n  listing:  %v %q",
			each.changed, each.changes, listed.changed, listed.changes)
	}
	if wantChanged := []bool{false, true, true, true, true, true, false, false, false, true}; !slices.Equal(listed.changed, wantChanged) {
		t.Errorf("changed %v, want %v", listed.changed, wantChanged)
	}
	// One session lists; the large file, the link, the file below the
	// linked directory and the directory still take one each.
	if listedSessions != 5 || eachSessions != int64(len(writes))+1 {
		t.Errorf("sessions: %d with the listing, %d without; want 5 and %d", listedSessions, eachSessions, len(writes)+1)
	}
	t.Logf("%d writes judged: %d sessions one file at a time, %d with the listing", len(writes)+1, eachSessions, listedSessions)

	// An apply checks each file in the session that writes it.
	applied, appliedSessions := run(false, dirs)
	if applied.err != nil {
		t.Fatal(applied.err)
	}
	if appliedSessions < int64(len(writes)) {
		t.Errorf("the apply opened %d sessions for %d writes: it relied on a listing", appliedSessions, len(writes))
	}
	if b, err := os.ReadFile(host.Path("/srv/managed/sub/differs.conf")); err != nil || !bytes.Equal(b, want) {
		t.Errorf("the apply did not write differs.conf: %q %v", b, err)
	}
	// same.conf got the last write's content; the others are as wanted.
	again, _ := run(true, dirs)
	if slices.Contains(again.changed[1:9], true) {
		t.Errorf("after the apply the listing still sees changes: %v %q", again.changed, again.changes)
	}
}
