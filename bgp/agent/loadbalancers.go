package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// LoadBalancer Services. With a loadBalancers section in its
// configuration the agent starts a watch (Options.WatchLoadBalancers;
// cmd/tricenter-bgp passes one built on package lb/watch) that hands it
// the node's routes (lb.Announcements) every time they change; they are
// announced next to the pod CIDR and the services' VIPs, a route with
// prepends carrying the node's own ASN that many times more. A prefix
// that is also a healthy service's VIP is announced once, with the fewest
// prepends. Withdrawals go through the same tracking as every other
// (sent.go).
//
// While the API cannot be reached the watch keeps its caches and the
// routes stay as last known (MetalLB's speakers do the same rather than
// withdraw every Service when the API goes away); the pod CIDR and the
// VIPs never depend on the API. A reload that changes the section starts
// a new watch and keeps the routes until it delivers; one that removes it
// withdraws them.

// MaxPrepends bounds a route's AS-path prepends.
const MaxPrepends = 8

// WatchState is a load-balancer watch's state, for Status.
type WatchState struct {
	// Synced is true once the watch has listed the cluster's Services
	// and EndpointSlices.
	Synced bool
	// Services is the number of LoadBalancer Services with addresses.
	Services int
	// Error is the watch's last error, ErrorAt its time.
	Error   string
	ErrorAt time.Time
}

// WatchFunc starts watching the cluster's LoadBalancer Services for node
// with c until ctx ends, handing every new route set to set (from any
// goroutine; set returns once the agent has applied it). It returns a
// function reporting the watch's state, safe to call at any time.
type WatchFunc func(ctx context.Context, node string, c bgp.LoadBalancerConfig, set func([]lb.Route)) (state func() WatchState)

// lbState is the agent's side of the load-balancer watch.
type lbState struct {
	// cfg is the running watch's configuration (nil: none runs).
	cfg    *bgp.LoadBalancerConfig
	gen    uint64
	cancel context.CancelFunc
	state  func() WatchState
	// routes are the routes last set, since when.
	routes []lb.Route
	since  time.Time
	// kubeconfig is the digest of the running watch's kubeconfig file: a
	// reload after the file changed (a renewed certificate, a rotated CA)
	// restarts the watch with it.
	kubeconfig [sha256.Size]byte
}

// SetLoadBalancerRoutes replaces the node's LoadBalancer routes and
// announces and withdraws on the loop; it returns once the changes are
// handed to the speaker. A running watch (see WatchFunc) replaces them
// again at its next change.
func (a *Agent) SetLoadBalancerRoutes(ctx context.Context, routes []lb.Route) error {
	if err := checkRoutes(routes); err != nil {
		return err
	}
	return a.do(ctx, func(st *agentState) error { return st.setLBRoutes(routes) })
}

func checkRoutes(routes []lb.Route) error {
	var errs []error
	for _, r := range routes {
		switch {
		case !r.Addr.Is4():
			errs = append(errs, fmt.Errorf("route of %s: %v is not an IPv4 address", r.Service, r.Addr))
		case r.Prepends < 0 || r.Prepends > MaxPrepends:
			errs = append(errs, fmt.Errorf("route %s of %s: %d prepends: use 0..%d", r.Addr, r.Service, r.Prepends, MaxPrepends))
		}
	}
	return errors.Join(errs...)
}

func (st *agentState) setLBRoutes(routes []lb.Route) error {
	routes = slices.Clone(routes)
	slices.SortFunc(routes, func(x, y lb.Route) int {
		if c := x.Addr.Compare(y.Addr); c != 0 {
			return c
		}
		return x.Prepends - y.Prepends
	})
	if slices.Equal(routes, st.lb.routes) && !st.lb.since.IsZero() {
		return nil
	}
	st.log.Info("LoadBalancer routes changed", "node", st.cfg.Node, "routes", len(routes))
	st.lb.routes, st.lb.since = routes, time.Now()
	if st.srv == nil {
		return nil
	}
	if err := st.reconcile(); err != nil {
		return fmt.Errorf("announcing LoadBalancer routes on %s: %w", st.cfg.Node, err)
	}
	return nil
}

