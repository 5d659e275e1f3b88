package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newStatusCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status -f FILE",
		Short: "Show the cluster as observed: etcd per center, the API, nodes per center and rack, BGP",
		Long: `status asks the cluster, not the inventory: every etcd member (health, leader,
members per center), /readyz through every control-plane server and through
the API VIP, every server's Node (registered, Ready, version, pod CIDR) by
center and rack, and every BGP agent's sessions. It exits 1 when anything is
not as planned, listing why.

Every line is what was observed now. A node is Ready only when its Ready
condition is True, its kubelet's heartbeat (the node Lease) is at most two
renew intervals old (20 s by default; a dead server's Node keeps its last
Ready condition for the 40 s grace period) and, where the server answers over
SSH, its boot id is the one its kubelet reported (a server rebooted since is
not Ready yet); where it does not answer, the boot id is "not verified".`,
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
			st, err := e.Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				if err := cliflags.WriteJSON(g.stdout, st); err != nil {
					return err
				}
			} else {
				printStatus(g.stdout, st)
			}
			if !st.OK() {
				return &exitError{code: 1, err: fmt.Errorf("%d problems", len(st.Problems))}
			}
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func printStatus(w io.Writer, st *installer.Status) {
	fmt.Fprintf(w, "cluster %s\n", st.Cluster)
	if h := st.Etcd; h != nil {
		fmt.Fprintf(w, "etcd: leader %s, members per center %v\n", leaderName(h), h.PerCenter)
	}
	fmt.Fprintln(w, "API:")
	for _, a := range st.API {
		state := "ready"
		if !a.Ready {
			state = "NOT READY"
		}
		fmt.Fprintf(w, "  %-16s %-34s %s\n", a.Name, a.URL, state)
	}
	fmt.Fprintln(w, "nodes (Ready: condition True, kubelet heartbeat fresh, server's boot id the one its kubelet reported):")
	fmt.Fprintf(w, "  %-8s %-12s %-16s %-9s %-9s %-14s %-10s %s\n", "CENTER", "RACK", "NAME", "STATUS", "HEARTBEAT", "BOOT ID", "VERSION", "POD CIDR")
	for _, n := range st.Nodes {
		s, hb := "Ready", "-"
		switch {
		case !n.Registered && n.Reason != "" && strings.HasPrefix(n.Reason, "not verified"):
			s = "unknown"
		case !n.Registered:
			s = "absent"
		case !n.Ready:
			s = "NotReady"
		}
		if n.Registered && n.Heartbeat > 0 {
			hb = n.Heartbeat.Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "  %-8s %-12s %-16s %-9s %-9s %-14s %-10s %s\n", n.Center, n.Rack, n.Name, s, hb, bootWord(n.Boot), n.Version, n.PodCIDR)
	}
	if len(st.BGP)+len(st.BGPNotVerified) > 0 {
		fmt.Fprintln(w, "BGP:")
		for _, n := range slices.Sorted(maps.Keys(st.BGP)) {
			b := st.BGP[n]
			up := 0
			for _, s := range b.Sessions {
				if s.Established() {
					up++
				}
			}
			var pfx []string
			for _, a := range b.Announced {
				pfx = append(pfx, a.Prefix)
			}
			fmt.Fprintf(w, "  %-16s %d/%d sessions Established, announcing %s\n", n, up, len(b.Sessions), strings.Join(pfx, " "))
		}
		for _, n := range slices.Sorted(maps.Keys(st.BGPNotVerified)) {
			fmt.Fprintf(w, "  %-16s not verified (the agent could not be asked)\n", n)
		}
	}
	if len(st.Problems) > 0 {
		fmt.Fprintln(w, "problems:")
		for _, p := range st.Problems {
			fmt.Fprintln(w, "  -", p)
		}
	}
}

// bootWord is the boot id check in one column; the whole reason is in the
// problems.
func bootWord(b string) string {
	switch {
	case b == "":
		return "-"
	case strings.HasPrefix(b, "not verified"):
		return "not verified"
	case strings.HasPrefix(b, "differs"):
		return "DIFFERS"
	}
	return b
}
