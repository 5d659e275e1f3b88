package upgrade

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// DefaultMaxUnavailablePerRack is Options.MaxUnavailablePerRack's default.
const DefaultMaxUnavailablePerRack = 1

// Options are an upgrade's targets and limits.
type Options struct {
	// Kubernetes is the release every control-plane server and node ends
	// on; Etcd the release every etcd member ends on.
	Kubernetes inventory.Version
	Etcd       inventory.Version
	// MaxUnavailablePerRack bounds the workers of one rack drained at once
	// (default DefaultMaxUnavailablePerRack).
	MaxUnavailablePerRack int
	// AllowPatchDowngrade lets a component go back to an older patch of
	// its minor.
	AllowPatchDowngrade bool
}

func (o Options) maxPerRack() int {
	if o.MaxUnavailablePerRack <= 0 {
		return DefaultMaxUnavailablePerRack
	}
	return o.MaxUnavailablePerRack
}

// etcdBridges are, per etcd minor, the release every member of that minor
// runs before any member moves to the next minor: the newest patch
// tricenter ships (hack/artifacts/etcd).
var etcdBridges = map[string]inventory.Version{"3.5": inventory.MustVersion("v3.5.35")}

// etcdMinBeside are, per etcd minor, the oldest release a member may run
// while another member already runs the next minor: etcd v3.6 needs
// v3.5.26 or later beside it (v3.5.20 for the learner issue, v3.5.26 for
// the zombie members: see the package documentation).
var etcdMinBeside = map[string]inventory.Version{"3.5": inventory.MustVersion("v3.5.26")}

// EtcdBridge is the release every member of from's minor runs before any
// moves to the next minor (false when tricenter ships none for it).
func EtcdBridge(from inventory.Version) (inventory.Version, bool) {
	v, ok := etcdBridges[from.MinorString()]
	return v, ok
}

// change classifies from → to.
type change int

const (
	unchanged change = iota
	patchUp
	patchDown
	minorUp // exactly one minor
	skip    // more than one minor up
	minorDown
	majorChange
)

func classify(from, to inventory.Version) change {
	switch {
	case from == to:
		return unchanged
	case from.Major != to.Major:
		return majorChange
	case from.Minor == to.Minor && from.Patch < to.Patch:
		return patchUp
	case from.Minor == to.Minor:
		return patchDown
	case to.Minor == from.Minor+1:
		return minorUp
	case to.Minor > from.Minor:
		return skip
	default:
		return minorDown
	}
}

// issues groups messages by component and text, naming the servers each
// was found on.
type issues map[issueKey][]string

type issueKey struct{ component, msg string }

// add records a message about component on host ("" for the cluster).
func (is issues) add(component, host, format string, args ...any) {
	k := issueKey{component, fmt.Sprintf(format, args...)}
	if !slices.Contains(is[k], host) {
		is[k] = append(is[k], host)
	}
}

// lines are "COMPONENT on SERVERS: MESSAGE", sorted, naming at most five
// servers each.
func (is issues) lines() []string {
	var out []string
	for k, hosts := range is {
		sort.Strings(hosts)
		if k.component == "" {
			out = append(out, k.msg)
			continue
		}
		more := ""
		if len(hosts) > 5 {
			more = fmt.Sprintf(" and %d more", len(hosts)-5)
			hosts = hosts[:5]
		}
		out = append(out, k.component+" on "+strings.Join(hosts, ", ")+more+": "+k.msg)
	}
	sort.Strings(out)
	return out
}

func (is issues) err() error {
	var errs []error
	for _, l := range is.lines() {
		errs = append(errs, errors.New(l))
	}
	return errors.Join(errs...)
}

// minorsBetween lists the minors strictly between from and to, as
// "v1.37.x".
func minorsBetween(from, to inventory.Version) []string {
	var out []string
	for m := from.Minor + 1; m < to.Minor; m++ {
		out = append(out, fmt.Sprintf("v%d.%d.x", from.Major, m))
	}
	return out
}

func skipMessage(from, to inventory.Version, via []string) string {
	n := "a minor"
	if len(via) > 1 {
		n = fmt.Sprintf("%d minors", len(via))
	}
	return fmt.Sprintf("%s → %s skips %s: upgrade to %s first", from, to, n, strings.Join(via, ", then "))
}

// checkKubernetes judges one Kubernetes component's from → to.
func checkKubernetes(is issues, component, host string, from, to inventory.Version, o Options) {
	switch classify(from, to) {
	case majorChange:
		is.add(component, host, "%s → %s changes the major version: tricenter upgrades one minor at a time", from, to)
	case skip:
		is.add(component, host, "%s", skipMessage(from, to, minorsBetween(from, to)))
	case minorDown:
		is.add(component, host, "%s → %s is a minor downgrade, which Kubernetes does not support: stay on %s (an etcd snapshot from before the upgrade is the way back)",
			from, to, "v"+from.MinorString()+".x")
	case patchDown:
		if !o.AllowPatchDowngrade {
			is.add(component, host, "%s → %s is a patch downgrade: allow it with --allow-patch-downgrade", from, to)
		}
	}
}

