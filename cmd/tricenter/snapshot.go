package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "The scheduled etcd snapshots (spec.etcd.snapshots): where they are kept, and their state",
	}
	cmd.AddCommand(newSnapshotListCmd(g))
	return cmd
}

func newSnapshotListCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output string
	cmd := &cobra.Command{
		Use:   "list -f FILE",
		Short: "Every store's snapshots, newest first, each sealed file hashed now and compared with its record",
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
			if e.Cluster().Spec.Etcd.Snapshots == nil {
				return fmt.Errorf("spec.etcd.snapshots is not set: the cluster schedules no snapshots (tricenter etcd snapshot takes one by hand)")
			}
			stores, err := e.ListSnapshots(cmd.Context())
			if err != nil {
				return engineError(err)
			}
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, stores)
			}
			now := time.Now()
			bad := false
			for _, s := range stores {
				fmt.Fprintf(g.stdout, "%s (%s):\n", s.Center, s.Server)
				switch {
				case s.Error != "":
					bad = true
					fmt.Fprintf(g.stdout, "  not verified (%s)\n", s.Error)
					continue
				case len(s.Snapshots) == 0:
					bad = true
					fmt.Fprintln(g.stdout, "  none")
					continue
				}
				fmt.Fprintf(g.stdout, "  %-52s %-9s %-10s %-7s %-9s %-22s %s\n", "ID", "AGE", "REVISION", "KEYS", "SIZE", "TAKEN FROM", "SEALED FILE")
				for _, x := range s.Snapshots {
					if x.Check != "ok" {
						bad = true
					}
					fmt.Fprintf(g.stdout, "  %-52s %-9s %-10d %-7d %-9s %-22s %s\n", x.ID, now.Sub(x.TakenAt).Round(time.Second), x.Revision, x.Keys,
						humanBytes(x.SealedBytes), x.Member+" ("+x.MemberCenter+")", x.Check)
				}
			}
			if bad {
				return &exitError{code: 2}
			}
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	return cmd
}
