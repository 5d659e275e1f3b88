package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// TestStateRestoreFormats: state restore takes the tricenter_cluster state
// attribute in the current format and in the bare format of older
// providers, writing the same files; a newer format is refused with the
// remedy and writes nothing.
func TestStateRestoreFormats(t *testing.T) {
	files := `"pki/etcd/ca.crt":"C\n","pki/etcd/ca.key":"K\n","prior.json":"{}\n"`
	for name, blob := range map[string]string{"current": `{"format":2,"files":{` + files + `}}`, "bare": `{` + files + `}`} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, errs, code := runCLIIn(t, strings.NewReader(blob), "state", "restore", "-f", labInv, "--from", "-", "--state-dir", dir)
			if code != 0 || !strings.Contains(out, "(3 files) written to") {
				t.Fatalf("exit %d: %q %q", code, out, errs)
			}
			cluster, err := filepath.Glob(filepath.Join(dir, "*", "pki", "etcd", "ca.key"))
			if err != nil || len(cluster) != 1 {
				t.Fatalf("ca.key not restored: %v %v", cluster, err)
			}
			b, err := os.ReadFile(cluster[0])
			if err != nil || string(b) != "K\n" {
				t.Fatalf("ca.key = %q, %v", b, err)
			}
			if st, _ := os.Stat(cluster[0]); st.Mode().Perm() != 0o600 {
				t.Errorf("ca.key mode %v", st.Mode().Perm())
			}
		})
	}
	dir := t.TempDir()
	_, errs, code := runCLIIn(t, strings.NewReader(`{"format":3,"files":{}}`), "state", "restore", "-f", labInv, "--from", "-", "--state-dir", dir)
	if code != 1 || !strings.Contains(errs, "written by a newer provider: upgrade the provider") {
		t.Fatalf("format 3 (exit %d): %q", code, errs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused state wrote %d entries", len(entries))
	}
}

// TestStateRestorePKIDir: a state attribute written with pki_dir holds
// only the PKI's fingerprints; restore reads the files back from the
// directory it names into the state directory (0600 keys), and refuses a
// changed or missing file with its path, writing nothing.
func TestStateRestorePKIDir(t *testing.T) {
	pkiDir := filepath.Join(t.TempDir(), "pki")
	ext, err := state.ExternalizePKI(map[string]string{
		"pki/etcd/ca.crt": "C\n", "pki/etcd/ca.key": "K\n", "prior.json": "{}\n"}, pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := state.EncodeBlob(ext)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(blob, "K\\n") {
		t.Fatalf("the blob holds the key: %s", blob)
	}
	dir := t.TempDir()
	out, errs, code := runCLIIn(t, strings.NewReader(blob), "state", "restore", "-f", labInv, "--from", "-", "--state-dir", dir)
	if code != 0 || !strings.Contains(out, "read from pki_dir "+pkiDir) || !strings.Contains(out, "(3 files) written to") {
		t.Fatalf("exit %d: %q %q", code, out, errs)
	}
	keys, err := filepath.Glob(filepath.Join(dir, "*", "pki", "etcd", "ca.key"))
	if err != nil || len(keys) != 1 {
		t.Fatalf("ca.key not restored: %v %v", keys, err)
	}
	if b, err := os.ReadFile(keys[0]); err != nil || string(b) != "K\n" {
		t.Fatalf("ca.key = %q, %v", b, err)
	}
	if st, _ := os.Stat(keys[0]); st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(keys[0]))), state.PKIRefFile)); err == nil {
		t.Error("the fingerprint file was restored as a state file")
	}

	// A changed file, then a missing one: an error naming it, nothing
	// written.
	key := filepath.Join(pkiDir, "etcd", "ca.key")
	if err := os.WriteFile(key, []byte("other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	_, errs, code = runCLIIn(t, strings.NewReader(blob), "state", "restore", "-f", labInv, "--from", "-", "--state-dir", empty)
	if code != 1 || !strings.Contains(errs, "pki_dir "+pkiDir) || !strings.Contains(errs, "etcd/ca.key changed") {
		t.Fatalf("changed key (exit %d): %q", code, errs)
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	_, errs, code = runCLIIn(t, strings.NewReader(blob), "state", "restore", "-f", labInv, "--from", "-", "--state-dir", empty)
	if code != 1 || !strings.Contains(errs, "lacks etcd/ca.key") {
		t.Fatalf("missing key (exit %d): %q", code, errs)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a refused restore wrote %d entries", len(entries))
	}
}