// checkEtcd judges one etcd member's from → to.
func checkEtcd(is issues, host string, from, to inventory.Version, o Options) {
	switch classify(from, to) {
	case majorChange:
		is.add(BinEtcd, host, "etcd %s → %s changes the major version: not supported", from, to)
	case skip:
		via := minorsBetween(from, to)
		if len(via) == 1 {
			next := inventory.Version{Major: from.Major, Minor: from.Minor + 1}
			if b, ok := EtcdBridge(next); ok {
				via = []string{b.String()}
			}
		}
		is.add(BinEtcd, host, "etcd %s", skipMessage(from, to, via))
	case minorDown:
		is.add(BinEtcd, host, "etcd %s → %s is a minor downgrade: tricenter does not downgrade etcd (restore a snapshot taken before the upgrade instead)", from, to)
	case patchDown:
		if !o.AllowPatchDowngrade {
			is.add(BinEtcd, host, "etcd %s → %s is a patch downgrade: allow it with --allow-patch-downgrade", from, to)
		}
	case minorUp:
		if _, ok := EtcdBridge(from); !ok {
			is.add(BinEtcd, host, "etcd %s → %s: tricenter ships no %s.x to bring every member to first", from, to, from.MinorString())
		}
	}
}

// Validate checks that the observed cluster can go to the targets: the
// targets are supported, every component was observed, no component skips
// or goes back a minor (nor a patch, unless allowed), and a half-upgraded
// cluster is on the way from where it started to the targets. Warnings
// are what holds but the user should know.
func Validate(obs *Observation, o Options) (warnings []string, err error) {
	is := issues{}
	if !inventory.KubernetesSupported(o.Kubernetes) {
		is.add("", "", "Kubernetes %s is not supported: tricenter installs %s", o.Kubernetes, strings.Join(inventory.SupportedKubernetesMinors, " and "))
	}
	if !inventory.EtcdSupported(o.Etcd) {
		is.add("", "", "etcd %s is not supported: tricenter installs %s", o.Etcd, strings.Join(inventory.SupportedEtcdMinors, " and "))
	}
	for _, l := range obs.unobservedList() {
		is.add("", "", "not observed: %s: bring it back (tricenter status shows it) before upgrading", l)
	}
	for h, v := range obs.APIServer {
		checkKubernetes(is, BinAPIServer, h, v, o.Kubernetes, o)
	}
	for h, v := range obs.Kubelet {
		checkKubernetes(is, BinKubelet, h, v, o.Kubernetes, o)
	}
	for h, v := range obs.Etcd {
		checkEtcd(is, h, v, o.Etcd, o)
	}
	checkEtcdMixed(is, obs)
	return kubeletAhead(obs), is.err()
}

// checkEtcdMixed refuses members of a minor beside members of the next
// minor when they are older than etcd allows (they cannot have got there
// by tricenter's plan).
func checkEtcdMixed(is issues, obs *Observation) {
	for h, v := range obs.Etcd {
		floor, ok := etcdMinBeside[v.MinorString()]
		if !ok || v.Compare(floor) >= 0 {
			continue
		}
		for h2, v2 := range obs.Etcd {
			if v2.Major == v.Major && v2.Minor == v.Minor+1 {
				is.add(BinEtcd, h, "etcd %s while %s already runs %s: etcd %d.%d members need every %s member at %s or later beside them "+
					"(https://etcd.io/blog/2025/zombie_members_upgrade/): this cluster left etcd's upgrade path, repair it by hand",
					v, h2, v2, v2.Major, v2.Minor, v.MinorString(), floor)
				break
			}
		}
	}
}

// kubeletAhead warns about kubelets newer than the oldest kube-apiserver
// (the plan upgrades the control plane first, which ends it).
func kubeletAhead(obs *Observation) []string {
	oldest, where := inventory.Version{}, ""
	for _, h := range sortedKeys(obs.APIServer) {
		if v := obs.APIServer[h]; where == "" || v.Compare(oldest) < 0 {
			oldest, where = v, h
		}
	}
	if where == "" {
		return nil
	}
	is := issues{}
	for h, v := range obs.Kubelet {
		if v.Compare(oldest) > 0 {
			is.add(BinKubelet, h, "%s is newer than kube-apiserver %s on %s, which the version skew policy forbids: the plan upgrades the control plane first", v, oldest, where)
		}
	}
	return is.lines()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
