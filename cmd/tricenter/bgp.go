package main

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
)

func newBGPCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bgp",
		Short: "Derive BGP sessions from the inventory, render router and agent configs, check the agents",
		Long: `Every node runs tricenter-bgp, which peers with its rack's TOR (network.bgp.mode
tor) or its site's core routers (mode core) and announces its pod CIDR, plus
the API VIP on control-plane nodes while kube-apiserver is ready. ASNs, peers,
timers and communities are derived from the inventory; these commands show
them, render the routers' FRR configuration and the agents' configuration,
and check the running agents.`,
	}
	cmd.AddCommand(newBGPShowCmd(g), newBGPRenderFRRCmd(g), newBGPAgentConfigCmd(g), newBGPInstallCmd(g), newBGPStatusCmd(g))
	return cmd
}

// loadBGPPlan validates the inventory, runs IPAM (keeping what the last
// apply recorded under stateDir, which it does not create) and derives the
// BGP plan with the given LoadBalancer VIPs.
func loadBGPPlan(g *globals, file, stateDir string, vips []string) (*bgp.Plan, error) {
	addrs, err := parseVIPs(vips)
	if err != nil {
		return nil, err
	}
	e, _, err := loadEngine(g, &engineFlags{file: file, stateDir: stateDir, readOnly: true, concurrency: installer.DefaultConcurrency})
	if err != nil {
		return nil, err
	}
	p, err := e.BGPPlan(addrs...)
	if err != nil {
		return nil, err
	}
	for _, w := range p.Warnings {
		warn(g, w)
	}
	return p, nil
}

// parseVIPs reads --vip.
func parseVIPs(vips []string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	for _, v := range vips {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("--vip %q is not an IP address", v)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// writeOut writes data to path atomically, or to stdout for "" and "-".
func writeOut(g *globals, path string, data []byte, perm os.FileMode) error {
	if path == "" || path == "-" {
		_, err := g.stdout.Write(data)
		return err
	}
	return fsutil.WriteFileAtomic(path, data, perm)
}

func newBGPShowCmd(g *globals) *cobra.Command {
	var file, output, stateDir string
	var vips []string
	cmd := &cobra.Command{
		Use:   "show -f FILE",
		Short: "Show every node's ASN, router ID, peers and announcements, and every router's peer groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			p, err := loadBGPPlan(g, file, stateDir, vips)
			if err != nil {
				return err
			}
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, planJSON(p))
			}
			return renderBGPPlan(g.stdout, p)
		},
	}
	addInventoryFlag(cmd, &file)
	addStateDirFlag(cmd, &stateDir)
	cliflags.AddOutput(cmd, &output)
	cmd.Flags().StringSliceVar(&vips, "vip", nil, "LoadBalancer VIP every node announces (repeatable; must lie in network.loadBalancerPool)")
	return cmd
}

type bgpPlanJSON struct {
	Cluster  string          `json:"cluster"`
	Nodes    []bgpNodeJSON   `json:"nodes"`
	Routers  []bgpRouterJSON `json:"routers"`
	Timers   map[string]int  `json:"timers"`
	Settings map[string]any  `json:"settings"`
}

type bgpNodeJSON struct {
	Name         string   `json:"name"`
	Rack         string   `json:"rack"`
	Center       string   `json:"center"`
	Address      string   `json:"address"`
	ASN          uint32   `json:"asn"`
	RouterID     string   `json:"routerID"`
	Peers        []string `json:"peers"`
	Announces    []string `json:"announces"`
	Communities  []string `json:"communities"`
	ControlPlane bool     `json:"controlPlane"`
}

type bgpRouterJSON struct {
	Name    string         `json:"name"`
	Kind    string         `json:"kind"`
	Site    string         `json:"site"`
	Address string         `json:"address"`
	ASN     uint32         `json:"asn"`
	Groups  []bgpGroupJSON `json:"groups"`
}

type bgpGroupJSON struct {
	Name     string   `json:"name"`
	Rack     string   `json:"rack"`
	Range    string   `json:"listenRange"`
	RemoteAS string   `json:"remoteAS"`
	Nodes    []string `json:"nodes"`
}

func nodeAnnounces(p *bgp.Plan, n *bgp.Node) []string {
	out := []string{n.PodCIDR.String()}
	if n.ControlPlane && p.APIVIP.IsValid() {
		out = append(out, p.APIVIP.String()+"/32 (while /readyz is OK)")
	}
	for _, v := range p.LoadBalancerVIPs {
		out = append(out, v.String()+"/32 (while kube-proxy is healthy)")
	}
	return out
}

