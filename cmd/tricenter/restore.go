package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

type restoreFlags struct {
	lost             []string
	snapshot, output string
	yes, dryRun      bool
	waitReachable    time.Duration
}

// newRestoreCmd is tricenter restore; power replaces the BMCs of the
// lost centers' fence (tests: a fake), nil: the BMCs.
func newRestoreCmd(g *globals, power installer.PowerControl) *cobra.Command {
	var f engineFlags
	var o restoreFlags
	cmd := &cobra.Command{
		Use:   "restore -f FILE [--lost CENTER,...] [--snapshot ID] [--dry-run]",
		Short: "Bring a cluster that lost its etcd quorum back from a snapshot, onto the servers left and replacement servers",
		Long: `restore brings back a cluster whose etcd lost its quorum, for example after the
loss of a whole site (production and local DR), from a scheduled snapshot
(spec.etcd.snapshots) kept on the servers that are left.

Mark the lost centers with --lost (or lost: true on the centers in the
inventory): nothing connects to their servers, and etcd is placed on what is
left. Add replacement servers to the inventory first when the centers left
have too few: new names and new addresses, the restore does not need the lost
servers' ones.

restore refuses while any etcd member, lost centers' included, serves a
linearizable read: a restore is not a way to repair a cluster that has a
quorum (apply is). Otherwise it reads what every server left holds and
takes the newest snapshot whose sealed file matches its record (--snapshot
ID chooses another); fetches and opens it here with the state's snapshot key
and rehearses it in a throw-away etcd on this machine, before touching any
server. Then, on every planned etcd member, it stops etcd, moves its data
aside (/var/lib/etcd.before-restore-ID) and rebuilds it from the snapshot for
the new membership, and starts them together; the BGP agents and the control
plane follow, and the API answers behind the VIP again. It fences the lost
centers (their Nodes tainted out-of-service, the servers assumed dead; those
whose BMC says on are powered off), so their pods move at once, and runs a
full apply. The nodes left keep their installation and reconnect.

Everything written after the snapshot was taken is lost: the report gives the
snapshot's time. --dry-run finds, opens and rehearses the snapshot and plans the etcd
restore. Without a
terminal, --yes is needed.

The state (certificate authorities, snapshot key) must be there: use a copy
kept outside the lost site (tricenter state restore).
  tricenter restore -f cluster.yaml --lost dc1,dc2 --dry-run
  tricenter restore -f cluster.yaml --lost dc1,dc2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRestore(cmd.Context(), g, &f, &o, power, cmd.InOrStdin())
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &o.output)
	fl := cmd.Flags()
	fl.StringSliceVar(&o.lost, "lost", nil, "centers lost in the disaster (in addition to those the inventory marks lost)")
	fl.StringVar(&o.snapshot, "snapshot", "", "the snapshot ID to restore (default: the newest good one on the servers left)")
	fl.BoolVarP(&o.yes, "yes", "y", false, "restore without asking for confirmation")
	fl.BoolVar(&o.dryRun, "dry-run", false, "find, open and rehearse the snapshot and plan the etcd restore; change nothing")
	fl.DurationVar(&o.waitReachable, "wait-reachable", 0, "first wait this long for every server to accept SSH (replacement servers just powered on)")
	return cmd
}

func runRestore(ctx context.Context, g *globals, f *engineFlags, o *restoreFlags, power installer.PowerControl, in io.Reader) error {
	if err := cliflags.CheckOutput(o.output); err != nil {
		return err
	}
	var markErr error
	e, _, err := loadEngineWith(g, f, func(cfg *installer.Config) { markErr = cfg.Cluster.MarkLost(o.lost) })
	if markErr != nil {
		return markErr
	}
	if err != nil {
		return err
	}
	defer e.Close()
	opts := installer.RestoreOptions{Snapshot: o.snapshot, Power: power, WaitReachable: o.waitReachable, DryRun: true}
	if !o.dryRun && !o.yes {
		// The plan first: what would be restored, from where, onto what.
		rep, err := e.Restore(ctx, opts)
		if rep != nil && o.output != "json" {
			printRestore(g.stdout, rep)
		}
		if err != nil {
			return engineError(err)
		}
		q := fmt.Sprintf("Restore snapshot %s (taken %s) onto %s? Everything written after it is lost",
			rep.Snapshot.ID, rep.Snapshot.TakenAt.Format(time.RFC3339), strings.Join(rep.Members, ", "))
		if ok, err := confirm(ctx, g.stderr, in, q); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("restore not confirmed: nothing was changed")
			}
			return err
		}
		opts.Snapshot = rep.Snapshot.ID
	}
	opts.DryRun = o.dryRun
	rep, err := e.Restore(ctx, opts)
	if rep != nil {
		if o.output == "json" {
			if jerr := cliflags.WriteJSON(g.stdout, rep); jerr != nil {
				return jerr
			}
		} else {
			printRestore(g.stdout, rep)
		}
	}
	return engineError(err)
}

func printRestore(w io.Writer, r *installer.RestoreReport) {
	title := "Restore"
	if r.DryRun {
		title += " (dry run: nothing was changed)"
	}
	fmt.Fprintln(w, title)
	if len(r.Lost) > 0 {
		fmt.Fprintf(w, "lost centers: %s (servers %s)\n", strings.Join(r.Lost, ", "), strings.Join(r.LostServers, ", "))
	} else {
		fmt.Fprintln(w, "lost centers: none marked")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tCENTER\tSNAPSHOTS\tNEWEST")
	for _, s := range r.Stores {
		switch n := s.Newest(); {
		case s.Error != "":
			fmt.Fprintf(tw, "%s\t%s\t-\tnot read: %s\n", s.Server, s.Center, installer.FirstLine(s.Error))
		case n == nil:
			fmt.Fprintf(tw, "%s\t%s\t%d\tnone matches its record\n", s.Server, s.Center, len(s.Snapshots))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Server, s.Center, len(s.Snapshots), n.ID)
		}
	}
	_ = tw.Flush()
	if s := r.Snapshot; s != nil {
		fmt.Fprintf(w, "snapshot: %s from %s, taken %s (%s ago), revision %d, %d keys, %d bytes\n",
			s.ID, r.From, s.TakenAt.Format(time.RFC3339), time.Since(s.TakenAt).Round(time.Second), s.Revision, s.Keys, s.PlainBytes)
		fmt.Fprintf(w, "  writes after %s are lost\n", s.TakenAt.Format(time.RFC3339))
	}
	if x := r.Rehearsal; x != nil {
		fmt.Fprintf(w, "rehearsal here: revision %d, %d keys, in %v\n", x.Revision, x.Keys, x.Took.Round(time.Millisecond))
	}
	var ms []string
	for _, m := range r.Members {
		if slices.Contains(r.New, m) {
			m += " (new)"
		}
		ms = append(ms, m)
	}
	if len(ms) > 0 {
		fmt.Fprintf(w, "etcd members after the restore: %s\n", strings.Join(ms, ", "))
	}
	for _, fr := range r.Fences {
		printFence(w, fr, "")
	}
	if !r.DryRun && r.Done > 0 {
		fmt.Fprintf(w, "etcd and the control plane back on every member after %v, everything converged after %v; %d bytes moved\n",
			r.ControlPlane.Round(time.Second), r.Done.Round(time.Second), r.BytesMoved)
	}
}
