package inventory_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func perCenter(p *inventory.Placement) [3]int {
	return [3]int{p.Etcd.PerCenter["dc1"], p.Etcd.PerCenter["dc2"], p.Etcd.PerCenter["dc3"]}
}

func TestPlacementSplits(t *testing.T) {
	cases := []struct {
		members int
		etcd    [3]int
		want    [3]int
	}{
		{3, [3]int{1, 1, 1}, [3]int{1, 1, 1}},
		{5, [3]int{2, 2, 1}, [3]int{2, 2, 1}},
		{7, [3]int{3, 3, 1}, [3]int{3, 3, 1}},
		{0, [3]int{2, 2, 1}, [3]int{2, 2, 1}}, // auto picks 5
		{0, [3]int{1, 1, 1}, [3]int{1, 1, 1}}, // auto falls back to 3
		{5, [3]int{3, 1, 2}, [3]int{2, 1, 2}}, // local-dr short: closest valid split
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d-%v", tc.members, tc.etcd), func(t *testing.T) {
			o := invgen.Default()
			o.Racks = [3]int{3, 3, 3}
			o.EtcdPerCenter = tc.etcd
			c := invgen.Generate(o)
			c.Spec.Etcd.Members = inventory.EtcdMembers(tc.members)
			c.SetDefaults()
			if res := c.Validate(nil); !res.OK() {
				t.Fatal(res.Err())
			}
			p, err := inventory.Place(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := perCenter(p); got != tc.want {
				t.Fatalf("split %v, want %v", got, tc.want)
			}
			if !p.Etcd.SurvivesCenterLoss || !p.Etcd.LocalSiteQuorum || p.Etcd.Degraded {
				t.Fatalf("invariants: %+v", p.Etcd)
			}
			assertRackSpread(t, c, p)
		})
	}
}

// assertRackSpread: no two members behind one TOR while the member's center
// has an eligible server in a rack without a member.
func assertRackSpread(t *testing.T, c *inventory.Cluster, p *inventory.Placement) {
	t.Helper()
	perRack := map[string]int{}
	for _, m := range p.Etcd.Members {
		perRack[m.Rack]++
	}
	for rack, n := range perRack {
		if n < 2 {
			continue
		}
		ctr := c.Rack(rack).Center
		for _, h := range c.Hosts() {
			if h.Center.Name == ctr && perRack[h.Rack.Name] == 0 && (h.HasRole(inventory.RoleEtcd) || h.HasRole(inventory.RoleControlPlane)) {
				t.Fatalf("%d members behind rack %s while %s in empty rack %s was eligible", n, rack, h.Name, h.Rack.Name)
			}
		}
	}
}

func TestPlacementPrefersEtcdRoleAndDerivesTimers(t *testing.T) {
	c := base()
	// A control-plane-only server comes first in dc1-r03 but etcd-role
	// servers must win.
	c.Spec.Racks[2].Servers[0].Roles = []inventory.Role{inventory.RoleControlPlane}
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Etcd.Members {
		h, _ := c.Host(m.Name)
		if !h.HasRole(inventory.RoleEtcd) {
			t.Fatalf("member %s has no etcd role while etcd-role servers were available", m.Name)
		}
	}
	if p.Stacked || len(p.ControlPlane) != 6 {
		t.Fatalf("control plane: stacked=%v %d servers", p.Stacked, len(p.ControlPlane))
	}
	if tm := p.Etcd.Timers; tm.HeartbeatMs != 100 || tm.ElectionTimeoutMs != 1000 || tm.MaxRTTMs != 21 {
		t.Fatalf("timers %+v", tm)
	}
	// A slow remote center raises the heartbeat to its RTT.
	c.Spec.Centers[2].RTTMs["dc1"] = 143
	p, _ = inventory.Place(c, nil)
	if tm := p.Etcd.Timers; tm.HeartbeatMs != 150 || tm.ElectionTimeoutMs != 1500 {
		t.Fatalf("timers with 143 ms RTT: %+v", tm)
	}
	c.Spec.Etcd.HeartbeatMs, c.Spec.Etcd.ElectionTimeoutMs = 250, 3000
	p, _ = inventory.Place(c, nil)
	if tm := p.Etcd.Timers; tm.HeartbeatMs != 250 || tm.ElectionTimeoutMs != 3000 || tm.Source != "override" {
		t.Fatalf("override: %+v", tm)
	}
}