func planJSON(p *bgp.Plan) bgpPlanJSON {
	out := bgpPlanJSON{
		Cluster: p.Cluster, Nodes: []bgpNodeJSON{}, Routers: []bgpRouterJSON{},
		Timers:   map[string]int{"keepaliveSeconds": p.KeepaliveSeconds, "holdSeconds": p.HoldSeconds},
		Settings: map[string]any{"asnBase": p.ASNBase, "gracefulRestart": p.GracefulRestart, "restartSeconds": p.RestartSeconds(), "password": !p.Password.IsZero()},
	}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		j := bgpNodeJSON{Name: n.Name, Rack: n.Rack, Center: n.Center, Address: n.Address.String(), ASN: n.ASN,
			RouterID: n.RouterID.String(), Announces: nodeAnnounces(p, n), ControlPlane: n.ControlPlane}
		for _, pe := range n.Peers {
			j.Peers = append(j.Peers, fmt.Sprintf("%s %s AS%d", pe.Name, pe.Address, pe.ASN))
		}
		for _, c := range n.Communities {
			j.Communities = append(j.Communities, c.String())
		}
		out.Nodes = append(out.Nodes, j)
	}
	for _, r := range p.Routers {
		j := bgpRouterJSON{Name: r.Name, Kind: string(r.Kind), Site: r.Site, Address: r.Address.String(), ASN: r.ASN}
		for _, gr := range r.Groups {
			ras := "external"
			if gr.ASN != 0 {
				ras = fmt.Sprint(gr.ASN)
			}
			j.Groups = append(j.Groups, bgpGroupJSON{Name: gr.Name, Rack: gr.Rack, Range: gr.Range.String(), RemoteAS: ras, Nodes: gr.Nodes})
		}
		out.Routers = append(out.Routers, j)
	}
	return out
}

