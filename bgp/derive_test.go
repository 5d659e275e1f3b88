package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestASNSpace(t *testing.T) {
	for _, tc := range []struct {
		base uint32
		k    int
	}{
		{4200000000, 26}, // 94,967,295 values: 2^26 fits, 2^27 does not
		{64512, 9},       // 1023 values
		{65000, 9},       // 535 values
		{4294967294, 0},  // one value
	} {
		k, err := asnSpace(tc.base)
		if err != nil || k != tc.k {
			t.Errorf("asnSpace(%d) = %d, %v; want %d", tc.base, k, err, tc.k)
		}
		if top := deriveASN(tc.base, k, ^uint32(0)); !isPrivateASN(top) {
			t.Errorf("base %d: highest derived ASN %d is not private", tc.base, top)
		}
	}
	if _, err := asnSpace(0); err == nil {
		t.Error("asnSpace(0): want an error")
	}
}

func TestDeriveCoreMode(t *testing.T) {
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	n1, _ := p.Node("n1")
	n2, _ := p.Node("n2")
	n3, _ := p.Node("n3")
	// per-rack: asnBase + the rack subnet's network number (198.18.33.0/24 -> 0xC61221).
	if want := uint32(4200000000 + 0xC61221); n1.ASN != want || n2.ASN != want {
		t.Errorf("rack r1 ASNs %d, %d; want %d", n1.ASN, n2.ASN, want)
	}
	if n3.ASN != 4200000000+0xC61222 {
		t.Errorf("rack r2 ASN %d", n3.ASN)
	}
	if n1.RouterID != netip.MustParseAddr("198.18.33.10") || n1.Address != n1.RouterID {
		t.Errorf("n1 router ID %s, address %s", n1.RouterID, n1.Address)
	}
	if len(n1.Peers) != 1 || n1.Peers[0].Name != "core-a1" || n1.Peers[0].ASN != 65000 || !n1.Peers[0].Multihop || n1.Peers[0].Kind != RouterCore {
		t.Errorf("n1 peers %+v", n1.Peers)
	}
	if !n1.ControlPlane || !n2.ControlPlane || n3.ControlPlane {
		t.Errorf("control plane: n1 %v n2 %v n3 %v", n1.ControlPlane, n2.ControlPlane, n3.ControlPlane)
	}
	if got := []string{n1.Communities[0].String(), n1.Communities[1].String()}; got[0] != "4200000000:1:1" || got[1] != "4200000000:2:3323076864" {
		t.Errorf("n1 communities %v", got)
	}
	if n3.Communities[0].Data2 != 2 {
		t.Errorf("n3 (local-dr) center community %v", n3.Communities[0])
	}
	r, ok := p.Router("core-a1")
	if !ok || len(r.Groups) != 2 {
		t.Fatalf("core-a1: %+v", r)
	}
	if g := r.Groups[0]; g.Name != "NODES-r1" || g.Range.String() != "198.18.33.0/24" || g.ASN != n1.ASN || len(g.Nodes) != 2 {
		t.Errorf("core-a1 group 0 %+v", g)
	}
	if b, ok := p.Router("core-b1"); !ok || len(b.Groups) != 1 || b.Groups[0].Rack != "r3" {
		t.Errorf("core-b1: %+v", b)
	}
	if p.RestartSeconds() != 6 {
		t.Errorf("restart time %d, want hold - keepalive = 6", p.RestartSeconds())
	}
}

func TestDeriveTORPerNode(t *testing.T) {
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "x")
	_, p := loadPlan(t, "testdata/tor.yaml", Options{})
	m1, _ := p.Node("m1")
	m2, _ := p.Node("m2")
	// per-node: asnBase + the low 26 bits of the node address.
	a := u32(netip.MustParseAddr("198.18.36.10"))
	if want := 4200000000 + a&(1<<26-1); m1.ASN != want {
		t.Errorf("m1 ASN %d, want %d", m1.ASN, want)
	}
	if m1.ASN == m2.ASN {
		t.Error("per-node ASNs are equal")
	}
	if pe := m1.Peers[0]; pe.Name != "tor1" || pe.ASN != 65010 || pe.Multihop || pe.Kind != RouterTOR {
		t.Errorf("m1 peer %+v", pe)
	}
	r, _ := p.Router("tor1")
	if len(r.Groups) != 1 || r.Groups[0].ASN != 0 {
		t.Errorf("tor1 groups %+v: want one with remote-as external", r.Groups)
	}
}

// ASNs come from addresses, never list positions: inserting a rack in
// front, adding servers and removing another rack changes no ASN.
func TestASNsStableAcrossInventoryChanges(t *testing.T) {
	for _, scheme := range []inventory.ASNScheme{inventory.ASNPerRack, inventory.ASNPerNode} {
		c, _ := loadPlan(t, "testdata/core.yaml", Options{})
		c.Spec.Network.BGP.NodeASN = scheme
		before := derive(t, c)
		// A new rack first in the list, a new server in r1, rack r3 gone.
		c.Spec.Racks = append([]inventory.Rack{{
			Name: "r0", Center: "dc1", Subnet: "198.18.39.0/24", TOR: inventory.TOR{Name: "r0-tor", Gateway: "198.18.39.1"},
			Servers: []inventory.Server{{Name: "n0", Roles: []inventory.Role{inventory.RoleWorker}, SSH: inventory.SSH{Address: "198.18.39.10"}}},
		}}, c.Spec.Racks[:2]...)
		c.Spec.Racks[1].Servers = append(c.Spec.Racks[1].Servers, inventory.Server{Name: "n9", Roles: []inventory.Role{inventory.RoleWorker}, SSH: inventory.SSH{Address: "198.18.33.99"}})
		after := derive(t, c)
		for _, name := range []string{"n1", "n2", "n3"} {
			a, _ := before.Node(name)
			b, _ := after.Node(name)
			if a.ASN != b.ASN {
				t.Errorf("%s: %s ASN moved from %d to %d", scheme, name, a.ASN, b.ASN)
			}
		}
	}
}

