package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// frrPolicy is the inbound policy of a rendered configuration, read back
// the way bgpd applies it: a neighbor's own route-map, else its peer
// group's; a route-map entry permits what its prefix-list permits; a
// prefix-list's first matching entry (by seq) decides, none denies.
type frrPolicy struct {
	prefixLists map[string][]plEntry
	// routeMaps: name -> the prefix-list of its permit entry ("" for a
	// route-map that only denies).
	routeMaps map[string]string
	// groupOf: neighbor address -> peer group; inbound: neighbor or group
	// -> route-map.
	groupOf map[string]string
	inbound map[string]string
	listen  []string
}

type plEntry struct {
	seq    int
	permit bool
	prefix netip.Prefix
	ge, le int
}

func (e plEntry) matches(p netip.Prefix) bool {
	if !e.prefix.Contains(p.Addr()) || p.Bits() < e.prefix.Bits() {
		return false
	}
	if e.ge == 0 && e.le == 0 {
		return p.Bits() == e.prefix.Bits()
	}
	return p.Bits() >= e.ge && p.Bits() <= e.le
}

func parseFRRPolicy(t *testing.T, conf string) *frrPolicy {
	t.Helper()
	f := &frrPolicy{prefixLists: map[string][]plEntry{}, routeMaps: map[string]string{}, groupOf: map[string]string{}, inbound: map[string]string{}}
	var rm string
	for _, line := range strings.Split(conf, "\n") {
		w := strings.Fields(line)
		switch {
		case len(w) >= 7 && w[0] == "ip" && w[1] == "prefix-list":
			seq, _ := strconv.Atoi(w[4])
			e := plEntry{seq: seq, permit: w[5] == "permit", prefix: netip.MustParsePrefix(w[6])}
			if len(w) == 11 {
				e.ge, _ = strconv.Atoi(w[8])
				e.le, _ = strconv.Atoi(w[10])
			}
			f.prefixLists[w[2]] = append(f.prefixLists[w[2]], e)
		case len(w) == 4 && w[0] == "route-map":
			rm = w[1]
			if w[2] != "permit" && w[2] != "deny" {
				t.Fatalf("route-map line %q", line)
			}
			f.routeMaps[rm] = ""
		case len(w) == 5 && w[0] == "match" && w[2] == "address" && w[3] == "prefix-list":
			f.routeMaps[rm] = w[4]
		case len(w) == 4 && w[0] == "neighbor" && w[2] == "peer-group":
			f.groupOf[w[1]] = w[3]
		case len(w) == 5 && w[0] == "neighbor" && w[2] == "route-map" && w[4] == "in":
			f.inbound[w[1]] = w[3]
		case len(w) >= 3 && w[0] == "bgp" && w[1] == "listen":
			f.listen = append(f.listen, line)
		}
	}
	for name, es := range f.prefixLists {
		slices.SortFunc(es, func(a, b plEntry) int { return a.seq - b.seq })
		f.prefixLists[name] = es
	}
	return f
}

// accepts says whether the router keeps prefix when neighbor addr
// announces it.
func (f *frrPolicy) accepts(t *testing.T, addr string, prefix netip.Prefix) bool {
	t.Helper()
	rm, ok := f.inbound[addr]
	if !ok {
		rm, ok = f.inbound[f.groupOf[addr]]
	}
	if !ok {
		t.Fatalf("neighbor %s has no inbound route-map (nor has its peer group)", addr)
	}
	pl, ok := f.routeMaps[rm]
	if !ok {
		t.Fatalf("route-map %s is not defined", rm)
	}
	if pl == "" {
		return false
	}
	es, ok := f.prefixLists[pl]
	if !ok {
		t.Fatalf("prefix-list %s is not defined", pl)
	}
	for _, e := range es {
		if e.matches(prefix) {
			return e.permit
		}
	}
	return false
}

