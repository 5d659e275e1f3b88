package ssh

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// TestHashFunc runs the host-side sha256 helper with openssl and, with a
// PATH that has only sha256sum, its fallback.
func TestHashFunc(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "data")
	data := []byte(strings.Repeat("tricenter ", 10000))
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	want := hex.EncodeToString(s[:])
	only := filepath.Join(dir, "bin")
	os.Mkdir(only, 0o755)
	testenv.RequireBinary(t, "sha256sum", "openssl")
	sum, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sum, filepath.Join(only, "sha256sum")); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{"sha256sum only": only, "default (openssl)": os.Getenv("PATH")}
	for name, path := range paths {
		cmd := exec.Command("/bin/sh", "-c", ShellSHA256+`h256 "$1"`, "sh", f)
		cmd.Env = []string{"PATH=" + path}
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%s: h256 = %q, %v; want %s", name, out, err, want)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", ShellSHA256+`h256 "$1"`, "sh", filepath.Join(dir, "missing"))
	cmd.Env = []string{"PATH=" + only}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("h256 of a missing file succeeded: %q", out)
	}
}

func TestParseStat(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		out  string
		want FileState
		err  string
	}{
		{out: "absent\n", want: FileState{}},
		{out: "notfile\n", err: "not a regular file"},
		{out: "644 root:root 12\n" + sum + "\n", want: FileState{Exists: true, Mode: 0o644, Owner: "root:root", Size: 12, SHA256: sum}},
		{out: "644 root:root 12\nshort\n", err: "unexpected output"},
		{out: "9z root:root 12\n" + sum + "\n", err: "mode"},
		{out: "", err: "unexpected output"},
	} {
		got, err := parseStat("/x", tc.out)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.out, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.out, got, err, tc.want)
		}
	}
}
