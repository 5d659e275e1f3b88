package installer

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/apivip"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcdsnap"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
)

// Preflight is the pseudo-component of the checks every apply runs first;
// its phases cannot be selected or skipped.
const Preflight Component = "preflight"

// Phase IDs of the engine's own phases (the components' are in their
// packages).
const (
	PhaseReachable    = "preflight/reachable"
	PhaseAuthorities  = "preflight/authorities"
	PhaseCertificates = "preflight/certificates"
	PhaseBGPAgent     = "bgp/agent"
	GateEtcd          = "gates/etcd"
	GateBGP           = "gates/bgp"
	GateControlPlane  = "gates/control-plane"
	GateNodes         = "gates/nodes"
	GateDataplane     = "gates/dataplane"
	GateLoadBalancer  = "gates/load-balancer"
)

// PhaseInfo describes one phase of the workflow.
type PhaseInfo struct {
	// ID is stable: --only, --skip-phases and the provider's components
	// and skip_phases take it.
	ID        string    `json:"id"`
	Component Component `json:"component"`
	// Description says what the phase does, in a line.
	Description string `json:"description"`
	// Needs are the phases of the same run this one relies on (what they
	// learn from the servers; they change nothing): selecting this one
	// selects them, and skipping one of them while this one runs is
	// refused.
	Needs []string `json:"needs,omitempty"`
	// Always marks the preflight phases every apply runs.
	Always bool `json:"always,omitempty"`
	// Verifies is the component a gate checks (gates only).
	Verifies Component `json:"verifies,omitempty"`
}