func TestFailureDomains(t *testing.T) {
	p, err := inventory.Place(base(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, fd := range p.Etcd.FailureDomains {
		got[fd.Kind+"/"+fd.Name] = fd.QuorumKept
		if fd.Kind == "site" && fd.Name == "site-a" && fd.Note == "" {
			t.Error("losing site-a has no recovery note")
		}
	}
	want := map[string]bool{"center/dc1": true, "center/dc2": true, "center/dc3": true, "site/site-a": false, "site/site-b": true, "rack/dc1-r01": true}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s quorumKept=%v (present %v), want %v", k, g, ok, v)
		}
	}
	if len(p.Etcd.FailureDomains) != 3+2+8 {
		t.Errorf("%d failure domains, want 13", len(p.Etcd.FailureDomains))
	}
}

// randomCluster builds a random three-center topology: some centers may
// lack eligible servers, so a valid placement may not exist.
func randomCluster(r *rand.Rand) *inventory.Cluster {
	o := invgen.Default()
	for k := range 3 {
		o.Racks[k] = 1 + r.IntN(4)
		o.EtcdPerCenter[k] = r.IntN(4)
	}
	o.ServersPerRack = 1 + r.IntN(6)
	c := invgen.Generate(o)
	// Sprinkle extra etcd / control-plane roles.
	for i := range c.Spec.Racks {
		for j := range c.Spec.Racks[i].Servers {
			switch r.IntN(10) {
			case 0:
				c.Spec.Racks[i].Servers[j].Roles = []inventory.Role{inventory.RoleEtcd}
			case 1:
				c.Spec.Racks[i].Servers[j].Roles = []inventory.Role{inventory.RoleControlPlane, inventory.RoleWorker}
			}
		}
	}
	c.Spec.Etcd.Members = inventory.EtcdMembers([]int{0, 3, 5, 7}[r.IntN(4)])
	c.SetDefaults()
	return c
}

func eligible(c *inventory.Cluster) [3]int {
	var n [3]int
	for _, h := range c.Hosts() {
		if h.HasRole(inventory.RoleEtcd) || h.HasRole(inventory.RoleControlPlane) {
			n[map[string]int{"dc1": 0, "dc2": 1, "dc3": 2}[h.Center.Name]]++
		}
	}
	return n
}

// TestPlacementProperties: over random topologies, whenever a valid split
// exists the placement keeps every invariant, and Place fails only when
// none exists.
func TestPlacementProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	placed, refused := 0, 0
	for i := range 2000 {
		c := randomCluster(r)
		caps := eligible(c)
		n := int(c.Spec.Etcd.Members)
		p, err := inventory.Place(c, nil)
		possible := splitExists(n, caps)
		if err != nil {
			refused++
			if possible {
				t.Fatalf("case %d: refused although a valid split exists (n=%d caps=%v): %v", i, n, caps, err)
			}
			continue
		}
		placed++
		n = p.Etcd.Count
		if !splitExists(n, caps) {
			t.Fatalf("case %d: placed %d members although no valid split exists (caps=%v)", i, n, caps)
		}
		q := n/2 + 1
		got := perCenter(p)
		if got[0]+got[1]+got[2] != n || len(p.Etcd.Members) != n {
			t.Fatalf("case %d: %d members for n=%d", i, len(p.Etcd.Members), n)
		}
		for k, x := range got {
			if x >= q || n-x < q || x > caps[k] {
				t.Fatalf("case %d: split %v breaks an invariant (q=%d caps=%v)", i, got, q, caps)
			}
		}
		if got[0]+got[1] < q {
			t.Fatalf("case %d: local site has no quorum: %v", i, got)
		}
		seen := map[string]bool{}
		for _, m := range p.Etcd.Members {
			if seen[m.Name] {
				t.Fatalf("case %d: %s placed twice", i, m.Name)
			}
			seen[m.Name] = true
		}
		assertRackSpread(t, c, p)
	}
	if placed < 200 || refused < 50 {
		t.Fatalf("random topologies not varied enough: %d placed, %d refused", placed, refused)
	}
}

