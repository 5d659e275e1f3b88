package inventory

import (
	"fmt"
	"strconv"
	"strings"
)

// The versions tricenter installs and upgrades. Each supported minor is
// built from its pinned module into the artifact set (hack/artifacts), so
// a version here is one the artifact set can hold; the newest patch the
// module proxy serves is the default.
const (
	DefaultKubernetesVersion = "v1.37.2"
	DefaultEtcdVersion       = "v3.6.16"
)

// SupportedKubernetesMinors are the Kubernetes minors tricenter installs,
// oldest first: upstream supports each of them today.
var SupportedKubernetesMinors = []string{"1.36", "1.37"}

// SupportedEtcdMinors are the etcd minors tricenter installs, oldest
// first. 3.5 is kept so that clusters installed with it can be upgraded.
var SupportedEtcdMinors = []string{"3.5", "3.6"}

// Version is a parsed vMAJOR.MINOR.PATCH.
type Version struct{ Major, Minor, Patch int }

// ParseVersion reads "v1.37.2" (the leading v is required).
func ParseVersion(s string) (Version, error) {
	if !reVersion.MatchString(s) {
		return Version{}, fmt.Errorf("%q is not a version: write it as vMAJOR.MINOR.PATCH, e.g. %s", s, DefaultKubernetesVersion)
	}
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil {
			return Version{}, fmt.Errorf("%q is not a version: %w", s, err)
		}
		n[i] = v
	}
	return Version{n[0], n[1], n[2]}, nil
}

// MustVersion is ParseVersion for constants.
func MustVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v Version) String() string { return fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch) }

// MinorString is "1.37".
func (v Version) MinorString() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Compare returns -1, 0 or 1.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		switch {
		case d < 0:
			return -1
		case d > 0:
			return 1
		}
	}
	return 0
}

// SameMinor says whether v and o differ at most in their patch.
func (v Version) SameMinor(o Version) bool { return v.Major == o.Major && v.Minor == o.Minor }

func supported(v Version, minors []string) bool {
	for _, m := range minors {
		if v.MinorString() == m {
			return true
		}
	}
	return false
}

// KubernetesSupported says whether tricenter installs this Kubernetes minor.
func KubernetesSupported(v Version) bool { return supported(v, SupportedKubernetesMinors) }

// EtcdSupported says whether tricenter installs this etcd minor.
func EtcdSupported(v Version) bool { return supported(v, SupportedEtcdMinors) }
