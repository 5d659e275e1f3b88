package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func issuedRecord(serial, subject string, groups ...string) IssuedCert {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return IssuedCert{Serial: serial, Subject: subject, Groups: groups, NotBefore: at.Add(-time.Hour), NotAfter: at.Add(8 * time.Hour),
		SHA256:      strings.Repeat("ab", 32),
		RequestedBy: Requester{User: "ops", SudoUser: "alice", Host: "jump1", PID: 4242, Tool: "tricenter", Command: "kubeconfig"},
		IssuedAt:    at}
}

// TestDirIssuedLog: two appends read back in order, one JSON object per
// line, 0600; a log that lost its last newline still takes an append; a
// record without serial, subject or expiry is refused.
func TestDirIssuedLog(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := d.Issued(); err != nil || recs != nil {
		t.Fatalf("empty state: %v, %v", recs, err)
	}
	a, b := issuedRecord("0A", "alice", "platform"), issuedRecord("0B", "bob")
	for _, r := range []IssuedCert{a, b} {
		if err := d.AppendIssued(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.Issued()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []IssuedCert{a, b}) {
		t.Fatalf("read back %+v, want %+v", got, []IssuedCert{a, b})
	}
	raw, err := os.ReadFile(d.IssuedPath())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"serial":"0A","subject":"alice","groups":["platform"]`) ||
		!strings.HasPrefix(lines[1], `{"serial":"0B","subject":"bob","notBefore"`) {
		t.Fatalf("log is not one record per line, in order:\n%s", raw)
	}
	if fi, err := os.Stat(d.IssuedPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// A hand-edited log without its last newline.
	if err := os.WriteFile(d.IssuedPath(), raw[:len(raw)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	c := issuedRecord("0C", "carol")
	if err := d.AppendIssued(c); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Issued(); err != nil || !reflect.DeepEqual(got, []IssuedCert{a, b, c}) {
		t.Fatalf("after an append to a log without its last newline: %+v, %v", got, err)
	}

	for _, bad := range []IssuedCert{{Subject: "x", NotAfter: a.NotAfter}, {Serial: "1", NotAfter: a.NotAfter}, {Serial: "1", Subject: "x"}} {
		if err := d.AppendIssued(bad); err == nil {
			t.Errorf("record %+v accepted", bad)
		}
	}
	if got, _ := d.Issued(); len(got) != 3 {
		t.Fatalf("refused records changed the log: %d records", len(got))
	}
}

// TestDirIssuedLogFailedWrite: a write that fails after writing part of
// its temporary file (a full disk, a kill before the rename) leaves the
// log as it was; the leftover is neither read as the log nor snapshotted,
// and the next append keeps every record.
func TestDirIssuedLogFailedWrite(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	a := issuedRecord("0A", "alice")
	if err := d.AppendIssued(a); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(d.IssuedPath())
	if err != nil {
		t.Fatal(err)
	}
	errDiskFull := errors.New("no space left on device (fake)")
	var leftover string
	failing := func(path string, b []byte, _ os.FileMode) error {
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
		if err != nil {
			return err
		}
		leftover = f.Name()
		_, _ = f.Write(b[:len(b)/2]) // half of the new log, then the failure
		f.Close()
		return errDiskFull
	}
	b := issuedRecord("0B", "bob")
	if err := d.appendIssued(b, failing); !errors.Is(err, errDiskFull) {
		t.Fatalf("failed write returned %v, want the write's error", err)
	}
	after, err := os.ReadFile(d.IssuedPath())
	if err != nil || string(after) != string(before) {
		t.Fatalf("a failed write changed the log:\n%s\nwant\n%s (%v)", after, before, err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Fatalf("the fake write left no temporary file: %v", err)
	}
	if got, err := d.Issued(); err != nil || !reflect.DeepEqual(got, []IssuedCert{a}) {
		t.Fatalf("after a failed write: %+v, %v", got, err)
	}
	snap, err := Snapshot(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if snap[IssuedFile] != string(before) || len(snap) != 1 {
		t.Fatalf("snapshot after a failed write: %v", snap)
	}
	if err := d.AppendIssued(b); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Issued(); err != nil || !reflect.DeepEqual(got, []IssuedCert{a, b}) {
		t.Fatalf("append after a failed write: %+v, %v", got, err)
	}
}

// TestDirIssuedLogConcurrent: appends of concurrent writers (as two CLI
// processes: each opens the directory for its lock) lose no record.
func TestDirIssuedLogConcurrent(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- d.AppendIssued(issuedRecord(strings.ToUpper(string(rune('a'+i))), "u"))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.Issued()
	if err != nil || len(got) != n {
		t.Fatalf("%d concurrent appends left %d records (%v)", n, len(got), err)
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.Serial] = true
	}
	if len(seen) != n {
		t.Fatalf("records lost or doubled: %v", seen)
	}
}

// TestIssuedLogCorruptLine: a line that is not a record is reported with
// its number; the records before it are returned.
func TestIssuedLogCorruptLine(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.AppendIssued(issuedRecord("0A", "alice")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(d.IssuedPath(), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("{not json\n")
	f.Close()
	got, err := d.Issued()
	if err == nil || !strings.Contains(err.Error(), IssuedFile+" line 2") || len(got) != 1 {
		t.Fatalf("corrupt line: %d records, %v", len(got), err)
	}
}

// TestMemIssuedLog: Mem keeps the log as Dir writes it: its snapshot
// restored into a directory reads the same records, and a directory's
// snapshot loaded into Mem takes further appends.
func TestMemIssuedLog(t *testing.T) {
	m, err := NewMem(map[string]string{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := m.Issued(); err != nil || recs != nil {
		t.Fatalf("empty state: %v, %v", recs, err)
	}
	a, b := issuedRecord("0A", "alice", "platform"), issuedRecord("0B", "bob")
	for _, r := range []IssuedCert{a, b} {
		if err := m.AppendIssued(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.AppendIssued(IssuedCert{Subject: "x"}); err == nil {
		t.Fatal("a record without a serial was accepted")
	}
	if got, err := m.Issued(); err != nil || !reflect.DeepEqual(got, []IssuedCert{a, b}) {
		t.Fatalf("Mem read back %+v, %v", got, err)
	}

	dir := filepath.Join(t.TempDir(), "lab")
	if err := Restore(dir, m.Snapshot()); err != nil {
		t.Fatal(err)
	}
	d := &Dir{Path: dir}
	if got, err := d.Issued(); err != nil || !reflect.DeepEqual(got, []IssuedCert{a, b}) {
		t.Fatalf("restored directory read back %+v, %v", got, err)
	}
	if fi, err := os.Stat(d.IssuedPath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored log mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	c := issuedRecord("0C", "carol")
	if err := d.AppendIssued(c); err != nil {
		t.Fatal(err)
	}
	snap, err := Snapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := NewMem(snap, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m2.Issued(); err != nil || !reflect.DeepEqual(got, []IssuedCert{a, b, c}) {
		t.Fatalf("directory's snapshot in Mem: %+v, %v", got, err)
	}
}
