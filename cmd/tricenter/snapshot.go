package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "The scheduled etcd snapshots (spec.etcd.snapshots): where they are kept, and their state",
	}
	cmd.AddCommand(newSnapshotListCmd(g), newSnapshotVerifyCmd(g))
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

func newSnapshotVerifyCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output, id string
	var servers []string
	cmd := &cobra.Command{
		Use:   "verify -f FILE [--server NAME]... [--id ID]",
		Short: "Rehearse a restore of each store's newest snapshot into a throw-away etcd here, and compare it with its record",
		Long: `Fetches each store's newest snapshot (or --id, with one --server), opens it with
the state's snapshot key, restores it with etcdutl into a throw-away etcd on
this machine's loopback (the artifacts' binaries of the cluster's etcd
release), and compares the restored revision and key count with what the
snapshot recorded when it was taken. The result is recorded next to the
snapshot on its store; tricenter status shows the newest rehearsed snapshot
per center. Exit status 2 when a snapshot could not be restored or differs.`,
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
			res, err := e.VerifySnapshots(cmd.Context(), installer.VerifyOptions{Servers: servers, ID: id})
			if err != nil {
				return engineError(err)
			}
			bad := false
			for _, v := range res {
				bad = bad || !v.OK()
			}
			if output == "json" {
				if err := cliflags.WriteJSON(g.stdout, res); err != nil {
					return err
				}
			} else {
				for _, v := range res {
					switch {
					case v.Error != "":
						fmt.Fprintf(g.stdout, "%s (%s): not verified: %s\n", v.Center, v.Server, v.Error)
					case v.Result.OK:
						fmt.Fprintf(g.stdout, "%s (%s): %s restored by etcd %s in %v: revision %d (recorded %d), %d keys at it as recorded\n",
							v.Center, v.Server, v.Snapshot.ID, v.Result.EtcdVersion, v.Result.Took, v.Result.Revision, v.Snapshot.Revision, v.Result.Keys)
					default:
						fmt.Fprintf(g.stdout, "%s (%s): %s restored but differs from its record: %s\n", v.Center, v.Server, v.Snapshot.ID, v.Result.Detail)
					}
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
	cmd.Flags().StringSliceVar(&servers, "server", nil, "only these stores (default: every store)")
	cmd.Flags().StringVar(&id, "id", "", "rehearse this snapshot (with one --server) instead of the newest")
	return cmd
}
