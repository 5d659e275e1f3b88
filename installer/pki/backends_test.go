package pki

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// forEachBackend runs f on an empty store of every backend: a directory
// (DirFiles) and memory (MemFiles).
func forEachBackend(t *testing.T, f func(t *testing.T, s *Store)) {
	t.Helper()
	t.Run("dir", func(t *testing.T) { f(t, &Store{Files: DirFiles{Path: t.TempDir()}}) })
	t.Run("mem", func(t *testing.T) { f(t, NewMemStore()) })
}

// readStored returns a file of the store.
func readStored(t *testing.T, s *Store, name string) []byte {
	t.Helper()
	b, err := s.files().ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeStored replaces a file of the store (0600).
func writeStored(t *testing.T, s *Store, name string, b []byte) {
	t.Helper()
	if err := s.files().WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// removeStored deletes a file of the store, as a damaged or partly
// restored state would lack it.
func removeStored(t *testing.T, s *Store, name string) {
	t.Helper()
	switch f := s.files().(type) {
	case DirFiles:
		if err := os.Remove(filepath.Join(f.Path, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	case *MemFiles:
		if _, err := f.Stat(name); err != nil {
			t.Fatal(err)
		}
		f.Remove(name)
	default:
		t.Fatalf("no way to remove a file from %T", f)
	}
}

// stored reports whether the store holds name.
func stored(t *testing.T, s *Store, name string) bool {
	t.Helper()
	ok, err := s.exists(name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// modeOf is a stored file's permissions.
func modeOf(t *testing.T, s *Store, name string) fs.FileMode {
	t.Helper()
	m, err := s.files().Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFilesBackends checks both backends the same way: missing files
// wrap fs.ErrNotExist, writes replace whole files with their mode, List is
// sorted and complete, names that leave the store are refused.
func TestFilesBackends(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		f := s.files()
		if _, err := f.ReadFile("etcd/ca.crt"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("ReadFile of a missing file: %v, want fs.ErrNotExist", err)
		}
		if _, err := f.Stat("etcd/ca.crt"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat of a missing file: %v, want fs.ErrNotExist", err)
		}
		if names, err := f.List(); err != nil || len(names) != 0 {
			t.Fatalf("List of an empty store: %v, %v", names, err)
		}
		for name, mode := range map[string]fs.FileMode{"etcd/ca.key": 0o600, "etcd/ca.crt": 0o644, "kubernetes/sa.pub": 0o644} {
			if err := f.WriteFile(name, []byte("first "+name), mode); err != nil {
				t.Fatal(err)
			}
			if err := f.WriteFile(name, []byte(name), mode); err != nil {
				t.Fatal(err)
			}
			if got := readStored(t, s, name); !bytes.Equal(got, []byte(name)) {
				t.Errorf("%s holds %q after a rewrite", name, got)
			}
			if got := modeOf(t, s, name); got != mode {
				t.Errorf("%s mode %v, want %v", name, got, mode)
			}
		}
		names, err := f.List()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"etcd/ca.crt", "etcd/ca.key", "kubernetes/sa.pub"}; !slices.Equal(names, want) {
			t.Fatalf("List = %v, want %v", names, want)
		}
		for _, bad := range []string{"", "/etc/passwd", "../x", "etcd/../../x", "etcd//ca.crt"} {
			if err := f.WriteFile(bad, []byte("x"), 0o600); !errors.Is(err, errBadName) {
				t.Errorf("WriteFile(%q) = %v, want a refusal", bad, err)
			}
		}
	})
}

func TestFileMode(t *testing.T) {
	for name, want := range map[string]fs.FileMode{
		"etcd/ca.crt": 0o644, "kubernetes/sa.pub": 0o644, "etcd/ca.key": 0o600, "kubernetes/sa.key": 0o600, "other": 0o600,
	} {
		if got := FileMode(name); got != want {
			t.Errorf("FileMode(%s) = %v, want %v", name, got, want)
		}
	}
}

// TestMemFilesSnapshot: a memory store is built from a snapshot and gives
// back what was written, copies both ways.
func TestMemFilesSnapshot(t *testing.T) {
	in := map[string][]byte{"etcd/ca.crt": []byte("C"), "etcd/ca.key": []byte("K")}
	m, err := NewMemFiles(in)
	if err != nil {
		t.Fatal(err)
	}
	in["etcd/ca.crt"][0] = 'X'
	if mode, err := m.Stat("etcd/ca.key"); err != nil || mode != 0o600 {
		t.Fatalf("ca.key from a snapshot: mode %v, %v", mode, err)
	}
	if err := m.WriteFile("kubernetes/ca.crt", []byte("KC"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := m.Snapshot()
	if len(out) != 3 || string(out["etcd/ca.crt"]) != "C" || string(out["kubernetes/ca.crt"]) != "KC" {
		t.Fatalf("Snapshot = %q", out)
	}
	out["etcd/ca.key"][0] = 'X'
	if b, _ := m.ReadFile("etcd/ca.key"); string(b) != "K" {
		t.Fatal("changing a snapshot changed the store")
	}
	if _, err := NewMemFiles(map[string][]byte{"../x": nil}); !errors.Is(err, errBadName) {
		t.Fatalf("NewMemFiles with ../x: %v", err)
	}
}
