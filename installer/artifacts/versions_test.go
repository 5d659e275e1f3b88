package artifacts

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestVersioned(t *testing.T) {
	for _, tc := range []struct{ name, version, want string }{
		{"kubelet", "v1.37.2", "kubelet-v1.37.2"},
		{"kube-apiserver", "v1.36.3", "kube-apiserver-v1.36.3"},
		{"etcd", "v3.6.16", "etcd-v3.6.16"},
		{"etcdctl", "v3.5.35", "etcdctl-v3.5.35"},
	} {
		if got := Versioned(tc.name, tc.version); got != tc.want {
			t.Errorf("Versioned(%q, %q) = %q, want %q", tc.name, tc.version, got, tc.want)
		}
	}
}

func TestDefaultName(t *testing.T) {
	for bin, want := range map[string]string{
		"kubelet":       "kubelet-" + inventory.DefaultKubernetesVersion,
		"kubectl":       "kubectl-" + inventory.DefaultKubernetesVersion,
		"etcd":          "etcd-" + inventory.DefaultEtcdVersion,
		"etcdctl":       "etcdctl-" + inventory.DefaultEtcdVersion,
		"containerd":    "containerd",
		"pause.oci.tar": "pause.oci.tar",
		"tricenter-bgp": "tricenter-bgp",
	} {
		if got := DefaultName(bin); got != want {
			t.Errorf("DefaultName(%q) = %q, want %q", bin, got, want)
		}
	}
}

// releaseSet is an artifact set holding two Kubernetes releases side by
// side, an etcd release, and a kubelet of the unversioned layout.
var releaseSet = map[string]string{
	"kubelet-v1.37.2":    "kubelet 1.37.2",
	"kube-proxy-v1.37.2": "kube-proxy 1.37.2",
	"kubelet-v1.36.3":    "kubelet 1.36.3",
	"kube-proxy-v1.36.3": "kube-proxy 1.36.3",
	"etcd-v3.6.16":       "etcd 3.6.16",
	"kubelet":            "kubelet of the unversioned layout",
}

func manifestOf(files map[string]string) string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(files)) {
		b.WriteString(fsutil.SHA256Hex([]byte(files[n])) + "  " + n + "\n")
	}
	return b.String()
}

func releaseDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for n, data := range releaseSet {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(manifestOf(releaseSet)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestResolveVersionDirectory(t *testing.T) {
	dir := releaseDir(t)
	s := Source{Dir: dir}
	ctx := ctxT(t)
	for _, v := range []string{"v1.36.3", "v1.37.2"} {
		got, err := s.ResolveVersion(ctx, v, "kubelet", "kube-proxy")
		if err != nil {
			t.Fatalf("ResolveVersion(%s): %v", v, err)
		}
		want := map[string]string{"kubelet": filepath.Join(dir, "kubelet-"+v), "kube-proxy": filepath.Join(dir, "kube-proxy-"+v)}
		if !maps.Equal(got, want) {
			t.Errorf("ResolveVersion(%s) = %v, want %v", v, got, want)
		}
	}
	files, err := s.FilesVersion(ctx, "v3.6.16", "etcd")
	if err != nil {
		t.Fatal(err)
	}
	f := files["etcd"]
	if len(files) != 1 || f.Path != filepath.Join(dir, "etcd-v3.6.16") || f.SHA256 != fsutil.SHA256Hex([]byte("etcd 3.6.16")) || f.Size != int64(len("etcd 3.6.16")) {
		t.Errorf("FilesVersion(v3.6.16, etcd) = %+v", files)
	}
}

func TestFilesVersionMissingRelease(t *testing.T) {
	dir := releaseDir(t)
	s := Source{Dir: dir}
	ctx := ctxT(t)
	// kube-proxy of the release is there, kubelet is not: the error names
	// kubelet's artifact, how to build it, and what the set holds.
	if err := os.WriteFile(filepath.Join(dir, "kube-proxy-v1.35.4"), []byte("kube-proxy 1.35.4"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := s.ResolveVersion(ctx, "v1.35.4", "kubelet", "kube-proxy")
	var nl *NotListedError
	if !errors.As(err, &nl) {
		t.Fatalf("missing release: err = %v, want a *NotListedError", err)
	}
	if nl.Name != "kubelet-v1.35.4" || nl.Binary != "kubelet" || nl.Release != "v1.35.4" || nl.Mirror ||
		nl.Manifest != filepath.Join(dir, ManifestName) || !slices.Equal(nl.Held, []string{"kubelet-v1.36.3", "kubelet-v1.37.2"}) {
		t.Errorf("NotListedError = %+v", nl)
	}
	want := "kubelet-v1.35.4 is not in the artifact set (" + filepath.Join(dir, ManifestName) +
		"): supported releases are built by make artifacts; it holds kubelet-v1.36.3, kubelet-v1.37.2"
	if err.Error() != want {
		t.Errorf("error\n%q\nwant\n%q", err, want)
	}

	// A binary of which the set holds no release at all.
	_, err = s.FilesVersion(ctx, "v3.5.35", "etcdctl")
	if err == nil || !strings.HasPrefix(err.Error(), "etcdctl-v3.5.35 is not in the artifact set") ||
		!strings.HasSuffix(err.Error(), "it holds no release of etcdctl") {
		t.Errorf("no release of etcdctl: err = %v", err)
	}

	// The unversioned layout does not answer for a release, and a release
	// is always named.
	if _, err := s.FilesVersion(ctx, "", "kubelet", "etcd"); err == nil || err.Error() != "artifacts kubelet, etcd: no release given" {
		t.Errorf("empty release: err = %v", err)
	}

	// Plain names keep their message.
	_, err = s.Files(ctx, "coredns.oci.tar")
	if !errors.As(err, &nl) || nl.Release != "" || err.Error() != "artifact coredns.oci.tar is not listed in "+filepath.Join(dir, ManifestName)+": run make artifacts" {
		t.Errorf("plain name: err = %v", err)
	}

	// A release whose binary was changed after the manifest: the checksum
	// error, not a missing release.
	if err := os.WriteFile(filepath.Join(dir, "kubelet-v1.37.2"), []byte("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveVersion(ctx, "v1.37.2", "kubelet"); !errors.Is(err, ErrChecksum) || errors.As(err, &nl) {
		t.Errorf("tampered release binary: err = %v, want ErrChecksum", err)
	}
}

func TestFilesVersionMirror(t *testing.T) {
	m := newMirror(t, true)
	m.files = maps.Clone(releaseSet)
	m.manifest = manifestOf(releaseSet)
	m.pin = fsutil.SHA256Hex([]byte(m.manifest))
	s := m.source(t)
	ctx := ctxT(t)
	got, err := s.ResolveVersion(ctx, "v1.37.2", "kubelet", "kube-proxy")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"kubelet": filepath.Join(s.CacheDir, "kubelet-v1.37.2"), "kube-proxy": filepath.Join(s.CacheDir, "kube-proxy-v1.37.2")}
	if !maps.Equal(got, want) {
		t.Errorf("ResolveVersion = %v, want %v", got, want)
	}
	if m.count("kubelet-v1.37.2") != 1 || m.count("kubelet") != 0 {
		t.Errorf("fetched kubelet-v1.37.2 %d times and kubelet %d times, want 1 and 0", m.count("kubelet-v1.37.2"), m.count("kubelet"))
	}
	_, err = s.ResolveVersion(ctx, "v1.35.4", "kubelet")
	var nl *NotListedError
	if !errors.As(err, &nl) || !nl.Mirror || nl.Manifest != m.srv.URL+"/k8s/"+ManifestName {
		t.Fatalf("missing release on the mirror: err = %v", err)
	}
	wantMsg := "kubelet-v1.35.4 is not in the artifact set (the mirror's manifest " + m.srv.URL + "/k8s/" + ManifestName +
		"): supported releases are built by make artifacts; it holds kubelet-v1.36.3, kubelet-v1.37.2"
	if err.Error() != wantMsg {
		t.Errorf("error\n%q\nwant\n%q", err, wantMsg)
	}
	if m.count("kubelet-v1.35.4") != 0 {
		t.Errorf("a release the manifest does not list was fetched")
	}
}

// TestBuildModules checks the artifact set's recipe (hack/artifacts)
// against the inventory: a build module per supported minor and no other,
// each pinning a release of its minor, the default releases among them,
// and build.sh building the binaries the installer asks for.
func TestBuildModules(t *testing.T) {
	root := filepath.Join("..", "..", "hack", "artifacts")
	for _, c := range []struct {
		component, module, def string
		minors                 []string
	}{
		{"kubernetes", "k8s.io/kubernetes", inventory.DefaultKubernetesVersion, inventory.SupportedKubernetesMinors},
		{"etcd", "go.etcd.io/etcd/server/v3", inventory.DefaultEtcdVersion, inventory.SupportedEtcdMinors},
	} {
		dirs, err := filepath.Glob(filepath.Join(root, c.component, "v*", "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		pins := map[string]string{}
		re := regexp.MustCompile(`(?m)^(?:require\s+|\s+)` + regexp.QuoteMeta(c.module) + `\s+(v\S+)\s*$`)
		for _, gm := range dirs {
			rel := filepath.Base(filepath.Dir(gm))
			got = append(got, strings.TrimPrefix(rel, "v"))
			b, err := os.ReadFile(gm)
			if err != nil {
				t.Fatal(err)
			}
			mm := re.FindSubmatch(b)
			if mm == nil {
				t.Errorf("%s requires no %s", gm, c.module)
				continue
			}
			v, err := inventory.ParseVersion(string(mm[1]))
			if err != nil || "v"+v.MinorString() != rel {
				t.Errorf("%s pins %s %s: a version directory holds a release of its own minor", gm, c.module, mm[1])
				continue
			}
			pins[v.MinorString()] = v.String()
		}
		slices.SortFunc(got, func(a, b string) int {
			return inventory.MustVersion("v" + a + ".0").Compare(inventory.MustVersion("v" + b + ".0"))
		})
		if !slices.Equal(got, c.minors) {
			t.Errorf("hack/artifacts/%s builds the minors %v, the inventory supports %v: add or remove a build module", c.component, got, c.minors)
		}
		d := inventory.MustVersion(c.def)
		if pins[d.MinorString()] != c.def {
			t.Errorf("the default %s release is %s, hack/artifacts/%s/v%s pins %q", c.component, c.def, c.component, d.MinorString(), pins[d.MinorString()])
		}
	}

	script, err := os.ReadFile(filepath.Join(root, "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string][]string{"KUBE_BINS": KubernetesBinaries, "ETCD_BINS": EtcdBinaries} {
		mm := regexp.MustCompile(`(?m)^` + v + `=\(([^)]*)\)`).FindSubmatch(script)
		if mm == nil {
			t.Errorf("build.sh sets no %s", v)
			continue
		}
		if got := strings.Fields(string(mm[1])); !slices.Equal(got, want) {
			t.Errorf("build.sh builds %s=%v, the installer asks for %v", v, got, want)
		}
	}
}
