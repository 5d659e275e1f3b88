// Package version is the build's identity, the same in every binary of the
// module (the tricenter CLI and the Terraform provider): the module
// version, the VCS revision and whether the tree was modified, and the Go
// toolchain that built it.
//
// make build stamps it with -ldflags -X (hack/version.sh), which works
// whatever GOFLAGS says about -buildvcs; a plain go build or go install
// falls back on what the toolchain recorded (runtime/debug.ReadBuildInfo):
// the module version of go install module@version, the vcs.* settings of a
// build in a Git tree. A build with neither says "dev".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker: -X github.com/tricenter/terraform-provider-tricenter/internal/version.version=v0.1.0
// (and .revision, .modified "true"/"false", .commitTime RFC 3339).
var (
	version    string
	revision   string
	modified   string
	commitTime string
)

// Dev is the version of a build that was not stamped.
const Dev = "dev"

// Info is the identity of this build.
type Info struct {
	// Version is the module version (a tag such as v0.1.0 or a Go
	// pseudo-version), or "dev".
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from; empty when
	// unknown.
	Revision string `json:"revision,omitempty"`
	// Time is the commit time of Revision (RFC 3339); empty when unknown.
	Time string `json:"time,omitempty"`
	// Modified reports a build from a tree with uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"goVersion"`
	// Platform is GOOS/GOARCH.
	Platform string `json:"platform"`
}

// Get returns this build's identity.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolve(stamp{version: version, revision: revision, modified: modified, time: commitTime}, bi)
}

// Version is Get().Version: what the provider reports to Terraform.
func Version() string { return Get().Version }

// stamp is what the linker set.
type stamp struct{ version, revision, modified, time string }

// resolve prefers the linker's stamp, then the toolchain's build info.
func resolve(s stamp, bi *debug.BuildInfo) Info {
	i := Info{Version: s.version, Revision: s.revision, Time: s.time, Modified: s.modified == "true",
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if i.Version == "" {
			i.Version = Dev
		}
		return i
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	settings := map[string]string{}
	for _, kv := range bi.Settings {
		settings[kv.Key] = kv.Value
	}
	if i.Revision == "" {
		i.Revision = settings["vcs.revision"]
		i.Time = settings["vcs.time"]
		if s.modified == "" {
			i.Modified = settings["vcs.modified"] == "true"
		}
	}
	if i.Version == "" {
		// (devel) is a build inside the module's own tree without VCS
		// information.
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			i.Version = v
		} else {
			i.Version = Dev
		}
	}
	return i
}

// Short is the revision's first 12 characters (as in Go pseudo-versions).
func (i Info) Short() string {
	if len(i.Revision) > 12 {
		return i.Revision[:12]
	}
	return i.Revision
}

// String is the one-line form --version prints:
// "v0.1.0 (revision 0123456789ab, modified, go1.26.8 linux/amd64)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		parts = append(parts, "revision "+i.Short())
	} else {
		parts = append(parts, "revision unknown")
	}
	if i.Modified {
		parts = append(parts, "modified")
	}
	parts = append(parts, i.GoVersion+" "+i.Platform)
	return fmt.Sprintf("%s (%s)", i.Version, strings.Join(parts, ", "))
}