// workflow is the one ordered list of what an apply runs. Each component's
// phases are built by its package when the run reaches it; a test checks
// that the phases built carry exactly these IDs, in this order.
var workflow = []PhaseInfo{
	{ID: PhaseReachable, Component: Preflight, Always: true,
		Description: "wait until every server of the run accepts SSH (only with --wait-reachable / wait_reachable)"},
	{ID: PhaseAuthorities, Component: Preflight, Always: true,
		Description: "refuse to run when the servers trust other certificate authorities than the state holds"},
	{ID: PhaseCertificates, Component: Preflight, Always: true,
		Description: "create the cluster's certificate authorities and etcd certificates that are missing (locally, in the state)"},

	{ID: etcd.PhasePreflight, Component: Etcd,
		Description: "check each member's clock, disk, ports and what etcd it already runs"},
	{ID: etcd.PhaseDiscover, Component: Etcd, Needs: []string{etcd.PhasePreflight},
		Description: "read the current membership and plan the changes (bootstrap, add, remove, one at a time)"},
	{ID: etcd.PhaseInstall, Component: Etcd, Needs: []string{etcd.PhaseDiscover},
		Description: "upload etcd and etcdctl, certificates, configuration and the unit"},
	{ID: etcd.PhaseRestore, Component: Etcd, Needs: []string{etcd.PhaseInstall},
		Description: "tricenter restore only: stop every member, move its data aside and rebuild it from the chosen snapshot for the new membership"},
	{ID: etcd.PhaseStart, Component: Etcd, Needs: []string{etcd.PhaseDiscover},
		Description: "start a new cluster's members together, or restart changed members one at a time"},
	{ID: etcd.PhaseMembership, Component: Etcd, Needs: []string{etcd.PhaseDiscover},
		Description: "membership changes, one at a time, each keeping quorum (learner, catch up, promote)"},
	{ID: etcd.PhaseRetire, Component: Etcd, Needs: []string{etcd.PhaseDiscover},
		Description: "stop and wipe members removed from the placement"},
	{ID: etcd.PhaseHealth, Component: Etcd, Needs: []string{etcd.PhaseDiscover},
		Description: "wait until every planned member is healthy and a leader is elected; move a leader left outside production to a production member"},
	{ID: etcdsnap.ID, Component: Etcd,
		Description: "schedule sealed snapshots (spec.etcd.snapshots) on one member per center, each taken from the other site; remove the schedule elsewhere"},

	{ID: PhaseBGPAgent, Component: BGP,
		Description: "install the BGP agent (tricenter-bgp), its configuration and unit on every selected server"},

	{ID: controlplane.PhasePreflight, Component: ControlPlane,
		Description: "check clocks, ports, disk and the etcd client certificate on the control-plane servers"},
	{ID: controlplane.PhaseCertificates, Component: ControlPlane, Needs: []string{controlplane.PhasePreflight},
		Description: "issue and install the API server, controller-manager and scheduler certificates"},
	{ID: controlplane.PhaseBinaries, Component: ControlPlane, Needs: []string{controlplane.PhasePreflight},
		Description: "upload kube-apiserver, kube-controller-manager, kube-scheduler and kubectl"},
	{ID: controlplane.PhaseConfiguration, Component: ControlPlane, Needs: []string{controlplane.PhasePreflight},
		Description: "write kubeconfigs, configuration and units"},
	{ID: controlplane.PhaseStart, Component: ControlPlane, Needs: []string{controlplane.PhasePreflight},
		Description: "start servers where nothing runs yet together, restart changed components one server at a time; each waits for /readyz"},
	{ID: apivip.PhaseID, Component: ControlPlane,
		Description: "hold the API VIP on lo of every control-plane server (announced by its BGP agent while /readyz answers)"},

	{ID: node.IDPreflight, Component: Nodes,
		Description: "refuse a server the kubelet would refuse: cgroup v1 unless spec.kubernetes.failCgroupV1 is false"},
	{ID: node.IDContainerd, Component: Nodes, Needs: []string{node.IDPreflight},
		Description: "install containerd 2, runc and the CNI plugins from the artifacts, with tricenter's unit and configuration, and start containerd"},
	{ID: node.IDImages, Component: Nodes, Needs: []string{node.IDPreflight},
		Description: "import the pause, CoreDNS and probe images, and on control-plane servers the load-balancer controller's (nothing is pulled)"},
	{ID: node.IDCNI, Component: Nodes, Needs: []string{node.IDPreflight},
		Description: "the node's bridge configuration for its pod CIDR and the kernel settings routed pods need"},
	{ID: node.IDKubelet, Component: Nodes, Needs: []string{node.IDPreflight},
		Description: "install kubelet with its certificates and configuration, and start it"},
	{ID: node.IDKubeProxy, Component: Nodes, Needs: []string{node.IDPreflight},
		Description: "install kube-proxy with its kubeconfig and start it"},

	{ID: addons.IDCoreDNS, Component: Addons, Description: "server-side apply CoreDNS (RBAC, ConfigMap, Deployment, Service)"},
	{ID: addons.IDNodeLabels, Component: Addons, Description: "label each Node with its center, rack and hardware"},
	{ID: addons.IDLoadBalancer, Component: Addons,
		Description: "server-side apply the load-balancer controller (namespace, RBAC, ConfigMap of the pool, Deployment) and the BGP agents' read-only RBAC"},

	{ID: GateEtcd, Component: Gates, Verifies: Etcd, Description: "etcd healthy as planned: every member, one leader"},
	{ID: GateBGP, Component: Gates, Verifies: BGP, Description: "BGP sessions Established and the routes announced"},
	{ID: GateControlPlane, Component: Gates, Verifies: ControlPlane,
		Description: "/readyz on every control-plane server and through the API VIP"},
	{ID: GateNodes, Component: Gates, Verifies: Nodes,
		Description: "every Node Ready now (fresh heartbeat, the server's boot id) with its center and rack"},
	{ID: GateDataplane, Component: Gates, Verifies: Addons,
		Description: "pods on two racks reach each other without NAT, by DNS and through a Service (runs when something changed, or with --verify)"},
	{ID: GateLoadBalancer, Component: Gates, Verifies: Addons,
		Description: "the load-balancer controller available with a leader, every BGP agent watching the LoadBalancer Services, each Service with ready endpoints announced"},
}

// Workflow is the one ordered list of phases an apply runs.
func Workflow() []PhaseInfo {
	out := make([]PhaseInfo, len(workflow))
	for i, p := range workflow {
		p.Needs = slices.Clone(p.Needs)
		out[i] = p
	}
	return out
}

// PhaseIDs lists every phase ID of the workflow, in order.
func PhaseIDs() []string {
	out := make([]string, len(workflow))
	for i, p := range workflow {
		out[i] = p.ID
	}
	return out
}

// SelectableIDs lists the names --only and --skip-phases take: the
// components, then the phase IDs that are not preflight.
func SelectableIDs() []string {
	var out []string
	for _, c := range Components() {
		out = append(out, string(c))
	}
	for _, p := range workflow {
		if !p.Always {
			out = append(out, p.ID)
		}
	}
	return out
}

