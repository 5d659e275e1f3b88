package backup

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

// testMeta is a record of a snapshot taken at t from member, sealed for
// a fresh key.
func testMeta(t testing.TB, at time.Time, member string) Meta {
	t.Helper()
	id, err := SnapshotID("lab", at, member)
	if err != nil {
		t.Fatal(err)
	}
	return Meta{ID: id, Format: Format, Cluster: "lab", TakenAt: at, Member: member, MemberCenter: "dc3",
		StoredOn: "dc1-r01-s01", StoredCenter: "dc1", Revision: 42, Keys: 7, EtcdVersion: "3.6.16",
		Recipient: EncodeRecipient(newIdentity(t).PublicKey())}
}

// store writes m with a sealed "hello".
func store(t testing.TB, d Dir, m Meta) Meta {
	t.Helper()
	to, err := ParseRecipient(m.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Write(m, func(w io.Writer) (int64, error) {
		return Seal(w, strings.NewReader("hello"), to)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func ids(ms []Meta) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func dirNames(t testing.TB, d Dir) []string {
	t.Helper()
	ents, err := os.ReadDir(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != lockFile {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestSnapshotID(t *testing.T) {
	id, err := SnapshotID("lab", time.Date(2026, 3, 1, 2, 3, 4, 5, time.FixedZone("x", 3600)), "dc3-r01-s01")
	if err != nil {
		t.Fatal(err)
	}
	if id != "lab-20260301T010304Z-dc3-r01-s01" {
		t.Fatalf("id %s", id)
	}
	for _, bad := range []struct{ cluster, member, want string }{
		{"lab", "dc3/x", "member name"},
		{"la b", "m", "cluster name"},
		{"", "m", "cluster name: empty"},
		{"lab", "..", "starts with"},
		{"lab", "-m", "starts with"},
		{"lab", "m\n", "member name"},
		{"lab", strings.Repeat("m", 129), "at most 128"},
	} {
		if _, err := SnapshotID(bad.cluster, t0, bad.member); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SnapshotID(%q, %q): %v, want %q", bad.cluster, bad.member, err, bad.want)
		}
	}
}

func TestWriteListNewestFirst(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "snapshots")}
	if ms, err := d.List(); err != nil || len(ms) != 0 {
		t.Fatalf("a missing directory lists %v, %v", ms, err)
	}
	var want []string
	for _, c := range []struct {
		at     time.Duration
		member string
	}{{time.Hour, "dc3-a"}, {0, "dc3-a"}, {3 * time.Hour, "dc2-b"}, {3 * time.Hour, "dc3-a"}, {2 * time.Hour, "dc2-b"}} {
		m := store(t, d, testMeta(t, t0.Add(c.at), c.member))
		want = append(want, m.ID)
		if m.SealedBytes != int64(sealedSize(5)) || len(m.SHA256) != 64 || m.PlainBytes != 5 {
			t.Errorf("Write recorded %d bytes (%d plain), sha256 %q", m.SealedBytes, m.PlainBytes, m.SHA256)
		}
	}
	got, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := []string{want[3], want[2], want[4], want[0], want[1]} // 3h dc3-a > 3h dc2-b by ID
	if !slices.Equal(ids(got), wantOrder) {
		t.Fatalf("List:\n%s\nwant\n%s", strings.Join(ids(got), "\n"), strings.Join(wantOrder, "\n"))
	}
	for _, m := range got {
		if err := d.Check(m); err != nil {
			t.Error(err)
		}
	}
}

func TestWritePermissions(t *testing.T) {
	parent := t.TempDir()
	d := Dir{Path: filepath.Join(parent, "snapshots")}
	// An existing directory open to others is closed.
	if err := os.Mkdir(d.Path, 0o755); err != nil {
		t.Fatal(err)
	}
	m := store(t, d, testMeta(t, t0, "m"))
	st, err := os.Stat(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", st.Mode().Perm())
	}
	for _, p := range []string{d.SealedPath(m.ID), d.MetaPath(m.ID)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", filepath.Base(p), st.Mode().Perm())
		}
	}
	if names := dirNames(t, d); len(names) != 2 {
		t.Errorf("the directory holds %v, want the two files", names)
	}
}

func TestWriteRefusesAndCleansUp(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	m := store(t, d, testMeta(t, t0, "m"))
	if _, err := d.Write(m, func(io.Writer) (int64, error) { return 0, nil }); err == nil || !strings.Contains(err.Error(), "already stored") {
		t.Fatalf("writing the same ID again: %v", err)
	}
	// A failing writer leaves nothing behind, not even its temporary file.
	boom := errors.New("stream broke")
	m2 := testMeta(t, t0.Add(time.Minute), "m")
	_, err := d.Write(m2, func(w io.Writer) (int64, error) {
		_, _ = w.Write([]byte("partial"))
		return 3, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write: %v, want the writer's error", err)
	}
	if names := dirNames(t, d); !slices.Equal(names, []string{m.ID + MetaExt, m.ID + SealedExt}) {
		t.Fatalf("after a failed write the directory holds %v", names)
	}
	// A record that would not validate is refused before anything is written.
	bad := testMeta(t, t0, "m")
	bad.ID = "lab-other"
	if _, err := d.Write(bad, func(io.Writer) (int64, error) { t.Fatal("wrote"); return 0, nil }); err == nil || !strings.Contains(err.Error(), "id") {
		t.Fatalf("Write with a wrong ID: %v", err)
	}
}

func TestListIgnoresLeftoversAndRejectsBadRecords(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	m := store(t, d, testMeta(t, t0, "m"))
	// A Take killed between the sealed file and its record.
	leftover := testMeta(t, t0.Add(time.Hour), "m").ID + SealedExt
	if err := os.WriteFile(filepath.Join(d.Path, leftover), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := d.List()
	if err != nil || !slices.Equal(ids(got), []string{m.ID}) {
		t.Fatalf("List: %v, %v; want only %s", ids(got), err, m.ID)
	}

	for _, c := range []struct{ name, body, want string }{
		{"lab-20260301T030000Z-x.json", "{not json", "invalid character"},
		{"lab-20260301T030000Z-x.json", `{"id":"lab-20260301T030000Z-x","unknown":1}`, `unknown field "unknown"`},
		{"renamed.json", "", "its id is"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if body == "" {
				b, err := os.ReadFile(d.MetaPath(m.ID))
				if err != nil {
					t.Fatal(err)
				}
				body = string(b)
			}
			p := filepath.Join(d.Path, c.name)
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.Remove(p)
			_, err := d.List()
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("List: %v, want an error naming %s and %q", err, p, c.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	m := store(t, d, testMeta(t, t0, "m"))
	if err := d.Check(m); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(d.SealedPath(m.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"changed byte", func() []byte { b := bytes.Clone(orig); b[len(b)/2] ^= 0x80; return b }(), "has sha256"},
		{"truncated", orig[:len(orig)-1], "has 72 bytes, the record says 73"},
		{"missing", nil, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := d.SealedPath(m.ID)
			if c.data == nil {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(p, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := d.Check(m)
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "sealed file differs from its record: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check: %v, want ErrMismatch with %q", err, c.want)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	var all []string
	for i := range 5 {
		all = append(all, store(t, d, testMeta(t, t0.Add(time.Duration(i)*time.Hour), "m")).ID)
	}
	if _, err := d.Prune(0); err == nil || !strings.Contains(err.Error(), "keep at least 1") {
		t.Fatalf("Prune(0): %v", err)
	}
	// Leftovers: a sealed file without its record, a temporary file of a
	// killed Take (stale) and one being written now (fresh).
	leftover := testMeta(t, t0.Add(-time.Hour), "m").ID + SealedExt
	stale, fresh := tempPrefix+"a.sealed-1", tempPrefix+"b.sealed-2"
	for _, n := range []string{leftover, stale, fresh} {
		if err := os.WriteFile(filepath.Join(d.Path, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(d.Path, stale), old, old); err != nil {
		t.Fatal(err)
	}

	removed, err := d.Prune(10)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{stale, leftover}; !slices.Equal(removed, want) {
		t.Fatalf("Prune(10) removed %v, want %v", removed, want)
	}

	removed, err = d.Prune(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 6 {
		t.Fatalf("Prune(2) removed %v, want the 3 oldest snapshots' 6 files", removed)
	}
	got, err := d.List()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{all[4], all[3]}; !slices.Equal(ids(got), want) {
		t.Fatalf("after Prune(2): %v, want %v", ids(got), want)
	}
	want := []string{fresh, all[3] + MetaExt, all[3] + SealedExt, all[4] + MetaExt, all[4] + SealedExt}
	if names := dirNames(t, d); !slices.Equal(names, want) {
		t.Fatalf("after Prune(2) the directory holds %v, want %v", names, want)
	}
	if removed, err := d.Prune(2); err != nil || len(removed) != 0 {
		t.Fatalf("pruning again: %v, %v", removed, err)
	}
}

func TestPruneRefusesBadRecord(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	store(t, d, testMeta(t, t0, "m"))
	store(t, d, testMeta(t, t0.Add(time.Hour), "m"))
	if err := os.WriteFile(filepath.Join(d.Path, "junk.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not knowing what is what, it removes nothing.
	if removed, err := d.Prune(1); err == nil || len(removed) != 0 {
		t.Fatalf("Prune with an unreadable record: removed %v, %v", removed, err)
	}
}

func TestDirBusy(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	unlock, err := d.lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Prune(1); !errors.Is(err, ErrBusy) {
		t.Errorf("Prune while locked: %v, want ErrBusy", err)
	}
	if _, err := d.Write(testMeta(t, t0, "m"), func(io.Writer) (int64, error) { return 0, nil }); !errors.Is(err, ErrBusy) {
		t.Errorf("Write while locked: %v, want ErrBusy", err)
	}
	unlock()
	if _, err := d.Prune(1); err != nil {
		t.Errorf("Prune after unlock: %v", err)
	}
}

func FuzzMetaRecord(f *testing.F) {
	id, err := NewIdentity()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"id":"lab-20260301T020000Z-m","format":"tricenter-sealed-v1","cluster":"lab","takenAt":"2026-03-01T02:00:00Z","member":"m","memberCenter":"dc3","storedOn":"s","storedCenter":"dc1","revision":1,"keys":0,"etcdVersion":"3.6.16","plainBytes":0,"sealedBytes":68,"sha256":"` + strings.Repeat("ab", 32) + `","recipient":"` + EncodeRecipient(id.PublicKey()) + `"}`)
	f.Fuzz(func(t *testing.T, body string) {
		d := Dir{Path: t.TempDir()}
		if err := os.WriteFile(filepath.Join(d.Path, "lab-20260301T020000Z-m.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		ms, err := d.List()
		if err == nil && len(ms) == 1 && ms[0].Validate() != nil {
			t.Fatal("List returned a record that does not validate")
		}
	})
}

func TestOpenRecorded(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	id := newIdentity(t)
	m := testMeta(t, t0, "m")
	m.Recipient = EncodeRecipient(id.PublicKey())
	m = store(t, d, m)
	m2 := testMeta(t, t0.Add(time.Hour), "m")
	m2.Recipient = m.Recipient
	m2 = store(t, d, m2)
	sealed, err := os.ReadFile(d.SealedPath(m.ID))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if n, err := OpenRecorded(&out, bytes.NewReader(sealed), m, id); err != nil || n != 5 || out.String() != "hello" {
		t.Fatalf("OpenRecorded: %d, %v, %q", n, err, out.String())
	}
	// Another identity: refused from the record, before reading.
	other := newIdentity(t)
	if _, err := OpenRecorded(io.Discard, bytes.NewReader(sealed), m, other); !errors.Is(err, ErrWrongKey) ||
		!strings.Contains(err.Error(), "its record says it is sealed for "+m.Recipient) {
		t.Fatalf("another identity: %v", err)
	}
	// Another snapshot's file, sealed for the same key, in its place: it
	// opens, but is not the recorded file.
	swapped, err := os.ReadFile(d.SealedPath(m2.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRecorded(io.Discard, bytes.NewReader(swapped), m, id); !errors.Is(err, ErrMismatch) {
		t.Fatalf("a swapped file: %v, want ErrMismatch", err)
	}
	// A changed byte fails in Open.
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	if _, err := OpenRecorded(io.Discard, bytes.NewReader(bad), m, id); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("a changed byte in the only chunk: %v", err)
	}
}
