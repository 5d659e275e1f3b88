package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func newPlanCmd(g *globals) *cobra.Command {
	var file, output, stateDir string
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show placement, IPAM and the failure-domain report for an inventory",
		Long: `Plan validates an inventory and shows what tricenter derives from it before
touching any host: servers per center and rack with their roles, the etcd
members and control plane placed across the three centers, etcd timers,
the IP plan (pod CIDR per node, service IPs, VIPs) and, for every center,
site and rack, whether etcd keeps quorum when it is lost.

The JSON output (-o json) is a stable contract for scripts: etcd.members[]
(name, site, center, rack, address), etcd.failureDomains[] (kind, name,
lost, remaining, quorumKept), centers[].racks[].servers[] and ipam.

When the state directory holds a previous apply of this cluster, its pod
CIDRs and etcd members are kept: the plan shows what the next apply does.`,
		Example: `  tricenter plan -f examples/inventory/three-center.yaml
  tricenter plan -f cluster.yaml -o json | jq '.etcd.failureDomains[] | select(.kind=="center")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			_, p, _, err := g.loadPlan(file, stateDir)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, p)
			}
			return renderPlan(g.stdout, p)
		},
	}
	addInventoryFlag(cmd, &file)
	cliflags.AddOutput(cmd, &output)
	addStateDirFlag(cmd, &stateDir)
	return cmd
}

func renderPlan(out io.Writer, p *inventory.Plan) error {
	s := p.Summary
	fmt.Fprintf(out, "Cluster %s: %d sites, %d centers, %d racks, %d servers\n\n", p.Cluster, s.Sites, s.Centers, s.Racks, s.Servers)

	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CENTER\tSITE\tROLE\tRACK\tTOR\tSUBNET\tSERVERS\tETCD\tCONTROL-PLANE\tWORKERS")
	for _, ctr := range p.Centers {
		for _, r := range ctr.Racks {
			var etcd, cp, workers int
			for _, n := range r.Servers {
				if n.Etcd {
					etcd++
				}
				if n.ControlPlane {
					cp++
				}
				for _, role := range n.Roles {
					if role == inventory.RoleWorker {
						workers++
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", ctr.Name, ctr.Site, ctr.Role, r.Name, r.TOR, r.Subnet, len(r.Servers), etcd, cp, workers)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	e := p.Etcd
	var per []string
	for _, ctr := range p.Centers {
		per = append(per, fmt.Sprintf("%s %d", ctr.Name, e.PerCenter[ctr.Name]))
	}
	fmt.Fprintf(out, "\netcd: %d members, quorum %d (%s)\n", e.Count, e.Quorum, strings.Join(per, ", "))
	src := fmt.Sprintf("derived from the largest inter-center RTT, %.1f ms", e.Timers.MaxRTTMs)
	if e.Timers.Source == "override" {
		src = "set in spec.etcd"
	}
	fmt.Fprintf(out, "timers: heartbeat %d ms, election timeout %d ms (%s)\n", e.Timers.HeartbeatMs, e.Timers.ElectionTimeoutMs, src)
	fmt.Fprintf(out, "survives the loss of any one center: %s; local site holds a quorum: %s\n", yesNo(e.SurvivesCenterLoss), yesNo(e.LocalSiteQuorum))
	if e.Degraded {
		fmt.Fprintln(out, "DEGRADED placement (accepted by spec.etcd.allowDegradedPlacement)")
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSITE\tCENTER\tRACK\tADDRESS")
	for _, m := range e.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Site, m.Center, m.Rack, m.Address)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if sp := p.Snapshots; sp != nil {
		fmt.Fprintf(out, "\netcd snapshots every %s, the newest %d kept by each store, taken only from the other site:\n", sp.Every, sp.Keep)
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STORE\tCENTER\tSITE\tTAKES FROM (in order)")
		for _, st := range sp.Stores {
			var from []string
			for _, m := range st.Sources {
				from = append(from, m.Name+"@"+m.Center)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", st.Server.Name, st.Server.Center, st.Server.Site, strings.Join(from, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	cpNote := ""
	if p.Stacked {
		cpNote = " (stacked on the etcd members: no server has the control-plane role)"
	}
	names := make([]string, 0, len(p.ControlPlane))
	for _, m := range p.ControlPlane {
		names = append(names, m.Name+"@"+m.Center)
	}
	fmt.Fprintf(out, "\ncontrol plane: %d servers%s: %s\n", len(p.ControlPlane), cpNote, strings.Join(names, ", "))

	fmt.Fprintln(out, "\nFailure domains (racks without etcd members omitted):")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tLOST\tREMAINING\tQUORUM\tNOTE")
	for _, fd := range p.Etcd.FailureDomains {
		if fd.Kind == "rack" && len(fd.Lost) == 0 {
			continue
		}
		q := "kept"
		if !fd.QuorumKept {
			q = "LOST"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", fd.Kind, fd.Name, listOrDash(fd.Lost), len(fd.Remaining), q, fd.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	ip := p.IPAM
	fmt.Fprintf(out, "\nIPAM: pods %s (/%d per node), services %s (kubernetes %s, DNS %s), API VIP %s, LoadBalancer pool %s (%d free)\n",
		ip.PodCIDR, ip.PodMaskSize, ip.ServiceCIDR, ip.KubernetesServiceIP, ip.ClusterDNSIP, ip.APIVIP, strings.Join(ip.LoadBalancerPool, ", "), ip.LoadBalancerFree)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CENTER\tRACK\tSERVER\tROLES\tADDRESS\tPOD CIDR\tETCD\tCONTROL-PLANE")
	for _, ctr := range p.Centers {
		for _, r := range ctr.Racks {
			for _, n := range r.Servers {
				roles := make([]string, len(n.Roles))
				for i, x := range n.Roles {
					roles[i] = string(x)
				}
				sort.Strings(roles)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ctr.Name, r.Name, n.Name, strings.Join(roles, ","), n.Address, n.PodCIDR, mark(n.Etcd), mark(n.ControlPlane))
			}
		}
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func mark(b bool) string {
	if b {
		return "*"
	}
	return ""
}

func listOrDash(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ",")
}
