package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2025-12-06T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name string
		s    stamp
		bi   *debug.BuildInfo
		want Info
	}{{
		name: "linker stamp wins",
		s:    stamp{version: "v0.1.0", revision: "fedcba9876543210", modified: "false", time: "2025-12-01T00:00:00Z"},
		bi:   vcs,
		want: Info{Version: "v0.1.0", Revision: "fedcba9876543210", Time: "2025-12-01T00:00:00Z", GoVersion: "go1.99.1"},
	}, {
		name: "toolchain VCS stamp",
		bi:   vcs,
		want: Info{Version: Dev, Revision: "0123456789abcdef0123456789abcdef01234567", Time: "2025-12-06T10:00:00Z", Modified: true, GoVersion: "go1.99.1"},
	}, {
		name: "go install module@version",
		bi:   &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.2.0"}},
		want: Info{Version: "v0.2.0", GoVersion: "go1.99.1"},
	}, {
		name: "no build info",
		want: Info{Version: Dev, GoVersion: runtime.Version()},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.s, tc.bi)
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got != tc.want {
				t.Fatalf("resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	i := Info{Version: "v0.1.0", Revision: "0123456789abcdef", Modified: true, GoVersion: "go1.99.1", Platform: "linux/amd64"}
	if got, want := i.String(), "v0.1.0 (revision 0123456789ab, modified, go1.99.1 linux/amd64)"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	i = Info{Version: Dev, GoVersion: "go1.99.1", Platform: "linux/arm64"}
	if got := i.String(); got != "dev (revision unknown, go1.99.1 linux/arm64)" {
		t.Fatalf("String = %q", got)
	}
}

// TestGet: a test binary carries build info; Get never returns an empty
// version or toolchain.
func TestGet(t *testing.T) {
	i := Get()
	if i.Version == "" || !strings.HasPrefix(i.GoVersion, "go") || Version() != i.Version {
		t.Fatalf("Get = %+v, Version = %q", i, Version())
	}
}
