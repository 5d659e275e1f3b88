package upgrade

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Binary names, as the servers' probe reports them (ProbeTarget.Name).
const (
	BinEtcd              = "etcd"
	BinAPIServer         = "kube-apiserver"
	BinControllerManager = "kube-controller-manager"
	BinScheduler         = "kube-scheduler"
	BinKubelet           = "kubelet"
	BinKubeProxy         = "kube-proxy"
)

// Observation is the cluster as observed now. The versions come from the
// components themselves (etcd's status, kube-apiserver's /version, the
// kubelet's Node); Hosts holds what the servers said about the binaries
// that have no API telling their version.
type Observation struct {
	// Etcd is the version each etcd member reports, by server.
	Etcd map[string]inventory.Version `json:"etcd"`
	// EtcdLeader is the member leading now ("" when unknown).
	EtcdLeader string `json:"etcdLeader,omitempty"`
	// APIServer is the version each control-plane server's kube-apiserver
	// reports, by server.
	APIServer map[string]inventory.Version `json:"apiServer"`
	// Kubelet is the version each server's Node reports, by server.
	Kubelet map[string]inventory.Version `json:"kubelet"`
	// Nodes are the Nodes' readiness and cordons, by server.
	Nodes map[string]NodeState `json:"nodes"`
	// Hosts are the servers' answers to ProbeCommand, by server; a server
	// that was not asked is absent.
	Hosts map[string]HostProbe `json:"hosts,omitempty"`
	// Unobserved says why a component could not be observed, by
	// "component on server".
	Unobserved map[string]string `json:"unobserved,omitempty"`
	// Problems are what is not healthy now (etcd members, API servers):
	// the plan shows them; each step checks what it relies on itself.
	Problems []string `json:"problems,omitempty"`
}

// NewObservation returns an empty observation.
func NewObservation() *Observation {
	return &Observation{Etcd: map[string]inventory.Version{}, APIServer: map[string]inventory.Version{},
		Kubelet: map[string]inventory.Version{}, Nodes: map[string]NodeState{}, Hosts: map[string]HostProbe{},
		Unobserved: map[string]string{}}
}

// Unobservable records that a component could not be observed.
func (o *Observation) Unobservable(component, server, why string) {
	if o.Unobserved == nil {
		o.Unobserved = map[string]string{}
	}
	o.Unobserved[component+" on "+server] = why
}

// NodeState is a Node's readiness (by the one health rule) and cordon.
type NodeState struct {
	Ready         bool   `json:"ready"`
	Unschedulable bool   `json:"unschedulable,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// HostProbe is one server's answer to ProbeCommand, by binary name.
type HostProbe map[string]Binary

// Binary is one binary on a server and the unit that runs it.
type Binary struct {
	// Installed is the version of the binary on disk (zero: absent, or its
	// --version said none).
	Installed inventory.Version `json:"installed"`
	// Running says the unit has a main process.
	Running bool `json:"running"`
	// Stale says that process runs a binary replaced since it started: a
	// restart is due.
	Stale bool `json:"stale,omitempty"`
}

// Runs is the version the unit runs: the installed one while its process
// runs it.
func (b Binary) Runs() (inventory.Version, bool) {
	if !b.Running || b.Stale || b.Installed == (inventory.Version{}) {
		return inventory.Version{}, false
	}
	return b.Installed, true
}

// ProbeTarget is a binary ProbeCommand asks about: its path on the server
// and the systemd unit that runs it.
type ProbeTarget struct{ Name, Path, Unit string }

// ProbeCommand is a read-only shell command that prints, per target, one
// line: name, the first line of `PATH --version`, the unit's main PID and
// what that process runs (readlink /proc/PID/exe, which ends in
// " (deleted)" once the binary was replaced under it). It must run as
// root (another user's /proc/PID/exe is not readable).
func ProbeCommand(targets []ProbeTarget) string {
	var b strings.Builder
	b.WriteString(`probe() { v=; [ -x "$2" ] && v=$("$2" --version 2>/dev/null | head -n1); ` +
		`pid=$(systemctl show -p MainPID --value "$3" 2>/dev/null); exe=; ` +
		`if [ -n "$pid" ] && [ "$pid" != 0 ]; then exe=$(readlink "/proc/$pid/exe" 2>/dev/null); fi; ` +
		`printf '%s\t%s\t%s\t%s\n' "$1" "$v" "${pid:-0}" "$exe"; }`)
	for _, t := range targets {
		fmt.Fprintf(&b, "; probe %s %s %s", shell.Quote(t.Name), shell.Quote(t.Path), shell.Quote(t.Unit))
	}
	b.WriteString("; true")
	return b.String()
}

var reSemver = regexp.MustCompile(`v?(\d+)\.(\d+)\.(\d+)`)

// VersionIn finds the first vMAJOR.MINOR.PATCH (the v optional) in s: the
// "Kubernetes v1.37.2" of kubelet --version, the "etcd Version: 3.6.16" of
// etcd's, the gitVersion "v1.37.2" of /version or the "3.6.16" of etcd's
// status. A pre-release or build suffix is ignored.
func VersionIn(s string) (inventory.Version, bool) {
	m := reSemver.FindStringSubmatch(s)
	if m == nil {
		return inventory.Version{}, false
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(m[i+1])
		if err != nil {
			return inventory.Version{}, false
		}
		n[i] = v
	}
	return inventory.Version{Major: n[0], Minor: n[1], Patch: n[2]}, true
}

// ParseProbe reads ProbeCommand's output. Lines it does not understand
// are an error (the command is ours: a different answer means a different
// shell or a broken server).
func ParseProbe(out string) (HostProbe, error) {
	p := HostProbe{}
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f := strings.Split(l, "\t")
		if len(f) != 4 || f[0] == "" {
			return nil, fmt.Errorf("unexpected probe line %q", l)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(f[2]))
		if err != nil || pid < 0 {
			return nil, fmt.Errorf("unexpected probe line %q: main PID %q", l, f[2])
		}
		var b Binary
		b.Installed, _ = VersionIn(f[1])
		b.Running = pid > 0
		b.Stale = b.Running && strings.HasSuffix(strings.TrimSpace(f[3]), "(deleted)")
		p[f[0]] = b
	}
	return p, nil
}

// unobservedList is Unobserved as sorted lines.
func (o *Observation) unobservedList() []string {
	var out []string
	for k, v := range o.Unobserved {
		out = append(out, k+": "+v)
	}
	sort.Strings(out)
	return out
}
