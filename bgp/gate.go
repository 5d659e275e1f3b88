package bgp

import (
	"fmt"
	"net/netip"
	"slices"
)

// GateOptions tune Gate.
type GateOptions struct {
	// RequireAPIVIP also requires every control-plane node to announce the
	// API VIP (once the control plane is up).
	RequireAPIVIP bool
}

// GateNode is one node's verdict.
type GateNode struct {
	Node     string   `json:"node"`
	OK       bool     `json:"ok"`
	Sessions []string `json:"sessions"` // "core-a1 Established 00:10:02"
	Problems []string `json:"problems,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// GateReport is the BGP verification gate: every expected session
// Established and every expected prefix announced.
type GateReport struct {
	OK    bool       `json:"ok"`
	Nodes []GateNode `json:"nodes"`
}

// Gate checks collected agent statuses against the plan. statuses and
// errs are by node name (a node missing from both counts as unreachable).
func Gate(p *Plan, statuses map[string]*Status, errs map[string]error, o GateOptions) *GateReport {
	rep := &GateReport{OK: true}
	for _, n := range p.Nodes {
		g := GateNode{Node: n.Name, Sessions: []string{}}
		st := statuses[n.Name]
		switch {
		case errs[n.Name] != nil:
			g.Problems = append(g.Problems, "no status: "+errs[n.Name].Error())
		case st == nil:
			g.Problems = append(g.Problems, "no status collected")
		default:
			g.Problems, g.Notes = checkNode(p, &n, st, o)
			for _, s := range st.Sessions {
				g.Sessions = append(g.Sessions, fmt.Sprintf("%s %s %s", s.Name, s.State, s.Uptime()))
			}
		}
		g.OK = len(g.Problems) == 0
		rep.OK = rep.OK && g.OK
		rep.Nodes = append(rep.Nodes, g)
	}
	return rep
}

func checkNode(p *Plan, n *Node, st *Status, o GateOptions) (problems, notes []string) {
	if st.ASN != n.ASN {
		problems = append(problems, fmt.Sprintf("runs AS %d, the inventory derives %d: re-run the BGP phase", st.ASN, n.ASN))
	}
	for _, pe := range n.Peers {
		i := slices.IndexFunc(st.Sessions, func(s Session) bool { return s.Address == pe.Address.String() })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("no session with %s (%s)", pe.Name, pe.Address))
		case !st.Sessions[i].Established():
			problems = append(problems, fmt.Sprintf("session with %s (%s) is %s", pe.Name, pe.Address, st.Sessions[i].State))
		}
	}
	has := func(prefix netip.Prefix) bool {
		return slices.ContainsFunc(st.Announced, func(a Announced) bool { return a.Prefix == prefix.String() })
	}
	if !has(n.PodCIDR) {
		problems = append(problems, fmt.Sprintf("does not announce its pod CIDR %s", n.PodCIDR))
	}
	if n.ControlPlane && p.APIVIP.IsValid() && !has(netip.PrefixFrom(p.APIVIP, 32)) {
		msg := fmt.Sprintf("does not announce the API VIP %s (kube-apiserver not ready)", p.APIVIP)
		if o.RequireAPIVIP {
			problems = append(problems, msg)
		} else {
			notes = append(notes, msg)
		}
	}
	return problems, notes
}
