package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPKIDirRoundTrip: ExternalizePKI writes every pki/ file under the
// directory (0700, files 0600) and leaves only fingerprints in the
// files; InternalizePKI reads them back, and refuses a missing
// directory, a missing file and a changed file with the path and what to
// do.
func TestPKIDirRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "pki")
	files := map[string]string{
		"prior.json":             `{"etcdMembers":["a"]}`,
		"pki/etcd/ca.key":        "-----BEGIN EC PRIVATE KEY-----\netcd\n",
		"pki/etcd/ca.crt":        "-----BEGIN CERTIFICATE-----\netcd\n",
		"pki/kubernetes/sa.key":  "-----BEGIN EC PRIVATE KEY-----\nsa\n",
		"pki/nodes/w1/kubelet.k": "leaf",
	}
	ext, err := ExternalizePKI(files, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != 2 || ext["prior.json"] != files["prior.json"] || ext[PKIRefFile] == "" {
		t.Fatalf("externalized files = %v", keys(ext))
	}
	for k, v := range ext {
		if strings.Contains(v, "PRIVATE KEY") || strings.Contains(v, "CERTIFICATE") {
			t.Errorf("%s still holds PKI content: %q", k, v)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "etcd")} {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v mode %v, want 0700", d, err, st.Mode().Perm())
		}
	}
	for name, content := range files {
		rel, ok := strings.CutPrefix(name, "pki/")
		if !ok {
			continue
		}
		p := filepath.Join(dir, rel)
		b, err := os.ReadFile(p)
		st, _ := os.Stat(p)
		if err != nil || string(b) != content || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, content %q, mode %v", p, err, b, st.Mode().Perm())
		}
	}
	back, gotDir, err := InternalizePKI(ext)
	if err != nil || gotDir != dir {
		t.Fatalf("InternalizePKI: %v (dir %q)", err, gotDir)
	}
	if len(back) != len(files) {
		t.Fatalf("read back %v, want %v", keys(back), keys(files))
	}
	for k, v := range files {
		if back[k] != v {
			t.Errorf("%s read back as %q", k, back[k])
		}
	}
	// In-state files are returned as they are.
	if same, d, err := InternalizePKI(files); err != nil || d != "" || len(same) != len(files) {
		t.Fatalf("a state holding its PKI: %v, dir %q, %d files", err, d, len(same))
	}

	// A changed file.
	if err := os.WriteFile(filepath.Join(dir, "etcd", "ca.key"), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := InternalizePKI(ext); err == nil || !strings.Contains(err.Error(), "etcd/ca.key changed") || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "restore") {
		t.Fatalf("changed file: %v", err)
	}
	// A missing file.
	if err := os.Remove(filepath.Join(dir, "etcd", "ca.key")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := InternalizePKI(ext); err == nil || !strings.Contains(err.Error(), "lacks etcd/ca.key") || !strings.Contains(err.Error(), "ever issues") {
		t.Fatalf("missing file: %v", err)
	}
	// A missing directory.
	if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := InternalizePKI(ext); err == nil || !strings.Contains(err.Error(), "pki_dir "+dir) ||
		!strings.Contains(err.Error(), "Restore the directory") || !strings.Contains(err.Error(), "ever creates new certificate authorities") {
		t.Fatalf("missing directory: %v", err)
	}
	// A directory others may read is refused.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ExternalizePKI(files, open); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Fatalf("a 0755 pki_dir: %v", err)
	}
}
