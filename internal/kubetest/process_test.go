package kubetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// moduleRoot finds the main module's directory from any depth below it and
// passes over a nested module (as hack/artifacts/etcd/v3.6 has).
func TestModuleRoot(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "// main\nmodule "+module+"\n\ngo 1.24\n")
	write("hack/artifacts/etcd/v3.6/go.mod", "module example.com/etcdbuild\n")
	for _, rel := range []string{".", "installer/addons", "hack/artifacts/etcd/v3.6/sub"} {
		got, err := moduleRoot(filepath.Join(root, rel))
		if err != nil || got != root {
			t.Errorf("moduleRoot(%s) = %q, %v; want %q", rel, got, err, root)
		}
	}
	other := t.TempDir()
	if got, err := moduleRoot(other); err == nil || !strings.Contains(err.Error(), "no go.mod of "+module) {
		t.Errorf("moduleRoot outside the repository = %q, %v; want an error naming the module", got, err)
	}
}

// The repository this test runs in is found, with its artifact directory.
func TestArtifactDir(t *testing.T) {
	got := artifactDir(t)
	want, err := filepath.Abs("../../.cache/artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("artifactDir = %q, want %q", got, want)
	}
}

func TestDeclares(t *testing.T) {
	for _, c := range []struct {
		gomod string
		want  bool
	}{
		{"module " + module + "\n", true},
		{"module \"" + module + "\"\r\n", true},
		{"module " + module + "/v2\n", false},
		{"// module " + module + "\n", false},
		{"", false},
	} {
		if got := declares([]byte(c.gomod), module); got != c.want {
			t.Errorf("declares(%q) = %v, want %v", c.gomod, got, c.want)
		}
	}
}
