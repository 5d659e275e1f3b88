package installer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/gates"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Gate is one verification after apply (package gates).
type Gate = gates.Gate

// ErrGate is wrapped when a verification gate does not hold.
var ErrGate = gates.ErrGate

// The gates' workload image (imported on every node, never pulled).
const (
	ImageProbe = gates.ImageProbe
	ProbeImage = gates.ProbeImage
)

// NodeProblems lists why the observed nodes do not match the inventory
// (gates.NodeProblems).
func NodeProblems(c *inventory.Cluster, nodes []health.Node) []string {
	return gates.NodeProblems(c, nodes)
}

// gatePhase is one gate of the workflow: it runs its checks after the
// components (never in a dry run) and records a Gate per check; a gate
// that does not hold fails the run once every gate was checked.
type gatePhase struct {
	id  string
	r   *applyRun
	run func(ctx context.Context)
}

func (g *gatePhase) Title() string {
	p, _ := phaseInfo(g.id)
	return "gate: " + p.Description
}
func (g *gatePhase) PhaseID() string { return g.id }
func (g *gatePhase) ShouldRun() bool { return !g.r.dry }
func (g *gatePhase) Run(ctx context.Context) error {
	g.run(ctx)
	return nil
}

// gatePhases are the selected gates, in workflow order.
func (r *applyRun) gatePhases() []phase.Phase {
	all := []*gatePhase{
		{id: GateEtcd, run: r.gateEtcd},
		{id: GateBGP, run: func(ctx context.Context) {
			r.gate(ctx, GateBGP, "BGP sessions Established and routes announced", r.gateBGP)
		}},
		{id: GateControlPlane, run: r.gateControlPlane},
		{id: GateNodes, run: func(ctx context.Context) {
			// Servers just powered on (WaitReachable) get as long to report
			// Ready from their new boot as they had to accept SSH.
			r.gateWithin(ctx, GateNodes, "nodes Ready with their center and rack", max(r.e.cfg.GateTimeout, r.o.WaitReachable), r.gateNodes)
		}},
		{id: GateDataplane, run: r.gateDataplane},
		{id: GateLoadBalancer, run: func(ctx context.Context) {
			// A cluster without a pool has no controller and no watch:
			// nothing to verify, and no gate.
			if len(r.e.IPs().LoadBalancerPool) > 0 {
				r.gate(ctx, GateLoadBalancer, "load-balancer controller and agents", r.gateLoadBalancer)
			}
		}},
	}
	var out []phase.Phase
	for _, g := range all {
		if r.sel.Has(g.id) {
			g.r = r
			out = append(out, g)
		}
	}
	return out
}

// gate runs one check, polling until it holds or the gate timeout passes.
func (r *applyRun) gate(ctx context.Context, id, name string, check gates.Check) {
	r.gateWithin(ctx, id, name, r.e.cfg.GateTimeout, check)
}

func (r *applyRun) gateWithin(ctx context.Context, id, name string, limit time.Duration, check gates.Check) {
	r.res.Gates = append(r.res.Gates, gates.Run(ctx, r.e.log, id, name, limit, check))
}

// gateEtcd judges the health etcd/health observed in this run, or, when
// the run did not converge etcd, observes it now.
func (r *applyRun) gateEtcd(ctx context.Context) {
	const name = "etcd healthy as planned"
	if r.res.Etcd != nil && r.res.Etcd.Health != nil {
		h := r.res.Etcd.Health
		g := Gate{ID: GateEtcd, Name: name, OK: h.OK()}
		if g.OK {
			g.Detail = fmt.Sprintf("%d members, leader elected", len(h.Members))
		} else {
			g.Detail = strings.Join(h.Problems, "; ")
		}
		r.res.Gates = append(r.res.Gates, g)
		return
	}
	r.gate(ctx, GateEtcd, name, func(ctx context.Context) (string, error) {
		cli, err := r.e.EtcdClient(r.etcdPKI)
		if err != nil {
			return "", gates.Permanent(err)
		}
		defer cli.Close()
		h := cli.Health(ctx, r.e.Placement().Etcd.Members)
		if !h.OK() {
			return "", errors.New(strings.Join(h.Problems, "; "))
		}
		return fmt.Sprintf("%d members, leader elected", len(h.Members)), nil
	})
}

