package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// FRROptions tune RenderFRR.
type FRROptions struct {
	// Password is the cluster's resolved network.bgp.password secret;
	// required when the inventory sets one. It is not written as is: each
	// rack's peer group gets RackPassword(Password, rack).
	Password string
}

// ErrUnknownRouter is returned for a router name the plan does not have.
var ErrUnknownRouter = errors.New("unknown router")

// RenderFRR renders the bgpd configuration of one TOR or core router.
//
// Every node that peers with the router is a neighbor of its own, by its
// address, in its rack's peer group; the router talks to no one else (no
// listen ranges). The peer group carries what a rack's sessions share: the
// remote AS (the rack ASN, or "external" with per-node ASNs), passive mode
// (nodes connect), the timers, ebgp-multihop when the router is not on
// the rack subnet, and the rack's TCP-MD5 password (RackPassword of
// FRROptions.Password and the rack name), so a password read on one rack
// does not open another rack's sessions.
//
// Each node's inbound route-map accepts only what that node may announce:
// its own pod CIDR (exactly), the API VIP as a /32 from control-plane
// nodes, and /32s of the load-balancer pools (loadBalancerVIPs lie in
// them) from every node, the API VIP excepted when it lies in a pool. The
// peer group's own inbound route-map accepts nothing, the outbound one
// sends nodes nothing, and ECMP spreads traffic across nodes and racks.
//
// A node that is added to the inventory (or whose pod CIDR moves) is only
// accepted once the router runs a configuration rendered again after the
// change. The output is deterministic: a complete bgpd configuration (bgpd
// -f FILE) and also the "router bgp" part of an integrated frr.conf. With a
// password it holds the racks' passwords in clear: write it with mode 0600.
func RenderFRR(p *Plan, router string, o FRROptions) ([]byte, error) {
	r, ok := p.Router(router)
	if !ok {
		names := p.RouterNames()
		if len(names) == 0 {
			return nil, fmt.Errorf("%w %q: no router peers with any node (check network.bgp.mode, racks[].tor and sites[].coreRouters)", ErrUnknownRouter, router)
		}
		return nil, fmt.Errorf("%w %q: nodes peer with %s", ErrUnknownRouter, router, strings.Join(names, ", "))
	}
	switch {
	case !p.Password.IsZero() && o.Password == "":
		return nil, fmt.Errorf("router %s: network.bgp.password is set but no password was given to render", router)
	case p.Password.IsZero() && o.Password != "":
		// The nodes would connect without one (Plan.AgentPassword).
		return nil, fmt.Errorf("router %s: a password was given to render but network.bgp.password is not set", router)
	}
	// The router's nodes, group by group, each with its own filter name.
	type member struct {
		node   *Node
		policy string
	}
	members := make([][]member, len(r.Groups))
	byAddr := map[netip.Addr]string{}
	byPolicy := map[string]string{}
	for gi, g := range r.Groups {
		for _, name := range g.Nodes {
			n, ok := p.Node(name)
			if !ok {
				return nil, fmt.Errorf("router %s: peer group %s lists node %s, which the plan does not have", router, g.Name, name)
			}
			if prev, dup := byAddr[n.Address]; dup {
				return nil, fmt.Errorf("router %s: nodes %s and %s both have address %s", router, prev, n.Name, n.Address)
			}
			byAddr[n.Address] = n.Name
			pol := nodePolicyName(p.Cluster, n.Name)
			if prev, dup := byPolicy[pol]; dup {
				return nil, fmt.Errorf("router %s: nodes %s and %s both get filter %s: rename one of them", router, prev, n.Name, pol)
			}
			byPolicy[pol] = n.Name
			members[gi] = append(members[gi], member{n, pol})
		}
	}

	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	in, out := policyName(p.Cluster, "IN"), policyName(p.Cluster, "OUT")

	w("frr defaults datacenter")
	w("hostname %s", r.Name)
	w("!")
	w("! Rendered by tricenter from the inventory of cluster %q for %s router %s (site %s).", p.Cluster, r.Kind, r.Name, r.Site)
	w("! Re-render with `tricenter bgp render-frr` instead of editing, and load it before")
	w("! an apply that adds servers: the router peers only with the nodes listed here.")
	w("!")
	// Inbound filters: exactly what each node may announce.
	w("! What each node may announce: its own pod CIDR, the API VIP (control-plane")
	w("! nodes), /32s of the load-balancer pool.")
	for _, ms := range members {
		for _, m := range ms {
			seq := 10
			pl := func(action string, prefix netip.Prefix, ge int) {
				if ge > prefix.Bits() {
					w("ip prefix-list %s seq %d %s %s ge %d le %d", m.policy, seq, action, prefix, ge, ge)
				} else {
					w("ip prefix-list %s seq %d %s %s", m.policy, seq, action, prefix)
				}
				seq += 10
			}
			pl("permit", m.node.PodCIDR, 0)
			if p.APIVIP.IsValid() {
				vip := netip.PrefixFrom(p.APIVIP, 32)
				switch {
				case m.node.ControlPlane:
					pl("permit", vip, 0)
				case p.inLoadBalancerPool(p.APIVIP):
					pl("deny", vip, 0)
				}
			}
			for _, pool := range p.LoadBalancerPool {
				pl("permit", pool, 32)
			}
			w("route-map %s permit 10", m.policy)
			w(" match ip address prefix-list %s", m.policy)
			w("exit")
			w("!")
		}
	}
	w("! A session without a filter of its own accepts nothing; nodes are sent nothing.")
	w("route-map %s deny 10", in)
	w("exit")
	w("!")
	w("route-map %s deny 10", out)
	w("exit")
	w("!")
	w("router bgp %d", r.ASN)
	w(" bgp router-id %s", r.Address)
	w(" no bgp ebgp-requires-policy")
	w(" no bgp default ipv4-unicast")
	w(" no bgp network import-check")
	w(" bgp bestpath as-path multipath-relax")
	if p.GracefulRestart {
		w(" bgp graceful-restart")
	}
	for gi, g := range r.Groups {
		w(" neighbor %s peer-group", g.Name)
		if g.ASN != 0 {
			w(" neighbor %s remote-as %d", g.Name, g.ASN)
		} else {
			w(" neighbor %s remote-as external", g.Name)
		}
		w(" neighbor %s description rack %s, center %s: %d node(s)", g.Name, g.Rack, g.Center, len(g.Nodes))
		w(" neighbor %s passive", g.Name)
		if p.HoldSeconds > 0 {
			w(" neighbor %s timers %d %d", g.Name, p.KeepaliveSeconds, p.HoldSeconds)
		}
		if o.Password != "" {
			w(" neighbor %s password %s", g.Name, RackPassword(o.Password, g.Rack))
		}
		if g.Multihop {
			w(" neighbor %s ebgp-multihop %d", g.Name, MultihopTTL)
		}
		for _, m := range members[gi] {
			w(" neighbor %s peer-group %s", m.node.Address, g.Name)
			role := ""
			if m.node.ControlPlane {
				role = ", control plane"
			}
			w(" neighbor %s description node %s%s", m.node.Address, m.node.Name, role)
		}
	}
	w(" !")
	w(" address-family ipv4 unicast")
	w("  maximum-paths 64")
	for gi, g := range r.Groups {
		w("  neighbor %s activate", g.Name)
		w("  neighbor %s route-map %s in", g.Name, in)
		w("  neighbor %s route-map %s out", g.Name, out)
		for _, m := range members[gi] {
			w("  neighbor %s route-map %s in", m.node.Address, m.policy)
		}
	}
	w(" exit-address-family")
	w("exit")
	w("!")
	return b.Bytes(), nil
}

// inLoadBalancerPool reports whether a lies in one of the load-balancer
// pools (whose /32s every node may announce).
func (p *Plan) inLoadBalancerPool(a netip.Addr) bool {
	for _, pool := range p.LoadBalancerPool {
		if pool.Contains(a) {
			return true
		}
	}
	return false
}

func policyName(cluster, dir string) string {
	return "TRICENTER-" + clusterWord(cluster) + "-NODES-" + dir
}

// nodePolicyName names a node's inbound prefix-list and route-map.
func nodePolicyName(cluster, node string) string {
	return "TRICENTER-" + clusterWord(cluster) + "-NODE-" + strings.ToUpper(notWord.ReplaceAllString(node, "_")) + "-IN"
}

func clusterWord(cluster string) string {
	c := strings.ToUpper(notWord.ReplaceAllString(cluster, "_"))
	if c == "" {
		c = "CLUSTER"
	}
	return c
}
