package installer

import (
	"context"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
)

// BGPPlan derives every node's sessions and announcements (the API VIP
// on control-plane servers, gated by the local /readyz).
func (e *Engine) BGPPlan() (*bgp.Plan, error) {
	p, err := bgp.Derive(e.cfg.Cluster, e.IPs(), bgp.Options{Placement: e.Placement()})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.cfg.Source, err)
	}
	return p, nil
}

func (r *applyRun) bgp(ctx context.Context) error {
	p, err := r.e.BGPPlan()
	if err != nil {
		return err
	}
	r.res.Warnings = append(r.res.Warnings, p.Warnings...)
	bin, err := r.e.agentBinary()
	if err != nil {
		return err
	}
	ph, err := bgpagent.New(p, bgpagent.Options{Binary: bin, EstablishTimeout: r.e.cfg.GateTimeout})
	if err != nil {
		return err
	}
	hp := ph.HostPhase()
	hp.Select.Servers = r.limit(hp.Select.Servers)
	if len(hp.Select.Servers) == 0 {
		return nil
	}
	return r.m.Run(ctx, hp)
}
