package installer

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// BGPPlan derives every node's sessions and announcements (the API VIP
// on control-plane servers, gated by the local /readyz); vips are
// LoadBalancer VIPs every node announces besides.
func (e *Engine) BGPPlan(vips ...netip.Addr) (*bgp.Plan, error) {
	p, err := bgp.Derive(e.cfg.Cluster, e.IPs(), bgp.Options{Placement: e.Placement(), LoadBalancerVIPs: vips})
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
	o := bgpagent.Options{Binary: bin, EstablishTimeout: e.cfg.GateTimeout, Servers: servers}
	if len(e.IPs().LoadBalancerPool) > 0 {
		// The agents announce the LoadBalancer Services' addresses,
		// watching the API with a certificate of their own.
		o.Config.LoadBalancers = &bgp.LoadBalancerOptions{Prefer: lb.Preference(e.cfg.Cluster.Spec.Network.LoadBalancerPrefer)}
		o.Kubeconfig = e.lbAgentKubeconfig
	}
	ph, err := bgpagent.Phases(p, o)
	if err != nil {
		return nil, nil, err
	}
	return ph, p.Warnings, nil
}

// lbAgentKubeconfig renders a node's BGP agent kubeconfig: the API
// through the VIP, the agent's own client certificate (group
// pki.LBAgentGroup, bound to read-only Services and EndpointSlices).
func (e *Engine) lbAgentKubeconfig(node string) ([]byte, error) {
	ca, err := e.kubernetesCA()
	if err != nil {
		return nil, err
	}
	kp, err := e.PKIStore().EnsureLBAgent(node)
	if err != nil {
		return nil, fmt.Errorf("load-balancer agent certificate for %s: %w", node, err)
	}
	return kubeconfig.Render(kubeconfig.Config{Cluster: e.cfg.Cluster.Metadata.Name, User: pki.LBAgentUser(node),
		Server: e.APIServerURL(), CA: ca.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
}

// BGPAgentOptions configure InstallBGPAgents.
type BGPAgentOptions struct {
	// Select chooses the servers (empty: every node).
	Select inventory.Selector
	// LoadBalancerVIPs every node announces (they must lie in
	// spec.network.loadBalancerPool).
	LoadBalancerVIPs []netip.Addr
	// APIHealthURL is the check that gates the API VIP (default
	// bgp.DefaultAPIHealthURL).
	APIHealthURL string
	// EstablishTimeout bounds the wait for Established sessions per node
	// (default 30 s; negative: do not wait).
	EstablishTimeout time.Duration
	// DryRun records what would change instead of changing it.
	DryRun bool
}

// BGPAgentResult is what InstallBGPAgents did (or would do).
type BGPAgentResult struct {
	// Changes lists per server what changed (in a dry run: would change).
	Changes map[string][]string `json:"changes"`
	// Warnings are the BGP derivation's.
	Warnings []string `json:"warnings,omitempty"`
}

// InstallBGPAgents runs the BGP agent's phase (bgp/agent) on the selected
// nodes: upload tricenter-bgp (Config.AgentBinary, else the artifact
// directory's), write its configuration and unit, start or reload it and
// wait for Established sessions. A second run on unchanged nodes changes
// nothing.
func (e *Engine) InstallBGPAgents(ctx context.Context, o BGPAgentOptions) (*BGPAgentResult, error) {
	p, err := e.BGPPlan(o.LoadBalancerVIPs...)
	if err != nil {
		return nil, err
	}
	m := e.Manager(o.DryRun)
	defer m.Close()
	hosts, err := e.selectHosts(m, o.Select)
	if err != nil {
		return nil, err
	}
	bin, err := e.agentBinary()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	phases, err := bgpagent.Phases(p, bgpagent.Options{Binary: bin, EstablishTimeout: o.EstablishTimeout,
		Config: bgp.ConfigOptions{APIHealthURL: o.APIHealthURL}, Servers: names})
	if err != nil {
		return nil, err
	}
	err = m.Run(ctx, phases...)
	return &BGPAgentResult{Changes: m.Changes(), Warnings: p.Warnings}, err
}

// BGPStatusOptions configure BGPStatus.
type BGPStatusOptions struct {
	// Select chooses the servers (empty: every node).
	Select inventory.Selector
	// RequireAPIVIP also requires control-plane nodes to announce the API
	// VIP.
	RequireAPIVIP bool
}

// BGPStatus asks the agent on every selected node for its sessions and
// announcements (one short attempt per server, as Status does) and checks
// the gate: every session the inventory expects is Established and every
// node announces its pod CIDR.
func (e *Engine) BGPStatus(ctx context.Context, o BGPStatusOptions) (*bgp.GateReport, error) {
	p, err := e.BGPPlan()
	if err != nil {
		return nil, err
	}
	hs, err := e.cfg.Cluster.Select(o.Select)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("no host matches the selection in %s", e.cfg.Source)
	}
	names := hostNames(hs)
	statuses, errs, err := e.BGPAgentStatuses(ctx, names)
	if err != nil {
		return nil, err
	}
	return bgp.Gate(onlyNodes(p, names), statuses, errs, bgp.GateOptions{RequireAPIVIP: o.RequireAPIVIP}), nil
}

// onlyNodes narrows the plan to the named servers.
func onlyNodes(p *bgp.Plan, names []string) *bgp.Plan {
	sel := map[string]bool{}
	for _, n := range names {
		sel[n] = true
	}
	q := *p
	q.Nodes = nil
	for _, n := range p.Nodes {
		if sel[n.Name] {
			q.Nodes = append(q.Nodes, n)
		}
	}
	return &q
}
