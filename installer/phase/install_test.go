package phase_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestInstallFilesRecordAndQuickCheck installs a binary, a configuration
// and a key on a real sshd host as a non-root login (every root command
// through sudo) with InstallFiles and its record, and checks the record's
// whole life: written after the upload with the file's size and mtime on
// the host; trusted while they match (a binary changed in place with its
// size and mtime kept is not even hashed: that is the quick check, and the
// proof that a re-run does not hash); hashed again when the mtime moves; a
// missing or unparsable record only costs one hashing and is rewritten;
// lines of other files are kept. A dry run changes nothing, a re-run
// changes nothing, and a mode that drifted is fixed.
func TestInstallFilesRecordAndQuickCheck(t *testing.T) {
	testenv.Need(t, sshtest.Available())
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t, 2*time.Minute)
	host := l.Hosts[0]
	c := l.Cluster(sshtest.ClusterOptions{User: "deploy", PinHostKeys: true})
	artifact, data := writeArtifact(t, 2<<20)
	const (
		bin    = "/srv/bin/agent"
		conf   = "/srv/etc/agent/agent.conf"
		key    = "/srv/etc/agent/agent.key"
		record = "/srv/etc/agent/binaries.sha256"
	)
	keyPEM := []byte("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
	files := func(confData string) []phase.File {
		return []phase.File{
			{Path: bin, Local: artifact, Mode: 0o755, SHA256: fsutil.SHA256Hex(data)},
			{Path: conf, Data: []byte(confData)},
			{Path: key, Data: keyPEM, Mode: 0o600, Secret: true},
		}
	}
	// install runs InstallFiles on a fresh manager and returns what it
	// said and the change records.
	install := func(dry bool, fs []phase.File) (phase.Installed, []string) {
		t.Helper()
		var got phase.Installed
		m := &phase.Manager{Cluster: c, DryRun: dry}
		defer m.Close()
		err := m.Run(ctx, &phase.HostPhase{Name: "Install the agent", Apply: func(ctx context.Context, h *phase.Host) error {
			var err error
			got, err = h.InstallFiles(ctx, record, fs)
			return err
		}})
		if err != nil {
			t.Fatalf("install (dry run %v): %v", dry, err)
		}
		return got, m.Changes()[host.Name]
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(host.Path(p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	stat := func(p string) os.FileInfo {
		t.Helper()
		st, err := os.Stat(host.Path(p))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	recordLine := func() string {
		st := stat(bin)
		return fmt.Sprintf("%s %d %d %s\n", fsutil.SHA256Hex(data), st.Size(), st.ModTime().Unix(), bin)
	}
	all := []string{bin, conf, key}

	// Dry run: everything planned, nothing on the host.
	got, changes := install(true, files("port = 1\n"))
	if !slices.Equal(got.Changed, all) || len(changes) != 4 ||
		!strings.HasPrefix(changes[0], "would upload "+bin+" (2.0 MiB, sha256:") ||
		!strings.HasPrefix(changes[1], "would write "+conf) ||
		changes[2] != fmt.Sprintf("would write %s (secret content, %d bytes)", key, len(keyPEM)) ||
		!strings.HasPrefix(changes[3], "would write "+record) {
		t.Fatalf("dry run: installed %v, changes %q", got.Changed, changes)
	}
	if _, err := os.Stat(host.Path("/srv/bin")); !os.IsNotExist(err) {
		t.Fatalf("the dry run created /srv/bin (%v)", err)
	}

	// Apply: the files, their modes, and the record of the binary as found
	// on the host after the upload.
	got, changes = install(false, files("port = 1\n"))
	if !slices.Equal(got.Changed, all) || len(changes) != 4 {
		t.Fatalf("apply: installed %v, changes %q", got.Changed, changes)
	}
	if read(bin) != string(data) || read(conf) != "port = 1\n" || read(key) != string(keyPEM) {
		t.Fatal("the host's files differ from what was installed")
	}
	if stat(bin).Mode().Perm() != 0o755 || stat(key).Mode().Perm() != 0o600 || stat(conf).Mode().Perm() != 0o644 {
		t.Fatalf("modes %v %v %v", stat(bin).Mode(), stat(key).Mode(), stat(conf).Mode())
	}
	if r := read(record); r != recordLine() {
		t.Fatalf("record %q, want %q", r, recordLine())
	}

	// Re-run and dry run: nothing.
	if got, changes = install(false, files("port = 1\n")); got.Any() || len(changes) != 0 {
		t.Fatalf("re-run: installed %v, changes %q", got.Changed, changes)
	}
	if got, changes = install(true, files("port = 1\n")); got.Any() || len(changes) != 0 {
		t.Fatalf("dry run after apply: installed %v, changes %q", got.Changed, changes)
	}

	// A changed configuration: only it is written; the record stays.
	rec := read(record)
	got, changes = install(false, files("port = 2\n"))
	if !slices.Equal(got.Changed, []string{conf}) || len(changes) != 1 || !got.Has(conf) || got.Has(bin) {
		t.Fatalf("new configuration: installed %v, changes %q", got.Changed, changes)
	}
	if read(record) != rec {
		t.Fatal("the record changed with the configuration")
	}

	// The quick check: the binary changed in place with its size and mtime
	// kept is trusted from the record, not hashed.
	mtime := stat(bin).ModTime()
	tampered := bytes.Repeat([]byte{'x'}, len(data))
	if err := os.WriteFile(host.Path(bin), tampered, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(host.Path(bin), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if got, changes = install(false, files("port = 2\n")); got.Any() || len(changes) != 0 {
		t.Fatalf("size and mtime kept: installed %v, changes %q (the record was not trusted)", got.Changed, changes)
	}
	// Its mtime moves: hashed, found different, uploaded, recorded again
	// (the record is rewritten unless the upload landed in the same second
	// as the first one: then its line is the same).
	later := mtime.Add(-time.Hour)
	if err := os.Chtimes(host.Path(bin), later, later); err != nil {
		t.Fatal(err)
	}
	got, changes = install(false, files("port = 2\n"))
	if !slices.Equal(got.Changed, []string{bin}) || !strings.HasPrefix(changes[0], "upload "+bin) ||
		(len(changes) == 2) != (stat(bin).ModTime().Unix() != mtime.Unix()) || (len(changes) == 2 && !strings.HasPrefix(changes[1], "write "+record)) {
		t.Fatalf("mtime moved: installed %v, changes %q", got.Changed, changes)
	}
	if read(bin) != string(data) || read(record) != recordLine() {
		t.Fatal("the binary or its record was not restored")
	}

	// A missing record: the binary is hashed once (found identical, not
	// uploaded) and the record written again.
	if err := os.Remove(host.Path(record)); err != nil {
		t.Fatal(err)
	}
	got, changes = install(false, files("port = 2\n"))
	if got.Any() || len(changes) != 1 || !strings.HasPrefix(changes[0], "write "+record) || read(record) != recordLine() {
		t.Fatalf("no record: installed %v, changes %q, record %q", got.Changed, changes, read(record))
	}
	// An unparsable record, with a valid line of another file: the same,
	// and the other file's line is kept.
	other := strings.Repeat("c", 64) + " 5 6 /srv/bin/other\n"
	if err := os.WriteFile(host.Path(record), []byte("sha256 size mtime\n"+other), 0o644); err != nil {
		t.Fatal(err)
	}
	got, changes = install(false, files("port = 2\n"))
	if got.Any() || len(changes) != 1 || read(record) != recordLine()+other {
		t.Fatalf("unparsable record: installed %v, changes %q, record %q", got.Changed, changes, read(record))
	}
	if got, changes = install(false, files("port = 2\n")); got.Any() || len(changes) != 0 {
		t.Fatalf("after the record was repaired: installed %v, changes %q", got.Changed, changes)
	}

	// A mode that drifted is set back (content unchanged, no upload).
	if err := os.Chmod(host.Path(bin), 0o700); err != nil {
		t.Fatal(err)
	}
	got, changes = install(false, files("port = 2\n"))
	if !slices.Equal(got.Changed, []string{bin}) || len(changes) != 1 || changes[0] != "set chmod 755 "+bin {
		t.Fatalf("mode drift: installed %v, changes %q", got.Changed, changes)
	}
	if stat(bin).Mode().Perm() != 0o755 || read(record) != recordLine()+other {
		t.Fatalf("after the mode fix: mode %v, record %q", stat(bin).Mode(), read(record))
	}
}