func splitExists(n int, caps [3]int) bool {
	if n == 0 {
		return splitExists(5, caps) || splitExists(3, caps)
	}
	q := n/2 + 1
	for a := 0; a <= n; a++ {
		for b := 0; a+b <= n; b++ {
			c := n - a - b
			d := [3]int{a, b, c}
			ok := a+b >= q
			for k, x := range d {
				if x > caps[k] || x >= q || n-x < q {
					ok = false
				}
			}
			if ok {
				return true
			}
		}
	}
	return false
}

// TestPlacementStableWhenServersAdded: with the last apply's members as
// prior, adding servers anywhere (even etcd-role servers in new racks) never
// moves an existing member.
func TestPlacementStableWhenServersAdded(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for i := range 500 {
		c := randomCluster(r)
		p, err := inventory.Place(c, nil)
		if err != nil {
			continue
		}
		c.Spec.Etcd.Members = inventory.EtcdMembers(p.Etcd.Count)
		prior := &inventory.Prior{}
		for _, m := range p.Etcd.Members {
			prior.EtcdMembers = append(prior.EtcdMembers, m.Name)
		}
		// Add servers with the etcd role, in front of existing ones, and a new rack.
		for k := range c.Spec.Racks {
			rk := &c.Spec.Racks[k]
			if len(rk.Servers) < 40 && r.IntN(2) == 0 {
				ns := rk.Servers[0]
				ns.Name = fmt.Sprintf("new-%d-%d", i, k)
				ns.Roles = []inventory.Role{inventory.RoleEtcd}
				ns.SSH.Address = rk.Servers[0].SSH.Address[:len(rk.Servers[0].SSH.Address)-2] + "99"
				ns.BMC = nil
				rk.Servers = append([]inventory.Server{ns}, rk.Servers...)
			}
		}
		c.SetDefaults()
		p2, err := inventory.Place(c, prior)
		if err != nil {
			t.Fatalf("case %d: adding servers broke placement: %v", i, err)
		}
		var names []string
		for _, m := range p2.Etcd.Members {
			names = append(names, m.Name)
		}
		slices.Sort(names)
		slices.Sort(prior.EtcdMembers)
		if !slices.Equal(names, prior.EtcdMembers) {
			t.Fatalf("case %d: members moved from %v to %v", i, prior.EtcdMembers, names)
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d cases checked", checked)
	}
}

// TestPlacementScaleDownKeepsSurvivors: going from 5 to 3 members keeps
// members that were already there.
func TestPlacementScaleDownKeepsSurvivors(t *testing.T) {
	c := base()
	p5, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	prior := &inventory.Prior{}
	for _, m := range p5.Etcd.Members {
		prior.EtcdMembers = append(prior.EtcdMembers, m.Name)
	}
	c.Spec.Etcd.Members = 3
	p3, err := inventory.Place(c, prior)
	if err != nil {
		t.Fatal(err)
	}
	if perCenter(p3) != [3]int{1, 1, 1} {
		t.Fatalf("split %v", perCenter(p3))
	}
	for _, m := range p3.Etcd.Members {
		if !slices.Contains(prior.EtcdMembers, m.Name) {
			t.Fatalf("scale-down added new member %s", m.Name)
		}
	}
}
