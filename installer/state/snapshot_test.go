package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestSnapshotRestoreRoundTrip snapshots a state directory the CLI wrote
// (real PKI and prior.json), restores it elsewhere and checks contents,
// modes and that the cache directories stay out.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PKI().EnsureEtcd([]pki.EtcdMember{{Name: "m1", Address: "198.19.41.10"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.SavePrior(&inventory.Prior{EtcdMembers: []string{"m1"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(d.ArtifactCache(), "etcd"), filepath.Join(d.Snapshots(), "s.db")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("cache"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := Snapshot(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap["prior.json"]; !ok {
		t.Fatalf("snapshot has no prior.json: %v", keys(snap))
	}
	var keyFiles, certFiles int
	for name := range snap {
		switch filepath.Ext(name) {
		case ".key":
			keyFiles++
		case ".crt":
			certFiles++
		}
		if first := filepath.Dir(name); first == "artifacts" || first == "snapshots" {
			t.Errorf("snapshot holds %s", name)
		}
	}
	if keyFiles == 0 || certFiles == 0 {
		t.Fatalf("snapshot has %d keys and %d certificates: %v", keyFiles, certFiles, keys(snap))
	}

	out := filepath.Join(t.TempDir(), "restored")
	if err := Restore(out, snap); err != nil {
		t.Fatal(err)
	}
	again, err := Snapshot(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(snap, again) {
		t.Fatalf("round trip differs:\n got %v\nwant %v", keys(again), keys(snap))
	}
	for name := range snap {
		src, err := os.Stat(filepath.Join(d.Path, name))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if src.Mode().Perm() != dst.Mode().Perm() {
			t.Errorf("%s: mode %v after restore, the CLI wrote %v", name, dst.Mode().Perm(), src.Mode().Perm())
		}
		if filepath.Ext(name) == ".key" && dst.Mode().Perm() != 0o600 {
			t.Errorf("%s: key restored %v, want 0600", name, dst.Mode().Perm())
		}
	}
	err = filepath.WalkDir(out, func(p string, de os.DirEntry, err error) error {
		if err != nil || !de.IsDir() {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("directory %s is %v, want 0700", p, st.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The restored directory is a working store: the engine reads it back.
	rd := &Dir{Path: out}
	p, err := rd.Prior()
	if err != nil || p == nil || len(p.EtcdMembers) != 1 || p.EtcdMembers[0] != "m1" {
		t.Fatalf("restored prior = %+v, %v", p, err)
	}
}

func TestRestoreRefusesUnsafePaths(t *testing.T) {
	for _, name := range []string{"", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "..", ".", "artifacts/etcd", "snapshots/s.db", `a\..\x`, "a/"} {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "state")
			err := Restore(dir, map[string]string{"prior.json": "{}", name: "x"})
			if err == nil {
				t.Fatalf("Restore accepted %q", name)
			}
			if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("Restore wrote %s before refusing %q", dir, name)
			}
			if _, statErr := os.Stat(filepath.Join(base, "x")); statErr == nil {
				t.Errorf("Restore wrote outside the directory for %q", name)
			}
		})
	}
}

func TestSnapshotRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Snapshot(dir); err == nil {
		t.Fatal("Snapshot followed a symbolic link")
	}
	if _, err := Snapshot(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Snapshot of a missing directory succeeded")
	}
}

func FuzzRestorePaths(f *testing.F) {
	for _, s := range []string{"prior.json", "pki/etcd-ca/ca.key", "../x", "/abs", "a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		base := t.TempDir()
		dir := filepath.Join(base, "state")
		if err := Restore(dir, map[string]string{name: "x"}); err != nil {
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || string(b) != "x" {
			t.Fatalf("accepted %q but the file is not inside the directory: %v", name, err)
		}
		rel, err := filepath.Rel(dir, filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || rel == ".." || len(rel) >= 3 && rel[:3] == "../" {
			t.Fatalf("accepted %q escaping the directory", name)
		}
	})
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
