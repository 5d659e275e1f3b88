package inventory

import (
	"net/netip"
	"sort"
	"strings"
)

// Plan is everything tricenter derives from a valid inventory before it
// touches a host: placement, IP plan and per-node facts. Its JSON form is the
// contract of `tricenter plan -o json`.
type Plan struct {
	Cluster      string    `json:"cluster"`
	Summary      Summary   `json:"summary"`
	Centers      []PlanCtr `json:"centers"`
	Etcd         EtcdPlan  `json:"etcd"`
	ControlPlane []Member  `json:"controlPlane"`
	Stacked      bool      `json:"stackedControlPlane"`
	// Snapshots is the snapshot schedule and its stores (nil: none).
	Snapshots *SnapshotPlan `json:"snapshots,omitempty"`
	IPAM      PlanIPAM      `json:"ipam"`
	Warnings  []Problem     `json:"warnings"`
	placement *Placement    `json:"-"`
	ips       *IPPlan       `json:"-"`
}

// Summary counts what the inventory holds.
type Summary struct {
	Sites   int `json:"sites"`
	Centers int `json:"centers"`
	Racks   int `json:"racks"`
	Servers int `json:"servers"`
}

// PlanCtr is one center with its racks.
type PlanCtr struct {
	Name  string     `json:"name"`
	Site  string     `json:"site"`
	Role  CenterRole `json:"role"`
	Racks []PlanRack `json:"racks"`
}

// PlanRack is one rack with its servers.
type PlanRack struct {
	Name    string     `json:"name"`
	TOR     string     `json:"tor"`
	Subnet  string     `json:"subnet"`
	Servers []PlanNode `json:"servers"`
}

// PlanNode is one server's derived facts.
type PlanNode struct {
	Name         string `json:"name"`
	Roles        []Role `json:"roles"`
	Address      string `json:"address"`
	PodCIDR      string `json:"podCIDR"`
	Etcd         bool   `json:"etcd"`
	ControlPlane bool   `json:"controlPlane"`
}

// PlanIPAM is the cluster-wide IP plan.
type PlanIPAM struct {
	PodCIDR             string   `json:"podCIDR"`
	PodMaskSize         int      `json:"podMaskSize"`
	ServiceCIDR         string   `json:"serviceCIDR"`
	KubernetesServiceIP string   `json:"kubernetesServiceIP"`
	ClusterDNSIP        string   `json:"clusterDNSIP"`
	APIVIP              string   `json:"apiVIP"`
	LoadBalancerPool    []string `json:"loadBalancerPool"`
	LoadBalancerFree    uint64   `json:"loadBalancerFree"`
}

// Placement returns the placement the plan was built from.
func (p *Plan) Placement() *Placement { return p.placement }

// IPs returns the IP plan the plan was built from.
func (p *Plan) IPs() *IPPlan { return p.ips }

// BuildPlan validates the inventory and derives the plan. prior (may be
// nil) keeps earlier allocations in place.
func BuildPlan(c *Cluster, lines *Lines, prior *Prior) (*Plan, error) {
	v := c.validate(lines, prior)
	res := v.r
	if err := res.Err(); err != nil {
		return nil, err
	}
	pl, ips := v.placed, v.ips
	p := &Plan{
		Cluster:      c.Metadata.Name,
		Etcd:         pl.Etcd,
		ControlPlane: pl.ControlPlane,
		Stacked:      pl.Stacked,
		Warnings:     res.Warnings,
		placement:    pl,
		ips:          ips,
	}
	if sched := c.Spec.Etcd.Snapshots; sched != nil {
		// A (degraded) placement with no member in one site cannot keep
		// a snapshot out of the site it came from: apply refuses to
		// schedule it, the plan warns.
		if stores, err := c.SnapshotStores(pl.Etcd.Members); err != nil {
			p.Warnings = append(p.Warnings, Problem{Path: "spec.etcd.snapshots", Message: strings.TrimPrefix(err.Error(), "spec.etcd.snapshots: ") + ": apply will refuse to schedule them"})
		} else {
			p.Snapshots = &SnapshotPlan{Every: sched.Every, Keep: sched.KeepOrDefault(), Stores: stores}
			for _, st := range stores {
				if st.Note != "" {
					p.Warnings = append(p.Warnings, Problem{Path: "spec.etcd.snapshots", Message: st.Server.Name + ": " + st.Note})
				}
			}
		}
	}
	p.Summary = Summary{Sites: len(c.Spec.Sites), Centers: len(c.Spec.Centers), Racks: len(c.Spec.Racks)}
	for _, ctr := range c.Spec.Centers {
		pc := PlanCtr{Name: ctr.Name, Site: ctr.Site, Role: ctr.Role, Racks: []PlanRack{}}
		for _, r := range c.Spec.Racks {
			if r.Center != ctr.Name {
				continue
			}
			pr := PlanRack{Name: r.Name, TOR: r.TOR.Name, Subnet: r.Subnet, Servers: []PlanNode{}}
			for _, s := range r.Servers {
				pr.Servers = append(pr.Servers, PlanNode{
					Name: s.Name, Roles: s.Roles, Address: s.SSH.Address,
					PodCIDR:      ips.PodCIDRs[s.Name].String(),
					Etcd:         pl.IsEtcdMember(s.Name),
					ControlPlane: pl.IsControlPlane(s.Name),
				})
				p.Summary.Servers++
			}
			pc.Racks = append(pc.Racks, pr)
		}
		p.Centers = append(p.Centers, pc)
	}
	n := c.Spec.Network
	p.IPAM = PlanIPAM{
		PodCIDR: n.PodCIDR, PodMaskSize: n.PodMaskSize, ServiceCIDR: n.ServiceCIDR,
		KubernetesServiceIP: ips.KubernetesServiceIP.String(),
		ClusterDNSIP:        ips.ClusterDNSIP.String(),
		APIVIP:              ips.APIVIP.String(),
		LoadBalancerPool:    prefixStrings(ips.LoadBalancerPool),
		LoadBalancerFree:    ips.LoadBalancerFree,
	}
	return p, nil
}

// Prior returns what an apply of this plan records, for the next run.
func (p *Plan) Prior() *Prior {
	pr := &Prior{PodCIDRs: map[string]string{}}
	for name, cidr := range p.ips.PodCIDRs {
		pr.PodCIDRs[name] = cidr.String()
	}
	for _, m := range p.Etcd.Members {
		pr.EtcdMembers = append(pr.EtcdMembers, m.Name)
	}
	sort.Strings(pr.EtcdMembers)
	return pr
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