// applyLoadBalancers starts, restarts or stops the watch to match c.
func (st *agentState) applyLoadBalancers(c *bgp.LoadBalancerConfig) {
	var kc [sha256.Size]byte
	if c != nil {
		// Unreadable: the watch reports it (and retries).
		if data, err := os.ReadFile(c.Kubeconfig); err == nil {
			kc = sha256.Sum256(data)
		}
	}
	if reflect.DeepEqual(c, st.lb.cfg) && kc == st.lb.kubeconfig {
		return
	}
	st.lb.kubeconfig = kc
	if st.lb.cancel != nil {
		st.lb.cancel()
	}
	st.lb.gen++
	st.lb.cancel, st.lb.state, st.lb.cfg = nil, nil, nil
	if c == nil {
		if len(st.lb.routes) > 0 {
			st.log.Info("loadBalancers removed from the configuration: withdrawing the LoadBalancer routes", "node", st.cfg.Node, "routes", len(st.lb.routes))
		}
		st.lb.routes, st.lb.since = nil, time.Time{}
		return
	}
	cc := *c
	st.lb.cfg = &cc
	if st.watchLB == nil {
		st.log.Warn("loadBalancers is configured but this agent cannot watch the API: LoadBalancer Services are not announced", "node", st.cfg.Node)
		return
	}
	st.log.Info("Starting the LoadBalancer watch", "node", st.cfg.Node, "kubeconfig", cc.Kubeconfig, "center", cc.Center, "role", cc.CenterRole)
	ctx, cancel := context.WithCancel(st.runCtx)
	gen, node := st.lb.gen, st.cfg.Node
	set := func(routes []lb.Route) {
		err := st.submit(ctx, func(st *agentState) error {
			if st.lb.gen != gen {
				return nil // from a watch that was replaced
			}
			if err := checkRoutes(routes); err != nil {
				return err
			}
			return st.setLBRoutes(routes)
		})
		if err != nil && ctx.Err() == nil && !errors.Is(err, ErrNotRunning) {
			st.log.Error("Applying LoadBalancer routes failed", "node", node, "err", err)
		}
	}
	st.lb.cancel = cancel
	st.lb.state = st.watchLB(ctx, node, cc, set)
}

// stopLoadBalancers ends the watch (when the agent stops).
func (st *agentState) stopLoadBalancers() {
	if st.lb.cancel != nil {
		st.lb.cancel()
	}
	st.lb = lbState{gen: st.lb.gen + 1}
}

// lbDesired adds the LoadBalancer routes to want.
func (st *agentState) lbDesired(want map[netip.Prefix]*desire) {
	for _, r := range st.lb.routes {
		p := netip.PrefixFrom(r.Addr, 32)
		d := want[p]
		if d == nil {
			d = &desire{prepends: r.Prepends}
			want[p] = d
		}
		d.prepends = min(d.prepends, r.Prepends)
		d.reasons = append(d.reasons, "LoadBalancer "+r.Service)
	}
}

func (st *agentState) lbStatus() *bgp.LoadBalancerStatus {
	if st.lb.cfg == nil && len(st.lb.routes) == 0 {
		return nil
	}
	s := &bgp.LoadBalancerStatus{Routes: []bgp.LoadBalancerRoute{}}
	if c := st.lb.cfg; c != nil {
		s.Kubeconfig, s.Center, s.CenterRole, s.Prefer = c.Kubeconfig, c.Center, string(c.CenterRole), string(c.Prefer)
	}
	if st.lb.state != nil {
		ws := st.lb.state()
		s.Watching, s.Synced, s.Services, s.Error, s.ErrorAt = true, ws.Synced, ws.Services, ws.Error, ws.ErrorAt
	}
	if !st.lb.since.IsZero() {
		s.Since = st.lb.since
	}
	for _, r := range st.lb.routes {
		p := netip.PrefixFrom(r.Addr, 32)
		lr := bgp.LoadBalancerRoute{Prefix: p.String(), Service: r.Service, Prepends: r.Prepends}
		_, lr.Announced = st.announced[p]
		s.Routes = append(s.Routes, lr)
	}
	return s
}
