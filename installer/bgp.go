package installer

import (
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
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

// bgpPhases are the BGP agent's phases (bgp/agent), limited to servers
// (Options.Servers; empty: every server). Warnings of the derivation go to the run's result.
func (e *Engine) bgpPhases(servers []string) ([]phase.Phase, []string, error) {
	p, err := e.BGPPlan()
	if err != nil {
		return nil, nil, err
	}
	bin, err := e.agentBinary()
	if err != nil {
		return nil, nil, err
	}
	ph, err := bgpagent.New(p, bgpagent.Options{Binary: bin, EstablishTimeout: e.cfg.GateTimeout})
	if err != nil {
		return nil, nil, err
	}
	hp := ph.HostPhase()
	hp.ID = PhaseBGPAgent
	if len(servers) > 0 {
		hp.Select.Servers = limitTo(hp.Select.Servers, servers)
	}
	if len(hp.Select.Servers) == 0 {
		return nil, p.Warnings, nil
	}
	return []phase.Phase{hp}, p.Warnings, nil
}