func renderBGPPlan(w io.Writer, p *bgp.Plan) error {
	fmt.Fprintf(w, "Cluster %s: %d nodes, %d routers; timers %d/%d s, graceful restart %s\n\n",
		p.Cluster, len(p.Nodes), len(p.Routers), p.KeepaliveSeconds, p.HoldSeconds, yesNo(p.GracefulRestart))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRACK\tCENTER\tASN\tROUTER-ID\tPEERS\tANNOUNCES")
	for i := range p.Nodes {
		n := &p.Nodes[i]
		var peers []string
		for _, pe := range n.Peers {
			peers = append(peers, fmt.Sprintf("%s(AS%d)", pe.Name, pe.ASN))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.Name, n.Rack, n.Center, n.ASN, n.RouterID,
			strings.Join(peers, ","), strings.Join(nodeAnnounces(p, n), ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTER\tKIND\tSITE\tASN\tPEER-GROUP\tLISTEN-RANGE\tREMOTE-AS\tNODES")
	for _, r := range p.Routers {
		for _, gr := range r.Groups {
			ras := "external"
			if gr.ASN != 0 {
				ras = fmt.Sprint(gr.ASN)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", r.Name, r.Kind, r.Site, r.ASN, gr.Name, gr.Range, ras, len(gr.Nodes))
		}
	}
	return tw.Flush()
}

func newBGPRenderFRRCmd(g *globals) *cobra.Command {
	var file, router, out, stateDir string
	cmd := &cobra.Command{
		Use:   "render-frr -f FILE --router NAME",
		Short: "Render a TOR's or core router's FRR bgpd configuration",
		Long: `render-frr writes the bgpd configuration of one router (a rack's TOR in mode tor,
a site's core router in mode core): one peer group per rack whose nodes peer
with it and each node a neighbor of its own in it (no listen ranges), the
inventory's timers and graceful restart, each rack's TCP-MD5 password
(derived from network.bgp.password and the rack name), a per-node inbound
filter accepting only the node's own pod CIDR, the API VIP from control-plane
nodes and /32s of the load-balancer pool, nothing sent to nodes, and ECMP.
Load it on the router before an apply that adds servers. The output is a
complete bgpd.conf; with a password it holds the racks' passwords in clear,
so --output-file writes it with mode 0600.`,
		Example: `  tricenter bgp render-frr -f cluster.yaml --router core-a1
  tricenter bgp render-frr -f cluster.yaml --router dc1-r01-tor --output-file /etc/frr/bgpd.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadBGPPlan(g, file, stateDir, nil)
			if err != nil {
				return err
			}
			var o bgp.FRROptions
			if !p.Password.IsZero() {
				if o.Password, err = p.Password.Resolve(); err != nil {
					return fmt.Errorf("spec.network.bgp.password: %w", err)
				}
			}
			data, err := bgp.RenderFRR(p, router, o)
			if err != nil {
				return err
			}
			return writeOut(g, out, data, 0o600)
		},
	}
	addInventoryFlag(cmd, &file)
	addStateDirFlag(cmd, &stateDir)
	cmd.Flags().StringVar(&router, "router", "", "router name (racks[].tor.name or sites[].coreRouters[].name)")
	_ = cmd.MarkFlagRequired("router")
	addOutputFileFlag(cmd, &out)
	return cmd
}

func newBGPAgentConfigCmd(g *globals) *cobra.Command {
	var file, node, out, apiURL, stateDir string
	var vips []string
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "agent-config -f FILE --node NAME",
		Short: "Render a node's tricenter-bgp configuration (what the installer writes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadBGPPlan(g, file, stateDir, vips)
			if err != nil {
				return err
			}
			cfg, err := p.AgentConfig(node, bgp.ConfigOptions{APIHealthURL: apiURL, CheckInterval: interval})
			if err != nil {
				return err
			}
			data, err := cfg.Marshal()
			if err != nil {
				return err
			}
			return writeOut(g, out, data, 0o600)
		},
	}
	addInventoryFlag(cmd, &file)
	addStateDirFlag(cmd, &stateDir)
	cmd.Flags().StringVar(&node, "node", "", "server name")
	_ = cmd.MarkFlagRequired("node")
	addOutputFileFlag(cmd, &out)
	cmd.Flags().StringSliceVar(&vips, "vip", nil, "LoadBalancer VIP every node announces (repeatable)")
	cmd.Flags().StringVar(&apiURL, "api-health-url", bgp.DefaultAPIHealthURL, "health check that gates the API VIP")
	cmd.Flags().DurationVar(&interval, "check-interval", bgp.DefaultCheckInterval, "health check interval")
	return cmd
}

func newBGPStatusCmd(g *globals) *cobra.Command {
	var f engineFlags
	var sel selectFlags
	var output string
	var requireVIP bool
	cmd := &cobra.Command{
		Use:   "status -f FILE",
		Short: "Collect every agent's status over SSH and check the gate: sessions Established, prefixes announced",
		Long: `status connects to every node over SSH (through the centers' jump hosts, with
pinned host keys), runs tricenter-bgp status there and checks the gate: every
session the inventory expects is Established and every node announces its
pod CIDR (and, with --require-api-vip, control-plane nodes the API VIP).
Exit status 0 when the gate passes, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			rep, err := e.BGPStatus(cmd.Context(), installer.BGPStatusOptions{Select: sel.selector(), RequireAPIVIP: requireVIP})
			if err != nil {
				return err
			}
			if output == "json" {
				if err := cliflags.WriteJSON(g.stdout, rep); err != nil {
					return err
				}
			} else if err := renderGate(g.stdout, rep); err != nil {
				return err
			}
			if !rep.OK {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	addReadOnlyEngineFlags(cmd, &f)
	addSelectFlags(cmd, &sel)
	cliflags.AddOutput(cmd, &output)
	cmd.Flags().BoolVar(&requireVIP, "require-api-vip", false, "also require control-plane nodes to announce the API VIP")
	return cmd
}

func newBGPInstallCmd(g *globals) *cobra.Command {
	var f engineFlags
	var sel selectFlags
	var binary, apiURL string
	var vips []string
	var dryRun bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "install -f FILE [--dry-run]",
		Short: "Install, configure and start tricenter-bgp on the nodes, then wait for Established sessions",
		Long: `install runs the BGP agent phase (bgp/agent) on the selected nodes: upload
tricenter-bgp (from the artifacts directory), write
/etc/tricenter/bgp/agent.yaml (and the TCP MD5 password file, mode 0600)
rendered from the inventory, install tricenter-bgp.service, start it
(restart when the binary or unit changed, reload when only the
configuration did) and wait until every session is Established. A second
run on unchanged nodes changes nothing. --dry-run prints what would change
on each node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := parseVIPs(vips)
			if err != nil {
				return err
			}
			e, _, err := loadEngineWith(g, &f, func(c *installer.Config) { c.AgentBinary = binary })
			if err != nil {
				return err
			}
			defer e.Close()
			res, runErr := e.InstallBGPAgents(cmd.Context(), installer.BGPAgentOptions{Select: sel.selector(),
				LoadBalancerVIPs: addrs, APIHealthURL: apiURL, EstablishTimeout: wait, DryRun: dryRun})
			if res == nil {
				return runErr
			}
			for _, w := range res.Warnings {
				warn(g, w)
			}
			for _, h := range slices.Sorted(maps.Keys(res.Changes)) {
				for _, ch := range res.Changes[h] {
					fmt.Fprintf(g.stdout, "%s: %s\n", h, ch)
				}
			}
			if len(res.Changes) == 0 && runErr == nil {
				fmt.Fprintln(g.stdout, "BGP agents are converged: nothing to do")
			}
			return runErr
		},
	}
	addReadOnlyEngineFlags(cmd, &f)
	addSelectFlags(cmd, &sel)
	cmd.Flags().StringVar(&binary, "binary", "", "tricenter-bgp to upload (default: spec.kubernetes.artifactDir/tricenter-bgp, else the one beside tricenter)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change on each node, change nothing")
	cmd.Flags().StringSliceVar(&vips, "vip", nil, "LoadBalancer VIP every node announces (repeatable)")
	cmd.Flags().StringVar(&apiURL, "api-health-url", bgp.DefaultAPIHealthURL, "health check that gates the API VIP")
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for Established sessions per node")
	return cmd
}

func renderGate(w io.Writer, rep *bgp.GateReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tOK\tSESSIONS\tPROBLEMS")
	for _, n := range rep.Nodes {
		probs := strings.Join(append(append([]string{}, n.Problems...), n.Notes...), "; ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, yesNo(n.OK), strings.Join(n.Sessions, ", "), probs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.OK {
		fmt.Fprintln(w, "\nBGP gate passed: every expected session is Established and every pod CIDR is announced")
	} else {
		fmt.Fprintln(w, "\nBGP gate FAILED")
	}
	return nil
}