func (r *applyRun) gateControlPlane(ctx context.Context) {
	for _, m := range r.e.Placement().ControlPlane {
		url := "https://" + net.JoinHostPort(m.Address, fmt.Sprint(APIPort))
		r.gate(ctx, GateControlPlane, "/readyz on "+m.Name, func(ctx context.Context) (string, error) { return r.e.readyz(ctx, url) })
	}
	if r.e.IPs().APIVIP.IsValid() {
		r.gate(ctx, GateControlPlane, "/readyz through the API VIP "+r.e.IPs().APIVIP.String(), func(ctx context.Context) (string, error) {
			return r.e.readyz(ctx, r.e.APIServerURL())
		})
	}
}

// gateDataplane creates pods: a run that changed nothing leaves the
// cluster alone unless asked (Options.Verify, or the gate selected by name).
func (r *applyRun) gateDataplane(ctx context.Context) {
	const name = "pod to pod across racks without NAT, DNS, Service"
	if len(r.res.Changes) == 0 && len(r.res.APIChanges) == 0 && !r.o.Verify && !r.named(GateDataplane) {
		r.res.Gates = append(r.res.Gates, Gate{ID: GateDataplane, Name: name, NotRun: "nothing changed (apply --verify runs it)"})
		return
	}
	r.gate(ctx, GateDataplane, name, func(ctx context.Context) (string, error) {
		cs, err := r.e.Clientset()
		if err != nil {
			return "", gates.Permanent(err)
		}
		return gates.Dataplane(ctx, cs, r.e.cfg.Cluster, r.e.log)
	})
}

// named reports whether the run was asked for id itself (--only gates/…
// or --only gates).
func (r *applyRun) named(id string) bool {
	for _, n := range splitNames(r.o.Only) {
		if n == id || n == string(Gates) {
			return true
		}
	}
	return false
}

// readyz asks one API URL for /readyz.
func (e *Engine) readyz(ctx context.Context, server string) (string, error) {
	hc, err := e.apiHTTPClient(server)
	if err != nil {
		return "", gates.Permanent(err)
	}
	return gates.Readyz(ctx, hc, server)
}

func (r *applyRun) gateBGP(ctx context.Context) (string, error) {
	names := r.limit(hostNames(r.e.cfg.Cluster.Hosts()))
	hosts, err := r.m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		return "", err
	}
	sts, errs := BGPStatuses(ctx, r.m, hosts)
	var problems []string
	for _, n := range slices.Sorted(maps.Keys(errs)) {
		problems = append(problems, n+": "+errs[n].Error())
	}
	sessions, routes := 0, 0
	for _, h := range hosts {
		st := sts[h.Name]
		if st == nil {
			continue
		}
		for _, s := range st.Sessions {
			if !s.Established() {
				problems = append(problems, fmt.Sprintf("%s: session %s (%s) is %s", h.Name, s.Name, s.Address, s.State))
			}
			sessions++
		}
		want, _ := r.e.IPs().PodCIDR(h.Name)
		found := false
		for _, a := range st.Announced {
			routes++
			if a.Prefix == want.String() {
				found = true
			}
		}
		if want.IsValid() && !found {
			problems = append(problems, fmt.Sprintf("%s: pod CIDR %s not announced", h.Name, want))
		}
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("%d sessions Established, %d prefixes announced by %d nodes", sessions, routes, len(hosts)), nil
}

func hostNames(hs []inventory.Host) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

// gateNodes holds when every node of the run is Ready by the one health
// rule, its server's boot id verified: the gate follows an install over
// SSH, so a server that cannot be asked now fails it.
func (r *applyRun) gateNodes(ctx context.Context) (string, error) {
	cs, err := r.e.Clientset()
	if err != nil {
		return "", gates.Permanent(err)
	}
	names := r.limit(hostNames(r.e.cfg.Cluster.Hosts()))
	nodes, err := health.Observe(ctx, cs, names, bootIDs(r.m), r.e.cfg.Clock)
	if err != nil {
		return "", err
	}
	p := gates.NodeProblems(r.e.cfg.Cluster, nodes)
	for _, n := range nodes {
		if n.Registered && n.HostBootID == "" {
			p = append(p, n.Name+": boot id "+n.Boot)
		}
	}
	if len(p) > 0 {
		return "", errors.New(strings.Join(p, "; "))
	}
	return fmt.Sprintf("%d nodes Ready (fresh heartbeat, boot id verified) with region, zone and rack labels", len(names)), nil
}
