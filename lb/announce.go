package lb

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Preference says which centers the routers should send a Service's
// traffic to while they can serve it.
type Preference string

const (
	// PreferProduction: the production center while it has a ready
	// endpoint, then the local-DR center, then the remote-DR center.
	PreferProduction Preference = "production"
	// PreferLocal: the local site's two centers alike, the remote-DR
	// center only when neither can serve.
	PreferLocal Preference = "local"
	// PreferNone: every center alike (ECMP over every announcing node).
	PreferNone Preference = "none"
)

// AnnotationPrefer sets a Service's Preference; without it the
// inventory's default applies.
const AnnotationPrefer = "lb.tricenter.io/prefer"

// ParsePreference reads an AnnotationPrefer value.
func ParsePreference(s string) (Preference, error) {
	switch p := Preference(s); p {
	case PreferProduction, PreferLocal, PreferNone:
		return p, nil
	}
	return "", fmt.Errorf("%s %q is unknown: use production, local or none", AnnotationPrefer, s)
}

// Prepends is how many times a node in a center of role r prepends its
// own AS to a Service's route under p: the routers prefer the shortest
// AS path, so the preferred centers draw the traffic while they announce
// and the others take it over by themselves when they stop.
func Prepends(p Preference, r inventory.CenterRole) int {
	switch p {
	case PreferProduction:
		switch r {
		case inventory.RoleLocalDR:
			return 1
		case inventory.RoleRemoteDR:
			return 2
		}
	case PreferLocal:
		if r == inventory.RoleRemoteDR {
			return 1
		}
	}
	return 0
}

// Node is the node an agent runs on.
type Node struct {
	Name string
	// Center is the node's center (its topology.kubernetes.io/zone) and
	// Role that center's role.
	Center string
	Role   inventory.CenterRole
	// Worker is true for a node with the worker role: the nodes that
	// announce a Cluster-policy Service unless it chooses others.
	Worker bool
}

// Endpoint is one endpoint of a Service as its EndpointSlices show it:
// its node, the node's center (the endpoint's zone) and readiness.
type Endpoint struct {
	Node   string
	Center string
	Ready  bool
}

// ServiceView is what an agent knows of a LoadBalancer Service.
type ServiceView struct {
	Key string
	// Addrs are the Service's addresses (status.loadBalancer.ingress).
	Addrs []netip.Addr
	// Local is externalTrafficPolicy: Local: only nodes with a ready
	// endpoint of their own announce (the client's address is kept).
	Local bool
	// Nodes, when set, are the nodes that announce a Cluster-policy
	// Service instead of every worker.
	Nodes     []string
	Prefer    Preference
	Endpoints []Endpoint
}

// Route is one /32 a node announces, with its AS-path prepends.
type Route struct {
	Addr     netip.Addr
	Prepends int
	Service  string
}

// Announcements are the routes n announces for svcs.
//   - A Service with no ready endpoint anywhere is announced by no node.
//   - Local (externalTrafficPolicy: Local): the nodes with a ready endpoint
//     of their own.
//   - Cluster: the Service's chosen nodes (every worker by default); with
//     a preference, only those in a center that has a ready endpoint, so
//     that a center left without one stops drawing traffic it would send
//     across the WAN, and the routers move to the next center by
//     themselves.
//
// Each route carries the prepends n's center owes the preference.
func Announcements(n Node, svcs []ServiceView) []Route {
	var out []Route
	for _, s := range svcs {
		ready := slices.ContainsFunc(s.Endpoints, func(e Endpoint) bool { return e.Ready })
		if len(s.Addrs) == 0 || !ready {
			continue
		}
		var announce bool
		switch {
		case s.Local:
			announce = slices.ContainsFunc(s.Endpoints, func(e Endpoint) bool { return e.Ready && e.Node == n.Name })
		case len(s.Nodes) > 0:
			announce = slices.Contains(s.Nodes, n.Name)
		default:
			announce = n.Worker
		}
		if announce && !s.Local && s.Prefer != PreferNone && s.Prefer != "" {
			announce = slices.ContainsFunc(s.Endpoints, func(e Endpoint) bool { return e.Ready && e.Center == n.Center })
		}
		if !announce {
			continue
		}
		for _, a := range s.Addrs {
			out = append(out, Route{Addr: a, Prepends: Prepends(s.Prefer, n.Role), Service: s.Key})
		}
	}
	slices.SortFunc(out, func(x, y Route) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return x.Prepends - y.Prepends
	})
	// One route per address: a shared address is announced once, with the
	// fewest prepends any of its Services asks for.
	return slices.CompactFunc(out, func(x, y Route) bool { return x.Addr == y.Addr })
}
