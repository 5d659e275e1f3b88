package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Defaults for what Derive puts into node agent configurations.
const (
	// DefaultAPIHealthURL is the local kube-apiserver readiness endpoint that
	// gates the API VIP.
	DefaultAPIHealthURL = "https://127.0.0.1:6443/readyz"
	// DefaultAPIHealthCA verifies the apiserver's serving certificate.
	DefaultAPIHealthCA = "/etc/kubernetes/pki/ca.crt"
	// DefaultProxyHealthURL is kube-proxy's health endpoint that gates
	// LoadBalancer VIPs.
	DefaultProxyHealthURL = "http://127.0.0.1:10256/healthz"
	// DefaultPasswordFile is where the installer puts the TCP MD5 password
	// on each node (mode 0600).
	DefaultPasswordFile = "/etc/tricenter/bgp/password"
	// DefaultConfigFile is the agent's configuration file on a node.
	DefaultConfigFile = "/etc/tricenter/bgp/agent.yaml"
	// DefaultStatusSocket is the agent's local status socket.
	DefaultStatusSocket = "/run/tricenter-bgp/status.sock"
	// MultihopTTL is used for sessions to a router outside the node's
	// rack subnet.
	MultihopTTL = 8
)

// Community local-data-1 values.
const (
	CommunityCenter = 1
	CommunityRack   = 2
)

// RouterKind says where a router sits.
type RouterKind string

// Router kinds.
const (
	RouterTOR  RouterKind = "tor"
	RouterCore RouterKind = "core"
)

// Plan is every node's BGP view and every router's view of its nodes.
type Plan struct {
	Cluster string
	// ASNBase is network.bgp.asnBase (the communities' global admin).
	ASNBase          uint32
	KeepaliveSeconds int
	HoldSeconds      int
	GracefulRestart  bool
	// Password is the TCP MD5 secret reference (zero: no password). No
	// session uses the secret itself: each rack's sessions use
	// RackPassword(secret, rack).
	Password inventory.SecretRef
	// PodCIDR and PodMaskSize are the cluster's pod range and block size
	// (routers accept from each node its own block, Node.PodCIDR).
	PodCIDR     netip.Prefix
	PodMaskSize int
	// APIVIP is the Kubernetes API VIP (may be invalid when unset).
	APIVIP netip.Addr
	// LoadBalancerPool bounds what routers accept as service VIPs: its
	// /32s from every node (the API VIP only from control-plane nodes).
	LoadBalancerPool []netip.Prefix
	// LoadBalancerVIPs are announced by every node (static list).
	LoadBalancerVIPs []netip.Addr
	Nodes            []Node
	Routers          []Router
	Warnings         []string
}

// Node is one node's sessions and announcements.
type Node struct {
	Name     string
	Rack     string
	Center   string
	Site     string
	Address  netip.Addr
	ASN      uint32
	RouterID netip.Addr
	Peers    []Peer
	PodCIDR  netip.Prefix
	// CenterRole is the role of the node's center (LoadBalancer
	// Services' AS-path prepends depend on it).
	CenterRole inventory.CenterRole
	// ControlPlane nodes announce the API VIP while /readyz is OK.
	ControlPlane bool
	// Worker nodes announce Cluster-policy LoadBalancer Services.
	Worker      bool
	Communities []LargeCommunity
}

// Peer is a router a node peers with.
type Peer struct {
	Name     string
	Address  netip.Addr
	ASN      uint32
	Kind     RouterKind
	Multihop bool
}

// Router is a TOR or core router and the nodes that peer with it.
type Router struct {
	Name    string
	Kind    RouterKind
	Site    string
	Address netip.Addr
	ASN     uint32
	Groups  []PeerGroup
}

// PeerGroup is one rack's nodes as seen by a router: one remote ASN (0
// means "external": per-node ASNs) and one TCP-MD5 password (RackPassword)
// for the rack; RenderFRR makes each node a neighbor of its own in it.
type PeerGroup struct {
	Name   string
	Rack   string
	Center string
	// Range is the rack subnet, where the nodes' addresses lie (the
	// JSON of `tricenter bgp show` still calls it listenRange).
	Range    netip.Prefix
	ASN      uint32
	Nodes    []string
	Multihop bool
}

