package installer

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// fakeArtifactDir writes a fake artifact directory (test stand-ins, not
// built binaries): files by name, and a SHA256SUMS of manifest (name →
// content whose digest it lists; absent names are not listed).
func fakeArtifactDir(t *testing.T, files, manifest map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if manifest != nil {
		var sums strings.Builder
		for n, b := range manifest {
			sums.WriteString(fsutil.SHA256Hex([]byte(b)) + "  " + n + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, artifacts.ManifestName), []byte(sums.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// agentEngine is an engine with only what agentBinary needs; its log
// (debug level) goes to the returned buffer.
func agentEngine(t *testing.T, artifactDir, agentBinary string) (*Engine, *bytes.Buffer) {
	t.Helper()
	c := &inventory.Cluster{}
	c.Spec.Kubernetes.ArtifactDir = artifactDir
	st, err := state.Open(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &Engine{cfg: Config{Cluster: c, Store: st, AgentBinary: agentBinary}, log: log}, &buf
}

const agentBytes = "tricenter-bgp stand-in (tests only)\n"

func TestAgentBinaryVerifiedAgainstTheManifest(t *testing.T) {
	agent := map[string]string{"tricenter-bgp": agentBytes}
	for _, tc := range []struct {
		name string
		// manifest of the artifact directory; nil: none
		manifest map[string]string
		// explicit: pass <dir>/tricenter-bgp as AgentBinary (as the
		// provider and the acceptance tests do)
		explicit bool
		// inventory: the directory is the inventory's artifactDir
		inventory bool
		// want: "" for success, else parts of the error
		want    []string
		wantErr error
	}{
		{name: "matching digest, found in the artifact directory", manifest: agent, inventory: true},
		{name: "matching digest, given explicitly", manifest: agent, explicit: true, inventory: true},
		{name: "matching digest, explicit, in a set the inventory does not name", manifest: agent, explicit: true},
		{name: "mismatched digest refused", manifest: map[string]string{"tricenter-bgp": "another build"}, inventory: true,
			want: []string{"tricenter-bgp", artifacts.ManifestName, "make artifacts", fsutil.SHA256Hex([]byte(agentBytes))}, wantErr: artifacts.ErrChecksum},
		{name: "mismatched digest refused when given explicitly", manifest: map[string]string{"tricenter-bgp": "another build"}, explicit: true, inventory: true,
			want: []string{"tricenter-bgp", artifacts.ManifestName, "make artifacts"}, wantErr: artifacts.ErrChecksum},
		{name: "mismatched digest refused in a set the inventory does not name", manifest: map[string]string{"tricenter-bgp": "another build"}, explicit: true,
			want: []string{"tricenter-bgp", artifacts.ManifestName, "make artifacts"}, wantErr: artifacts.ErrChecksum},
		{name: "missing entry refused", manifest: map[string]string{"kubelet-v1.37.2": "kubelet"}, inventory: true,
			want: []string{"tricenter-bgp", artifacts.ManifestName, "make artifacts", "not listed"}},
		{name: "missing entry refused when given explicitly", manifest: map[string]string{"kubelet-v1.37.2": "kubelet"}, explicit: true, inventory: true,
			want: []string{"tricenter-bgp", artifacts.ManifestName, "make artifacts", "not listed"}},
		{name: "artifact directory without a manifest refused", inventory: true,
			want: []string{"tricenter-bgp", artifacts.ManifestName, "make artifacts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fakeArtifactDir(t, agent, tc.manifest)
			bin := filepath.Join(dir, "tricenter-bgp")
			inv, explicit := "", ""
			if tc.inventory {
				inv = dir
			}
			if tc.explicit {
				explicit = bin
			}
			e, logs := agentEngine(t, inv, explicit)
			got, err := e.agentBinary()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("agentBinary: %v", err)
				}
				if got != bin {
					t.Fatalf("agentBinary = %s, want %s", got, bin)
				}
				if l := logs.String(); !strings.Contains(l, fsutil.SHA256Hex([]byte(agentBytes))) || !strings.Contains(l, bin) {
					t.Errorf("the log does not name the binary and its digest:\n%s", l)
				}
				return
			}
			if err == nil {
				t.Fatalf("agentBinary = %s, want an error", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
			if got != "" {
				t.Errorf("agentBinary returned %q with its error", got)
			}
		})
	}
}

// A relative artifactDir (as in the lab inventory) is the directory the
// explicit absolute path names: the binary is checked against that set
// even when its manifest is missing.
func TestAgentBinaryRelativeArtifactDir(t *testing.T) {
	dir := fakeArtifactDir(t, map[string]string{"tricenter-bgp": agentBytes}, nil)
	t.Chdir(filepath.Dir(dir))
	e, _ := agentEngine(t, filepath.Base(dir), filepath.Join(dir, "tricenter-bgp"))
	_, err := e.agentBinary()
	if err == nil || !strings.Contains(err.Error(), "make artifacts") || !strings.Contains(err.Error(), filepath.Join(dir, artifacts.ManifestName)) {
		t.Fatalf("agentBinary: %v, want an error naming the missing manifest", err)
	}
}

// A binary outside any artifact set (a development build, a test's
// stand-in) is used, and the log says which file with its digest.
func TestAgentBinaryOutsideTheArtifactSet(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "tricenter-bgp")
	if err := os.WriteFile(dev, []byte(agentBytes), 0o755); err != nil {
		t.Fatal(err)
	}
	// The inventory's artifact set does not list it, but the binary is
	// not in that set: it is a development build.
	arts := fakeArtifactDir(t, nil, map[string]string{"kubelet-v1.37.2": "kubelet"})
	e, logs := agentEngine(t, arts, dev)
	got, err := e.agentBinary()
	if err != nil {
		t.Fatalf("agentBinary: %v", err)
	}
	if got != dev {
		t.Fatalf("agentBinary = %s, want %s", got, dev)
	}
	l := logs.String()
	if !strings.Contains(l, "level=INFO") || !strings.Contains(l, dev) || !strings.Contains(l, "sha256="+fsutil.SHA256Hex([]byte(agentBytes))) {
		t.Errorf("want an Info line naming %s and its sha256, got:\n%s", dev, l)
	}

	// Not found anywhere: the error lists where it looked.
	e, _ = agentEngine(t, arts, filepath.Join(t.TempDir(), "absent"))
	if _, err := e.agentBinary(); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("agentBinary with a missing binary: %v", err)
	}
}
