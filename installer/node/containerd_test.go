package node

import (
	"maps"
	"slices"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// The rendered configuration parses as TOML into containerd 2's version 3
// layout: the CRI images and runtime plugins apart, nothing left in the
// version 2 CRI plugin, the nspawn keys in the runtime plugin only.
func TestContainerdConfigVersion3(t *testing.T) {
	for _, prof := range []Profile{ProfileBareMetal, ProfileNspawn} {
		t.Run(string(prof), func(t *testing.T) {
			b, err := RenderContainerd(ContainerdParams{SandboxImage: "registry.k8s.io/pause:3.10.2", Profile: prof})
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Version int                       `toml:"version"`
				Plugins map[string]map[string]any `toml:"plugins"`
			}
			if err := toml.Unmarshal(b, &c); err != nil {
				t.Fatalf("not TOML: %v\n%s", err, b)
			}
			if c.Version != 3 {
				t.Errorf("version %d, want 3", c.Version)
			}
			if got := slices.Sorted(maps.Keys(c.Plugins)); !slices.Equal(got, []string{"io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"}) {
				t.Errorf("plugins %v, want only the CRI images and runtime plugins", got)
			}
			images, runtime := c.Plugins["io.containerd.cri.v1.images"], c.Plugins["io.containerd.cri.v1.runtime"]
			get := func(m map[string]any, path ...string) any {
				var v any = m
				for _, p := range path {
					mm, ok := v.(map[string]any)
					if !ok {
						return nil
					}
					v = mm[p]
				}
				return v
			}
			for _, ck := range []struct {
				what string
				got  any
				want any
			}{
				{"sandbox image", get(images, "pinned_images", "sandbox"), "registry.k8s.io/pause:3.10.2"},
				{"snapshotter", get(images, "snapshotter"), "overlayfs"},
				{"default runtime", get(runtime, "containerd", "default_runtime_name"), "runc"},
				{"runtime type", get(runtime, "containerd", "runtimes", "runc", "runtime_type"), "io.containerd.runc.v2"},
				{"systemd cgroups", get(runtime, "containerd", "runtimes", "runc", "options", "SystemdCgroup"), true},
				{"runc", get(runtime, "containerd", "runtimes", "runc", "options", "BinaryName"), "/usr/local/sbin/runc"},
				{"CNI conf dir", get(runtime, "cni", "conf_dir"), CNIConfDir},
				{"CNI bin dirs", get(runtime, "cni", "bin_dirs"), []any{"/opt/cni/bin"}},
				{"CNI bin dir (version 2 key)", get(runtime, "cni", "bin_dir"), nil},
				{"sandbox image (version 2 key)", get(runtime, "sandbox_image"), nil},
			} {
				if !equalAny(ck.got, ck.want) {
					t.Errorf("%s = %#v, want %#v", ck.what, ck.got, ck.want)
				}
			}
			nspawn := prof == ProfileNspawn
			for _, k := range []string{"restrict_oom_score_adj", "tolerate_missing_hugetlb_controller"} {
				if got := get(runtime, k); (got == true) != nspawn || (!nspawn && got != nil) {
					t.Errorf("%s = %v in the %s profile", k, got, prof)
				}
				if get(images, k) != nil {
					t.Errorf("%s is in the images plugin", k)
				}
			}
		})
	}
}

func equalAny(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestRuntimePaths(t *testing.T) {
	for key, want := range map[string]string{
		BinContainerd: "/usr/local/bin/containerd", BinContainerdShim: "/usr/local/bin/containerd-shim-runc-v2",
		BinCtr: "/usr/local/bin/ctr", BinRunc: "/usr/local/sbin/runc",
		"bridge": "/opt/cni/bin/bridge", "host-local": "/opt/cni/bin/host-local",
		"portmap": "/opt/cni/bin/portmap", "loopback": "/opt/cni/bin/loopback",
	} {
		if got := RuntimePath(key); got != want {
			t.Errorf("RuntimePath(%s) = %s, want %s", key, got, want)
		}
	}
	if got := RuntimeBinaries(); len(got) != 8 || got[0] != BinContainerd {
		t.Errorf("RuntimeBinaries() = %v", got)
	}
	for p, want := range map[string]bool{
		"/usr/local/bin/containerd": true, "/usr/local/bin/containerd-shim-runc-v2": true, "/usr/local/sbin/runc": true,
		ContainerdConfig: true, ContainerdUnitFile: true,
		"/usr/local/bin/ctr": false, "/opt/cni/bin/bridge": false,
	} {
		if got := restartsContainerd(p); got != want {
			t.Errorf("restartsContainerd(%s) = %v, want %v", p, got, want)
		}
	}
}
