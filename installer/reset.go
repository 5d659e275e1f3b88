package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/apivip"
	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcdsnap"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// DefaultDrainTimeout bounds draining one node before its agents stop.
const DefaultDrainTimeout = 5 * time.Minute

// ErrMemberRemoval refuses to remove a server that still holds etcd or
// the control plane in the placement.
var ErrMemberRemoval = errors.New("server still holds etcd or the control plane")

// PlanReset is a dry run of Reset: the same phases run with the mutation
// gate recording "would …" per host instead of removing, and the API work
// (draining and deleting the Nodes of Options.Servers) is listed in
// Result.APIChanges without contacting the API. It takes no lock.
func (e *Engine) PlanReset(ctx context.Context, o Options) (*Result, error) {
	return e.reset(ctx, o, true)
}

// Reset tears down what Apply built. With Options.Servers it removes
// those servers only (workers): each Node is drained and deleted through
// the API, then its node agents and BGP agent stop (the routers withdraw
// its pod CIDR) and their files go. Without it the whole cluster goes, in
// a safe order: node agents, the API VIP and the control plane, the BGP
// agents, and etcd last.
func (e *Engine) Reset(ctx context.Context, o Options) (*Result, error) {
	return e.reset(ctx, o, false)
}

func (e *Engine) reset(ctx context.Context, o Options, dry bool) (*Result, error) {
	comps, err := ParseComponents(o.Only)
	if err != nil {
		return nil, err
	}
	if err := e.checkServers(o.Servers); err != nil {
		return nil, err
	}
	pl := e.Placement()
	var held []string
	for _, s := range o.Servers {
		if pl.IsEtcdMember(s) || pl.IsControlPlane(s) {
			held = append(held, s)
		}
	}
	if len(held) > 0 {
		return nil, fmt.Errorf("%w: %s: take it out of the etcd/control-plane placement first (change its roles and apply), then remove it",
			ErrMemberRemoval, strings.Join(held, ", "))
	}
	res := &Result{DryRun: dry, Components: comps, Changes: map[string][]string{}}
	if !dry {
		var unlock func()
		if ctx, unlock, err = e.lockRun(ctx, o, res); err != nil {
			return nil, err // refused: nothing ran
		}
		defer unlock()
	}
	m := e.Manager(dry)
	defer m.Close()
	has := func(c Component) bool { return slices.Contains(comps, c) }
	all := hostNames(e.cfg.Cluster.Hosts())
	targets := all
	if len(o.Servers) > 0 {
		targets = append([]string(nil), o.Servers...)
		sort.Strings(targets)
	}
	sel := inventory.Selector{Servers: targets}
	step := func(c Component, f func() error) error {
		start := time.Now()
		err := f()
		res.Timings = append(res.Timings, Timing{Component: c, Took: time.Since(start)})
		if err != nil {
			return fmt.Errorf("reset %s: %w", c, err)
		}
		return nil
	}
	run := func() error {
		if has(Nodes) {
			if len(o.Servers) > 0 {
				if err := step(Addons, func() error { return e.drain(ctx, o.Servers, res, dry) }); err != nil {
					return err
				}
			}
			if err := step(Nodes, func() error { return node.Remove(ctx, m, sel) }); err != nil {
				return err
			}
		}
		if has(ControlPlane) && len(o.Servers) == 0 {
			cps := inventory.Selector{Servers: controlPlaneNames(pl)}
			if err := step(ControlPlane, func() error {
				if err := removeVIP(ctx, m, cps); err != nil {
					return err
				}
				return controlplane.Remove(ctx, m, cps)
			}); err != nil {
				return err
			}
		}
		if has(BGP) {
			if err := step(BGP, func() error { return bgpagent.Remove(ctx, m, sel) }); err != nil {
				return err
			}
		}
		if has(Etcd) && len(o.Servers) == 0 {
			if err := step(Etcd, func() error {
				if err := etcdsnap.Remove(ctx, m, e.etcdServers()); err != nil {
					return err
				}
				return etcd.Reset(ctx, m, e.etcdServers())
			}); err != nil {
				return err
			}
		}
		return nil
	}
	err = run()
	res.Changes = m.Changes()
	if err != nil || dry {
		return res, err
	}
	if has(Etcd) && len(o.Servers) == 0 {
		if err := e.forgetEtcd(); err != nil {
			return res, err
		}
	}
	return res, nil
}

func controlPlaneNames(pl *inventory.Placement) []string {
	var out []string
	for _, m := range pl.ControlPlane {
		out = append(out, m.Name)
	}
	return out
}

func removeVIP(ctx context.Context, m *phase.Manager, sel inventory.Selector) error {
	return m.Run(ctx, &phase.HostPhase{Name: "Remove the API VIP", Select: sel,
		Apply: func(ctx context.Context, h *phase.Host) error {
			st, err := h.Stat(ctx, apivip.UnitPath)
			if err != nil {
				return err
			}
			if !st.Exists {
				return nil
			}
			return h.Run(ctx, phase.Command{Cmd: apivip.RemoveCmd, Sudo: true, Describe: "remove the API VIP from lo"})
		}})
}

// etcdServers are every server that is, was or could be an etcd member.
func (e *Engine) etcdServers() []string {
	names := map[string]bool{}
	for _, m := range e.Placement().Etcd.Members {
		names[m.Name] = true
	}
	if e.prior != nil {
		for _, n := range e.prior.EtcdMembers {
			if _, ok := e.cfg.Cluster.Host(n); ok {
				names[n] = true
			}
		}
	}
	for _, h := range e.cfg.Cluster.Hosts() {
		if h.HasRole(inventory.RoleEtcd) {
			names[h.Name] = true
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// forgetEtcd records that no etcd member is left (the next apply
// bootstraps a new cluster).
func (e *Engine) forgetEtcd() error {
	p := &inventory.Prior{}
	if e.prior != nil {
		p.PodCIDRs = e.prior.PodCIDRs
	}
	if err := e.cfg.Store.SavePrior(p); err != nil {
		return fmt.Errorf("recording the reset: %w", err)
	}
	e.prior = p
	return nil
}

// drain cordons and drains the Nodes of servers and deletes them through
// the API; a dry run only records that it would.
func (e *Engine) drain(ctx context.Context, servers []string, res *Result, dry bool) error {
	if dry {
		for _, s := range servers {
			res.APIChanges = append(res.APIChanges, "would drain and delete Node "+s)
		}
		return nil
	}
	cs, err := e.Clientset()
	if err != nil {
		return err
	}
	for _, s := range servers {
		e.log.Info("Draining node", "node", s)
		if err := addons.DrainAndDelete(ctx, cs, s, DefaultDrainTimeout); err != nil {
			return fmt.Errorf("draining %s: %w", s, err)
		}
		res.APIChanges = append(res.APIChanges, "drained and deleted Node "+s)
	}
	return nil
}