// Every router accepts from each of its nodes exactly that node's pod
// CIDR, the API VIP from control-plane nodes only, and /32s of the
// load-balancer pool (never the API VIP through the pool); it peers with
// its nodes one by one, in their racks' groups, and with nobody else.
func TestRenderFRRPerNodeFilters(t *testing.T) {
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "filter-secret")
	outside := func(p *Plan) { p.LoadBalancerPool = []netip.Prefix{netip.MustParsePrefix("198.18.47.0/24")} }
	for _, tc := range []struct {
		name, inventory string
		tweak           func(*Plan)
	}{
		{"tor, API VIP in the pool", "testdata/tor.yaml", nil},
		{"core, API VIP in the pool", "testdata/core.yaml", nil},
		{"core, API VIP outside the pool", "testdata/core.yaml", outside},
		{"tor, no pool", "testdata/tor.yaml", func(p *Plan) { p.LoadBalancerPool = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := loadPlan(t, tc.inventory, Options{})
			if tc.tweak != nil {
				tc.tweak(p)
			}
			vip := netip.PrefixFrom(p.APIVIP, 32)
			for _, r := range p.Routers {
				var o FRROptions
				if !p.Password.IsZero() {
					o.Password = "filter-secret"
				}
				out, err := RenderFRR(p, r.Name, o)
				if err != nil {
					t.Fatal(err)
				}
				f := parseFRRPolicy(t, string(out))
				if len(f.listen) > 0 {
					t.Errorf("%s: listen ranges let unlisted addresses peer: %q", r.Name, f.listen)
				}
				var want []string
				for _, g := range r.Groups {
					for _, name := range g.Nodes {
						n, _ := p.Node(name)
						want = append(want, n.Address.String())
						if f.groupOf[n.Address.String()] != g.Name {
							t.Errorf("%s: node %s (%s) is in peer group %q, want %s", r.Name, name, n.Address, f.groupOf[n.Address.String()], g.Name)
						}
					}
					if pl := f.routeMaps[f.inbound[g.Name]]; pl != "" {
						t.Errorf("%s: peer group %s's own inbound route-map permits prefix-list %s", r.Name, g.Name, pl)
					}
					pw := fmt.Sprintf(" neighbor %s password %s\n", g.Name, RackPassword("filter-secret", g.Rack))
					if has := strings.Contains(string(out), pw); has != (o.Password != "") {
						t.Errorf("%s: peer group %s uses rack %s's password: %v, want %v", r.Name, g.Name, g.Rack, has, o.Password != "")
					}
				}
				var got []string
				for addr := range f.groupOf {
					got = append(got, addr)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: neighbors %v, want the nodes %v", r.Name, got, want)
				}
				for _, n := range p.NodesOf(r.Name) {
					addr := n.Address.String()
					check := func(what string, prefix netip.Prefix, want bool) {
						t.Helper()
						if got := f.accepts(t, addr, prefix); got != want {
							t.Errorf("%s from %s (%s): %s %s accepted %v, want %v", r.Name, n.Name, addr, what, prefix, got, want)
						}
					}
					check("own pod CIDR", n.PodCIDR, true)
					for _, o := range p.Nodes {
						if o.Name != n.Name {
							check("pod CIDR of "+o.Name, o.PodCIDR, false)
						}
					}
					wider, _ := n.PodCIDR.Addr().Prefix(n.PodCIDR.Bits() - 1)
					check("wider than its pod CIDR", wider, false)
					check("part of its pod CIDR", netip.PrefixFrom(n.PodCIDR.Addr(), n.PodCIDR.Bits()+1), false)
					check("the cluster's pod range", p.PodCIDR, false)
					check("API VIP", vip, n.ControlPlane)
					for _, pool := range p.LoadBalancerPool {
						lb := netip.PrefixFrom(pool.Addr().Next().Next(), 32)
						if lb == vip {
							lb = netip.PrefixFrom(lb.Addr().Next(), 32)
						}
						check("load-balancer /32", lb, true)
						check("the whole load-balancer pool", pool, false)
					}
					check("a prefix of nobody's", netip.MustParsePrefix("198.18.99.0/24"), false)
				}
				frrDryRun(t, out)
			}
		})
	}
}
