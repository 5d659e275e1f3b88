package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
