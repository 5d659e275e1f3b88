package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func newEtcdCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Inspect the etcd cluster: status and snapshots",
	}
	cmd.AddCommand(newEtcdStatusCmd(g), newEtcdSnapshotCmd(g))
	return cmd
}

func newEtcdStatusCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status -f FILE",
		Short: "Members per center, leader, raft index, DB size, certificate expiry and peer RTTs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			rep, err := e.EtcdStatus(cmd.Context())
			if err != nil {
				return engineError(err)
			}
			if output == "json" {
				if err := cliflags.WriteJSON(g.stdout, rep); err != nil {
					return err
				}
			} else {
				printEtcdStatus(g, e.Placement(), rep)
			}
			if !rep.Healthy {
				return &exitError{code: 2}
			}
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func printEtcdStatus(g *globals, p *inventory.Placement, r *installer.EtcdStatus) {
	w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tCENTER\tADDRESS\tHEALTHY\tLEADER\tRAFT TERM\tRAFT INDEX\tDB SIZE\tVERSION\tSERVER CERT EXPIRES")
	for i, m := range p.Etcd.Members {
		st := r.Health.Endpoints[i]
		healthy := "yes"
		if !st.Healthy {
			healthy = "NO"
		}
		leader := ""
		if st.MemberID != 0 && st.MemberID == r.Health.Leader {
			leader = "*"
		}
		exp := ""
		if !st.CertNotAf.IsZero() {
			exp = st.CertNotAf.UTC().Format("2006-01-02")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", m.Name, m.Center, m.Address, healthy, leader,
			st.RaftTerm, st.RaftIndex, humanBytes(st.DBSize), st.Version, exp)
	}
	w.Flush()
	var per []string
	for _, c := range slices.Sorted(maps.Keys(r.PlannedPerCenter)) {
		per = append(per, fmt.Sprintf("%s %d/%d", c, r.Health.PerCenter[c], r.PlannedPerCenter[c]))
	}
	fmt.Fprintf(g.stdout, "\nVoting members per center (healthy/planned): %s\n", strings.Join(per, ", "))
	if len(r.PeerRTTs) > 0 {
		fmt.Fprintln(g.stdout, "\nPeer round trips (etcd's own measurement, mean since start):")
		sort.Slice(r.PeerRTTs, func(i, j int) bool {
			a, b := r.PeerRTTs[i], r.PeerRTTs[j]
			return a.From < b.From || a.From == b.From && a.To < b.To
		})
		for _, p := range r.PeerRTTs {
			fmt.Fprintf(g.stdout, "  %s → %s  %v  (%d samples)\n", p.From, p.To, p.Mean.Round(10*time.Microsecond), p.Samples)
		}
	}
	fmt.Fprintln(g.stdout, "\nCertificates (state directory):")
	for _, c := range r.Certificates {
		fmt.Fprintf(g.stdout, "  %-14s %-24s expires %s\n", c.Authority, c.Name, c.NotAfter.UTC().Format("2006-01-02"))
	}
	if len(r.Health.Problems) > 0 {
		fmt.Fprintln(g.stdout, "\nProblems:")
		for _, p := range r.Health.Problems {
			fmt.Fprintln(g.stdout, "  "+p)
		}
	} else {
		fmt.Fprintf(g.stdout, "\nHealthy: every member answers, leader %s\n", leaderName(r.Health))
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func newEtcdSnapshotCmd(g *globals) *cobra.Command {
	var f engineFlags
	var to, output string
	cmd := &cobra.Command{
		Use:   "snapshot -f FILE [--to DIR]",
		Short: "Save a snapshot from a healthy member, with its sha256",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			res, err := e.EtcdSnapshot(cmd.Context(), to)
			if err != nil {
				return engineError(err)
			}
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "Snapshot from %s: %s (%s)\nsha256 %s (recorded in %s.sha256)\n",
				res.Member, res.Path, humanBytes(res.Size), res.SHA256, res.Path)
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	cmd.Flags().StringVar(&to, "to", "", "directory for the snapshot (default: the state directory's snapshots/)")
	return cmd
}
