package agent_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/agent"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// asPaths is the router's table: prefix -> AS path length.
func asPaths(t *testing.T, r *server.BgpServer) map[string]int {
	t.Helper()
	out := map[string]int{}
	err := r.ListPath(context.Background(), &api.ListPathRequest{
		TableType: api.TableType_GLOBAL,
		Family:    &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			n := 0
			for _, a := range p.Pattrs {
				var ap api.AsPathAttribute
				if a.UnmarshalTo(&ap) == nil {
					for _, s := range ap.Segments {
						for _, asn := range s.Numbers {
							if asn != nodeASN {
								t.Errorf("%s: AS path holds %d, not only the node's %d", d.Prefix, asn, nodeASN)
							}
							n++
						}
					}
				}
			}
			out[d.Prefix] = n
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func waitASPaths(t *testing.T, r *server.BgpServer, what string, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := asPaths(t, r)
		ok := len(got) == len(want)
		for p, n := range want {
			ok = ok && got[p] == n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the router has AS path lengths %v, want %v", what, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeWatches is a WatchFunc that starts no informers: the test hands
// route sets to the running watch as lb/watch would.
type fakeWatches struct {
	mu      sync.Mutex
	started []bgp.LoadBalancerConfig
	sets    []func([]lb.Route)
	ctxs    []context.Context
}

func (f *fakeWatches) watch(ctx context.Context, node string, c bgp.LoadBalancerConfig, set func([]lb.Route)) func() agent.WatchState {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, c)
	f.sets = append(f.sets, set)
	f.ctxs = append(f.ctxs, ctx)
	n := len(f.started)
	return func() agent.WatchState {
		return agent.WatchState{Synced: true, Services: n, Error: "fake error of watch " + c.Center}
	}
}

func (f *fakeWatches) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.started)
}

// set delivers routes from watch i (0-based), as its goroutine would.
func (f *fakeWatches) set(i int, routes []lb.Route) {
	f.mu.Lock()
	s := f.sets[i]
	f.mu.Unlock()
	s(routes)
}

func lbConfig(center string, role inventory.CenterRole) *bgp.LoadBalancerConfig {
	return &bgp.LoadBalancerConfig{Kubeconfig: "/etc/tricenter/bgp/kubeconfig", Center: center, CenterRole: role, Worker: true, Prefer: lb.PreferProduction}
}

// TestLoadBalancerRoutes: routes set on the agent reach a router with
// their prepends; a static VIP that is also a route is announced once
// without prepends; a reload starts, restarts and stops the watch.
func TestLoadBalancerRoutes(t *testing.T) {
	router, port := startRouter(t)
	const (
		vip    = "198.18.100.20"
		lbA    = "198.18.100.30"
		lbB    = "198.18.100.31"
		static = "198.18.100.40"
	)
	cfg := &bgp.Config{
		Node: "n1", ASN: nodeASN, RouterID: "198.18.0.11", NextHop: "127.0.0.1",
		StatusSocket: filepath.Join(t.TempDir(), "agent.sock"),
		Timers:       bgp.Timers{KeepaliveSeconds: 1, HoldSeconds: 3, ConnectRetrySeconds: 1},
		Peers:        []bgp.PeerConfig{{Name: "tor", Address: "127.0.0.1", ASN: routerASN, Port: port}},
		Prefixes:     []string{podCIDR},
		Services:     []bgp.Service{{Name: "load-balancers", VIPs: []string{static}}},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	watches := &fakeWatches{}
	a := agent.New(cfg, agent.Options{WatchLoadBalancers: watches.watch})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitASPaths(t, router, "pod CIDR and static VIP", map[string]int{podCIDR: 1, static + "/32": 1})

	r := func(addr string, prepends int, svc string) lb.Route {
		return lb.Route{Addr: netip.MustParseAddr(addr), Prepends: prepends, Service: svc}
	}
	if err := a.SetLoadBalancerRoutes(ctx, []lb.Route{r(lbA, 0, "shop/a"), r(lbB, 2, "shop/b"), r(static, 1, "shop/static")}); err != nil {
		t.Fatal(err)
	}
	waitASPaths(t, router, "routes with prepends", map[string]int{podCIDR: 1, static + "/32": 1, lbA + "/32": 1, lbB + "/32": 3})
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(st.Announced, func(x bgp.Announced) bool { return x.Prefix == static+"/32" })
	if i < 0 || st.Announced[i].Prepends != 0 || !slices.Equal(st.Announced[i].For, []string{"LoadBalancer shop/static", "service load-balancers"}) {
		t.Errorf("static VIP that is also a route: %+v, want one announcement for both without prepends", st.Announced)
	}
	if l := st.LoadBalancers; l == nil || len(l.Routes) != 3 || l.Watching ||
		l.Routes[1] != (bgp.LoadBalancerRoute{Prefix: lbB + "/32", Service: "shop/b", Prepends: 2, Announced: true}) {
		t.Errorf("status loadBalancers %+v, want three announced routes and no watch", st.LoadBalancers)
	}

	// Prepends change: the path is replaced; a route gone is withdrawn.
	if err := a.SetLoadBalancerRoutes(ctx, []lb.Route{r(lbB, 1, "shop/b")}); err != nil {
		t.Fatal(err)
	}
	waitASPaths(t, router, "fewer routes", map[string]int{podCIDR: 1, static + "/32": 1, lbB + "/32": 2})
	if err := a.SetLoadBalancerRoutes(ctx, []lb.Route{r("2001:db8::1", 0, "shop/v6")}); err == nil || !strings.Contains(err.Error(), "shop/v6") {
		t.Errorf("an IPv6 route: %v, want an error naming the Service", err)
	}
	if err := a.SetLoadBalancerRoutes(ctx, []lb.Route{r(lbA, agent.MaxPrepends+1, "shop/a")}); err == nil {
		t.Error("too many prepends: no error")
	}

	// The section appears: a watch starts, its routes replace the set ones.
	next := *cfg
	next.LoadBalancers = lbConfig("dc1", inventory.RoleProduction)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("first credential\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next.LoadBalancers.Kubeconfig = kubeconfig
	if err := a.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	if watches.count() != 1 || watches.started[0] != *next.LoadBalancers {
		t.Fatalf("watches started %+v, want one for %+v", watches.started, *next.LoadBalancers)
	}
	watches.set(0, []lb.Route{r(lbA, 0, "shop/a")})
	waitASPaths(t, router, "the watch's routes", map[string]int{podCIDR: 1, static + "/32": 1, lbA + "/32": 1})
	st, err = a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := st.LoadBalancers; l == nil || !l.Watching || !l.Synced || l.Center != "dc1" || l.Error != "fake error of watch dc1" || len(l.Routes) != 1 {
		t.Errorf("status loadBalancers %+v, want the watch's state and one route", st.LoadBalancers)
	}
	// The same section again: the watch goes on.
	if err := a.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	if watches.count() != 1 {
		t.Fatalf("an unchanged section restarted the watch: %+v", watches.started)
	}
	// The same section, its kubeconfig file rewritten (a renewed
	// certificate): a reload restarts the watch with it.
	if err := os.WriteFile(kubeconfig, []byte("renewed credential\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	if watches.count() != 2 || watches.ctxs[0].Err() == nil {
		t.Fatalf("kubeconfig rewritten: %d watches, first one's context %v", watches.count(), watches.ctxs[0].Err())
	}
	watches.set(1, []lb.Route{r(lbA, 0, "shop/a")})

	// A changed section: a new watch; the old one's context ends, and
	// what it still delivers is dropped. The routes stay until the new
	// one delivers.
	changed := next
	changed.LoadBalancers = lbConfig("dc2", inventory.RoleLocalDR)
	if err := a.Reload(ctx, &changed); err != nil {
		t.Fatal(err)
	}
	if watches.count() != 3 || watches.ctxs[1].Err() == nil {
		t.Fatalf("changed section: %d watches, second one's context %v", watches.count(), watches.ctxs[1].Err())
	}
	watches.set(1, []lb.Route{r(lbB, 0, "stale/old-watch")}) // returns: its context ended
	st, err = a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := st.LoadBalancers; l == nil || len(l.Routes) != 1 || l.Routes[0].Service != "shop/a" {
		t.Errorf("after the restart: %+v, want the last routes kept until the new watch delivers", st.LoadBalancers)
	}
	watches.set(2, []lb.Route{r(lbA, 1, "shop/a")})
	waitASPaths(t, router, "the new watch's routes", map[string]int{podCIDR: 1, static + "/32": 1, lbA + "/32": 2})

	// The section disappears: the watch ends and its routes are withdrawn.
	if err := a.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if watches.ctxs[2].Err() == nil {
		t.Error("the watch still runs after the section was removed")
	}
	waitASPaths(t, router, "routes withdrawn", map[string]int{podCIDR: 1, static + "/32": 1})
	st, err = a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LoadBalancers != nil {
		t.Errorf("status loadBalancers %+v after the section was removed", st.LoadBalancers)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