func derive(t *testing.T, c *inventory.Cluster) *Plan {
	t.Helper()
	ip, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl := &inventory.Placement{} // placement is not what these tests are about
	p, err := Derive(c, ip, Options{Placement: pl})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeriveErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *inventory.Cluster)
		opts   Options
		want   string
	}{
		{"rack ASN collides", func(c *inventory.Cluster) { c.Spec.Racks[0].NodeASN, c.Spec.Racks[1].NodeASN = 4200000001, 4200000001 },
			Options{}, "spec.racks[1].nodeASN: 4200000001 is also rack r1's ASN"},
		{"rack ASN equals router ASN", func(c *inventory.Cluster) { c.Spec.Racks[0].NodeASN = 65000 },
			Options{}, "spec.racks[0].nodeASN: rack ASN 65000 equals router core-a1's ASN"},
		{"hold below keepalive", func(c *inventory.Cluster) { c.Spec.Network.BGP.KeepaliveSeconds = 10 },
			Options{}, "spec.network.bgp.keepaliveSeconds: is 10, not below holdSeconds 9"},
		{"hold too short", func(c *inventory.Cluster) { c.Spec.Network.BGP.HoldSeconds = 2 },
			Options{}, "spec.network.bgp.holdSeconds: is 2"},
		{"no core routers", func(c *inventory.Cluster) { c.Spec.Sites[0].CoreRouters = nil },
			Options{}, "coreRouters: is empty but network.bgp.mode is core"},
		{"node outside its rack", func(c *inventory.Cluster) { c.Spec.Racks[0].Servers[0].SSH.Address = "198.18.34.99" },
			Options{}, "spec.racks[0].servers[0].ssh.address: 198.18.34.99 lies outside rack r1's subnet"},
		{"LB VIP outside pool", func(*inventory.Cluster) {},
			Options{LoadBalancerVIPs: []netip.Addr{netip.MustParseAddr("198.18.47.1")}}, "LoadBalancer VIP 198.18.47.1: lies outside spec.network.loadBalancerPool"},
		{"LB VIP is the API VIP", func(*inventory.Cluster) {},
			Options{LoadBalancerVIPs: []netip.Addr{netip.MustParseAddr("198.18.46.1")}}, "is the API VIP"},
		{"TOR mode without TOR ASN", func(c *inventory.Cluster) {
			c.Spec.Network.BGP.Mode = inventory.BGPModeTOR
			c.Spec.Sites[0].CoreRouters = nil
		}, Options{}, "spec.racks[0].tor.asn: is not set, and site \"site-a\" has no coreRouters"},
		{"bad asnBase", func(c *inventory.Cluster) { c.Spec.Network.BGP.ASNBase = 4294967295 },
			Options{}, "spec.network.bgp.asnBase: is 4294967295, above the last usable ASN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := loadPlan(t, "testdata/core.yaml", Options{})
			tc.mutate(c)
			ip, err := inventory.AllocateIPs(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.opts.Placement == nil {
				tc.opts.Placement = &inventory.Placement{}
			}
			_, err = Derive(c, ip, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

// In TOR mode, a rack whose TOR has no ASN falls back to its site's core
// routers.
func TestDeriveTORModeFallsBackToCore(t *testing.T) {
	c, _ := loadPlan(t, "testdata/core.yaml", Options{})
	c.Spec.Network.BGP.Mode = inventory.BGPModeTOR
	c.Spec.Racks[1].TOR.ASN, c.Spec.Racks[1].TOR.Address = 65020, "198.18.34.1"
	p := derive(t, c)
	n1, _ := p.Node("n1")
	n3, _ := p.Node("n3")
	if n1.Peers[0].Name != "core-a1" || n3.Peers[0].Name != "r2-tor" || n3.Peers[0].Multihop {
		t.Errorf("n1 peers %+v, n3 peers %+v", n1.Peers, n3.Peers)
	}
}

func TestParseLargeCommunity(t *testing.T) {
	c, err := ParseLargeCommunity("4200000000:2:3323076864")
	if err != nil || c != (LargeCommunity{4200000000, 2, 3323076864}) {
		t.Errorf("got %v, %v", c, err)
	}
	for _, bad := range []string{"", "1:2", "1:2:3:4", "1:2:x", "1:2:3x", "4294967296:1:1"} {
		if _, err := ParseLargeCommunity(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestDeriveLoadBalancerVIPsFromInventory(t *testing.T) {
	c, lines, err := inventory.Load("testdata/core.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pool := netip.MustParsePrefix(c.Spec.Network.LoadBalancerPool[0])
	vip := pool.Addr().Next().Next().Next()
	c.Spec.Network.LoadBalancerVIPs = []string{vip.String()}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	ip, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same VIP from the inventory and from Options is announced once.
	p, err := Derive(c, ip, Options{LoadBalancerVIPs: []netip.Addr{vip}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.LoadBalancerVIPs) != 1 || p.LoadBalancerVIPs[0] != vip {
		t.Fatalf("LoadBalancer VIPs %v, want [%s]", p.LoadBalancerVIPs, vip)
	}
}