// LargeCommunity is an RFC 8092 large community.
type LargeCommunity struct{ Global, Data1, Data2 uint32 }

func (c LargeCommunity) String() string { return fmt.Sprintf("%d:%d:%d", c.Global, c.Data1, c.Data2) }

// ParseLargeCommunity reads "a:b:c".
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	var c LargeCommunity
	var rest string
	n, _ := fmt.Sscanf(s, "%d:%d:%d%s", &c.Global, &c.Data1, &c.Data2, &rest)
	if n == 3 && rest == "" && strings.Count(s, ":") == 2 {
		return c, nil
	}
	return LargeCommunity{}, fmt.Errorf("large community %q: want GLOBAL:DATA1:DATA2 (three 32-bit numbers)", s)
}

// Options tune Derive.
type Options struct {
	// LoadBalancerVIPs adds to spec.network.loadBalancerVIPs: service VIPs
	// every node announces while kube-proxy is healthy. Each must lie in
	// network.loadBalancerPool.
	LoadBalancerVIPs []netip.Addr
	// Placement says which servers run the control plane and so announce
	// the API VIP; nil means inventory.Place(c, Prior).
	Placement *inventory.Placement
	// Prior is the last apply's state, for inventory.Place.
	Prior *inventory.Prior
}

// ErrInvalid is wrapped by every Derive error caused by the inventory.
var ErrInvalid = errors.New("invalid BGP settings")