func phaseInfo(id string) (PhaseInfo, bool) {
	for _, p := range workflow {
		if p.ID == id {
			return p, true
		}
	}
	return PhaseInfo{}, false
}

// Selection is the set of phases a run covers.
type Selection struct {
	ids map[string]bool
}

// Has reports whether the phase with this ID runs.
func (s Selection) Has(id string) bool {
	if p, ok := phaseInfo(id); ok && p.Always {
		return true
	}
	return s.ids[id]
}

// HasComponent reports whether any phase of c (its gate excluded) runs.
func (s Selection) HasComponent(c Component) bool {
	for _, p := range workflow {
		if p.Component == c && s.ids[p.ID] {
			return true
		}
	}
	return false
}

// Components lists the components with a phase in the selection, in order.
func (s Selection) Components() []Component {
	var out []Component
	for _, c := range Components() {
		if s.HasComponent(c) {
			out = append(out, c)
		}
	}
	return out
}

// IDs lists the selected phases, in workflow order (preflight included).
func (s Selection) IDs() []string {
	var out []string
	for _, p := range workflow {
		if s.Has(p.ID) {
			out = append(out, p.ID)
		}
	}
	return out
}

// expand turns a name given to --only or --skip-phases into phase IDs: a
// component is its phases and the gate that verifies it.
func expand(name string) ([]string, error) {
	if slices.Contains(Components(), Component(name)) {
		var out []string
		for _, p := range workflow {
			if p.Component == Component(name) || p.Verifies == Component(name) {
				out = append(out, p.ID)
			}
		}
		return out, nil
	}
	p, ok := phaseInfo(name)
	if !ok {
		return nil, fmt.Errorf("unknown component or phase %q: use a component (%s) or a phase ID (tricenter apply --list-phases lists them)",
			name, joinComponents(Components()))
	}
	if p.Always {
		return nil, fmt.Errorf("phase %q runs on every apply and cannot be selected or skipped", name)
	}
	return []string{p.ID}, nil
}

func splitNames(names []string) []string {
	var out []string
	for _, n := range names {
		for _, x := range strings.Split(n, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// Select resolves --only (components or phase IDs; empty: everything) and
// --skip-phases (the same names) into the phases a run covers. A phase
// given to --only brings the phases it Needs (they only read). Select
// refuses unknown names, preflight phases, an empty result and skipping a
// phase another selected phase Needs.
func Select(only, skip []string) (Selection, error) {
	s := Selection{ids: map[string]bool{}}
	onlyNames, skipNames := splitNames(only), splitNames(skip)
	if len(onlyNames) == 0 {
		for _, p := range workflow {
			if !p.Always {
				s.ids[p.ID] = true
			}
		}
	}
	for _, n := range onlyNames {
		ids, err := expand(n)
		if err != nil {
			return Selection{}, fmt.Errorf("only: %w", err)
		}
		for _, id := range ids {
			s.ids[id] = true
		}
	}
	// A selected phase brings the read-only phases it learns from.
	for changed := true; changed; {
		changed = false
		for _, p := range workflow {
			if !s.ids[p.ID] {
				continue
			}
			for _, need := range p.Needs {
				if !s.ids[need] {
					s.ids[need], changed = true, true
				}
			}
		}
	}
	for _, n := range skipNames {
		ids, err := expand(n)
		if err != nil {
			return Selection{}, fmt.Errorf("skip phases: %w", err)
		}
		for _, id := range ids {
			delete(s.ids, id)
		}
	}
	if len(s.ids) == 0 {
		return Selection{}, fmt.Errorf("no phase left to run (only %s, skip %s)", strings.Join(onlyNames, ","), strings.Join(skipNames, ","))
	}
	for _, p := range workflow {
		if !s.ids[p.ID] {
			continue
		}
		for _, need := range p.Needs {
			if !s.ids[need] {
				return Selection{}, fmt.Errorf("phase %s needs %s in the same run (what it learns from the servers): select %s too, or skip %s as well",
					p.ID, need, need, p.ID)
			}
		}
	}
	return s, nil
}

// CheckSelection validates --only and --skip-phases names without running
// anything (the provider's validators use it).
func CheckSelection(only, skip []string) error {
	_, err := Select(only, skip)
	return err
}
