package phase

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestChecksumsOncePerContent: a file is hashed once while its size and
// mtime stay, again when either changes.
func TestChecksumsOncePerContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "artifact")
	if err := os.WriteFile(p, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newChecksums()
	s1, n, err := c.get(p)
	if err != nil || s1 != fsutil.SHA256Hex([]byte("v1")) || n != 2 {
		t.Fatalf("get = %s, %d, %v", s1, n, err)
	}
	e1 := c.m[p]
	if s, _, _ := c.get(p); s != s1 || c.m[p] != e1 {
		t.Fatal("an unchanged file was hashed again")
	}
	os.WriteFile(p, []byte("v22"), 0o644)
	if s, n, _ := c.get(p); s != fsutil.SHA256Hex([]byte("v22")) || n != 3 {
		t.Fatalf("after a size change: %s, %d", s, n)
	}
	st, _ := os.Stat(p)
	os.WriteFile(p, []byte("v33"), 0o644)
	os.Chtimes(p, st.ModTime().Add(time.Second), st.ModTime().Add(time.Second))
	if s, _, _ := c.get(p); s != fsutil.SHA256Hex([]byte("v33")) {
		t.Fatalf("after an mtime change: %s", s)
	}
	if _, _, err := c.get(filepath.Dir(p)); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}

// TestUploadRefusesChangedArtifact: an upload told the manifest's digest
// refuses a local file that no longer has it, before connecting.
func TestUploadRefusesChangedArtifact(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(p, []byte("replaced after the manifest check"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := &Manager{Cluster: invgen.Generate(invgen.Default())}
	defer m.Close()
	hs, err := m.Hosts(inventory.Selector{})
	if err != nil || len(hs) == 0 {
		t.Fatalf("hosts: %v", err)
	}
	manifest := fsutil.SHA256Hex([]byte("the binary the manifest lists"))
	_, err = hs[0].UploadFile(context.Background(), p, "/usr/local/bin/etcd", FileOptions{Mode: 0o755, SHA256: manifest})
	if !errors.Is(err, ErrLocalChanged) {
		t.Fatalf("got %v, want ErrLocalChanged", err)
	}
	for _, want := range []string{p, manifest, fsutil.SHA256Hex([]byte("replaced after the manifest check"))} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if ch := hs[0].Changes(); len(ch) != 0 {
		t.Errorf("changes recorded: %v", ch)
	}
}