// Derive computes every node's sessions and announcements and every
// router's peer groups. ip is the result of inventory.AllocateIPs. Every
// problem is reported at once, each naming the inventory field and what to
// do.
func Derive(c *inventory.Cluster, ip *inventory.IPPlan, opts Options) (*Plan, error) {
	b := c.Spec.Network.BGP
	p := &Plan{
		Cluster:          c.Metadata.Name,
		ASNBase:          b.ASNBase,
		KeepaliveSeconds: b.KeepaliveSeconds,
		HoldSeconds:      b.HoldSeconds,
		GracefulRestart:  b.GracefulRestart == nil || *b.GracefulRestart,
		Password:         b.Password,
		PodMaskSize:      c.Spec.Network.PodMaskSize,
		APIVIP:           ip.APIVIP,
		LoadBalancerPool: ip.LoadBalancerPool,
	}
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, path, fmt.Sprintf(format, args...)))
	}
	if pc, err := netip.ParsePrefix(c.Spec.Network.PodCIDR); err == nil {
		p.PodCIDR = pc.Masked()
	} else {
		bad("spec.network.podCIDR", "%q is not a CIDR such as 10.244.0.0/16", c.Spec.Network.PodCIDR)
	}
	if p.PodMaskSize == 0 {
		p.PodMaskSize = inventory.DefaultPodMaskSize
	}
	if b.Mode != inventory.BGPModeTOR && b.Mode != inventory.BGPModeCore {
		bad("spec.network.bgp.mode", "is %q: use tor or core", b.Mode)
	}
	if b.NodeASN != inventory.ASNPerRack && b.NodeASN != inventory.ASNPerNode {
		bad("spec.network.bgp.nodeASN", "is %q: use per-rack or per-node", b.NodeASN)
	}
	k, err := asnSpace(b.ASNBase)
	if err != nil {
		bad("spec.network.bgp.asnBase", "%v", err)
	} else if !isPrivateASN(b.ASNBase) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("spec.network.bgp.asnBase %d is not a private ASN (64512-65534, 4200000000-4294967294): derived node ASNs may clash with real networks", b.ASNBase))
	}
	switch {
	case b.HoldSeconds < 3 || b.HoldSeconds > 65535:
		bad("spec.network.bgp.holdSeconds", "is %d: use 3..65535 seconds (default %d)", b.HoldSeconds, inventory.DefaultHoldSeconds)
	case b.KeepaliveSeconds < 1:
		bad("spec.network.bgp.keepaliveSeconds", "is %d: use at least 1 second (default %d)", b.KeepaliveSeconds, inventory.DefaultKeepaliveSeconds)
	case b.KeepaliveSeconds >= b.HoldSeconds:
		bad("spec.network.bgp.keepaliveSeconds", "is %d, not below holdSeconds %d: use about a third of the hold time", b.KeepaliveSeconds, b.HoldSeconds)
	}
	if !b.Password.IsZero() && b.Password.Env != "" && b.Password.File != "" {
		bad("spec.network.bgp.password", "sets both env and file: set one")
	}
	vips := append([]netip.Addr(nil), opts.LoadBalancerVIPs...)
	for i, s := range c.Spec.Network.LoadBalancerVIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			bad(fmt.Sprintf("spec.network.loadBalancerVIPs[%d]", i), "%q is not an IP address", s)
			continue
		}
		if !slices.Contains(vips, a) {
			vips = append(vips, a)
		}
	}
	for _, v := range vips {
		ok := false
		for _, pool := range ip.LoadBalancerPool {
			ok = ok || pool.Contains(v)
		}
		switch {
		case !v.Is4():
			bad("LoadBalancer VIP "+v.String(), "is not an IPv4 address")
		case !ok:
			bad("LoadBalancer VIP "+v.String(), "lies outside spec.network.loadBalancerPool %v: pick an address from the pool", ip.LoadBalancerPool)
		case v == ip.APIVIP:
			bad("LoadBalancer VIP "+v.String(), "is the API VIP: pick another address")
		default:
			p.LoadBalancerVIPs = append(p.LoadBalancerVIPs, v)
		}
	}
	pl := opts.Placement
	if pl == nil {
		var err error
		if pl, err = inventory.Place(c, opts.Prior); err != nil {
			errs = append(errs, fmt.Errorf("placing the control plane (it announces the API VIP): %w", err))
			pl = &inventory.Placement{}
		}
	}

	// Routers by name, built while walking the racks.
	routers := map[string]*Router{}
	var order []string
	addRouter := func(r Router) *Router {
		if x, ok := routers[r.Name]; ok {
			return x
		}
		routers[r.Name] = &r
		order = append(order, r.Name)
		return &r
	}
	rackIdx := map[string]int{}
	for i := range c.Spec.Racks {
		rackIdx[c.Spec.Racks[i].Name] = i
	}
	rackASNOwner := map[uint32]string{}
	nodeASNOwner := map[uint32]string{}
	routerNames := map[string]string{}
	for si, s := range c.Spec.Sites {
		for ri, r := range s.CoreRouters {
			path := fmt.Sprintf("spec.sites[%d].coreRouters[%d]", si, ri)
			if prev, dup := routerNames[r.Name]; dup {
				bad(path+".name", "%q is also used by %s: router names must be unique", r.Name, prev)
			}
			routerNames[r.Name] = path
		}
	}
	for i, r := range c.Spec.Racks {
		if r.TOR.ASN != 0 && r.TOR.Name != "" {
			path := fmt.Sprintf("spec.racks[%d].tor", i)
			if prev, dup := routerNames[r.TOR.Name]; dup {
				bad(path+".name", "%q is also used by %s: router names must be unique", r.TOR.Name, prev)
			}
			routerNames[r.TOR.Name] = path
		}
	}

	hostsByRack := map[string][]inventory.Host{}
	for _, h := range c.Hosts() {
		hostsByRack[h.Rack.Name] = append(hostsByRack[h.Rack.Name], h)
	}
	for ri := range c.Spec.Racks {
		r := &c.Spec.Racks[ri]
		rpath := fmt.Sprintf("spec.racks[%d]", ri)
		hosts := hostsByRack[r.Name]
		subnet, err := netip.ParsePrefix(r.Subnet)
		if err != nil || !subnet.Addr().Is4() {
			bad(rpath+".subnet", "%q is not an IPv4 CIDR such as 10.1.2.0/24", r.Subnet)
			continue
		}
		subnet = subnet.Masked()
		var center *inventory.Center
		var site *inventory.Site
		if len(hosts) > 0 {
			center, site = hosts[0].Center, hosts[0].Site
		} else if center = c.Center(r.Center); center != nil {
			site = c.Site(center.Site)
		}
		if center == nil {
			bad(rpath+".center", "%q names no center in spec.centers", r.Center)
			continue
		}
		if site == nil {
			bad(rpath+".center", "center %q names site %q, which is not in spec.sites", center.Name, center.Site)
			continue
		}

		// The routers this rack's nodes peer with.
		var peers []Peer
		useTOR := b.Mode == inventory.BGPModeTOR && r.TOR.ASN != 0
		switch {
		case useTOR:
			a, err := netip.ParseAddr(r.TOR.Address)
			if err != nil || !a.Is4() {
				bad(rpath+".tor.address", "%q is not an IPv4 address: the TOR has ASN %d, so nodes peer with it and need its address", r.TOR.Address, r.TOR.ASN)
				continue
			}
			if r.TOR.Name == "" {
				bad(rpath+".tor.name", "is empty: name the TOR (render-frr --router takes it)")
				continue
			}
			peers = append(peers, Peer{Name: r.TOR.Name, Address: a, ASN: r.TOR.ASN, Kind: RouterTOR, Multihop: !subnet.Contains(a)})
		default:
			if len(site.CoreRouters) == 0 && len(hosts) > 0 {
				if b.Mode == inventory.BGPModeTOR {
					bad(rpath+".tor.asn", "is not set, and site %q has no coreRouters: give the TOR an ASN and address, or list the site's core routers", site.Name)
				} else {
					bad("spec.sites[name="+site.Name+"].coreRouters", "is empty but network.bgp.mode is core and rack %s has servers: list the site's core routers (name, address, asn)", r.Name)
				}
				continue
			}
			for ci, cr := range site.CoreRouters {
				cpath := fmt.Sprintf("spec.sites[name=%s].coreRouters[%d]", site.Name, ci)
				a, err := netip.ParseAddr(cr.Address)
				if err != nil || !a.Is4() {
					bad(cpath+".address", "%q is not an IPv4 address", cr.Address)
					continue
				}
				if cr.ASN == 0 {
					bad(cpath+".asn", "is not set: give core router %s its ASN", cr.Name)
					continue
				}
				if cr.Name == "" {
					bad(cpath+".name", "is empty: name the core router (render-frr --router takes it)")
					continue
				}
				peers = append(peers, Peer{Name: cr.Name, Address: a, ASN: cr.ASN, Kind: RouterCore, Multihop: !subnet.Contains(a)})
			}
		}
		if len(peers) == 0 {
			continue
		}

		// Rack ASN (per-rack scheme).
		var rackASN uint32
		if b.NodeASN == inventory.ASNPerRack {
			switch {
			case r.NodeASN != 0:
				rackASN = r.NodeASN
			case k > 0:
				rackASN = deriveASN(b.ASNBase, k, rackNumber(subnet))
			}
			if prev, dup := rackASNOwner[rackASN]; dup && rackASN != 0 {
				if r.NodeASN != 0 {
					bad(rpath+".nodeASN", "%d is also rack %s's ASN: racks need distinct ASNs", rackASN, prev)
				} else {
					bad(rpath+".nodeASN", "the ASN derived from subnet %s (%d) is also rack %s's: set nodeASN on one of them", subnet, rackASN, prev)
				}
			}
			rackASNOwner[rackASN] = r.Name
			for _, pe := range peers {
				if pe.ASN == rackASN {
					bad(rpath+".nodeASN", "rack ASN %d equals router %s's ASN: nodes and routers must be in different ASNs (eBGP)", rackASN, pe.Name)
				}
			}
		} else if r.NodeASN != 0 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s.nodeASN is ignored: network.bgp.nodeASN is per-node", rpath))
		}

		// The routers' view of this rack.
		group := PeerGroup{
			Name: groupName(r.Name), Rack: r.Name, Center: center.Name, Range: subnet, ASN: rackASN,
		}
		for _, h := range hosts {
			group.Nodes = append(group.Nodes, h.Name)
		}
		for _, pe := range peers {
			rt := addRouter(Router{Name: pe.Name, Kind: pe.Kind, Site: site.Name, Address: pe.Address, ASN: pe.ASN})
			g := group
			g.Multihop = pe.Multihop
			rt.Groups = append(rt.Groups, g)
		}

		// Nodes.
		comms := []LargeCommunity{
			{b.ASNBase, CommunityCenter, centerID(center.Role)},
			{b.ASNBase, CommunityRack, u32(subnet.Addr())},
		}
		for hi, h := range hosts {
			hpath := fmt.Sprintf("%s.servers[%d]", rpath, hi)
			a, err := netip.ParseAddr(h.SSH.Address)
			if err != nil || !a.Is4() {
				bad(hpath+".ssh.address", "%q is not an IPv4 address: server %s needs its node address for BGP", h.SSH.Address, h.Name)
				continue
			}
			if !subnet.Contains(a) {
				bad(hpath+".ssh.address", "%s lies outside rack %s's subnet %s: the node address must be on the rack subnet", a, r.Name, subnet)
				continue
			}
			pod, ok := ip.PodCIDR(h.Name)
			if !ok {
				bad(hpath, "server %s has no pod CIDR from IPAM: run AllocateIPs on the same inventory", h.Name)
				continue
			}
			asn := rackASN
			if b.NodeASN == inventory.ASNPerNode && k > 0 {
				asn = deriveASN(b.ASNBase, k, u32(a))
				if prev, dup := nodeASNOwner[asn]; dup {
					bad(hpath+".ssh.address", "the ASN derived from %s (%d) is also server %s's: use per-rack ASNs or node addresses within one /%d", a, asn, prev, 32-k)
				}
				nodeASNOwner[asn] = h.Name
				for _, pe := range peers {
					if pe.ASN == asn {
						bad(hpath+".ssh.address", "the ASN derived for server %s (%d) equals router %s's ASN: change the router's ASN or asnBase", h.Name, asn, pe.Name)
					}
				}
			}
			p.Nodes = append(p.Nodes, Node{
				Name: h.Name, Rack: r.Name, Center: center.Name, Site: site.Name,
				Address: a, ASN: asn, RouterID: a, Peers: peers, PodCIDR: pod, CenterRole: center.Role,
				ControlPlane: pl.IsControlPlane(h.Name), Worker: h.HasRole(inventory.RoleWorker), Communities: comms,
			})
		}
	}
	for _, n := range order {
		p.Routers = append(p.Routers, *routers[n])
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// centerID numbers a center by its role: stable, and three at most.
func centerID(r inventory.CenterRole) uint32 {
	switch r {
	case inventory.RoleProduction:
		return 1
	case inventory.RoleLocalDR:
		return 2
	case inventory.RoleRemoteDR:
		return 3
	}
	return 0
}

var notWord = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// groupName is the FRR peer-group name of a rack's nodes.
func groupName(rack string) string {
	return "NODES-" + notWord.ReplaceAllString(rack, "_")
}

// Node finds a node by name.
func (p *Plan) Node(name string) (*Node, bool) {
	for i := range p.Nodes {
		if p.Nodes[i].Name == name {
			return &p.Nodes[i], true
		}
	}
	return nil, false
}

// Router finds a router by name.
func (p *Plan) Router(name string) (*Router, bool) {
	for i := range p.Routers {
		if p.Routers[i].Name == name {
			return &p.Routers[i], true
		}
	}
	return nil, false
}

// RouterNames lists the routers, sorted.
func (p *Plan) RouterNames() []string {
	out := make([]string, len(p.Routers))
	for i, r := range p.Routers {
		out[i] = r.Name
	}
	sort.Strings(out)
	return out
}

// NodesOf lists the nodes that peer with a router.
func (p *Plan) NodesOf(router string) []*Node {
	var out []*Node
	for i := range p.Nodes {
		for _, pe := range p.Nodes[i].Peers {
			if pe.Name == router {
				out = append(out, &p.Nodes[i])
			}
		}
	}
	return out
}
