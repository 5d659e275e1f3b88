package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// exitFenceIncomplete is the exit status of a fence that was refused (a
// server not confirmed off) and of an unfence that left a taint in place.
const exitFenceIncomplete = 2

type fenceFlags struct {
	center, output          string
	assumeDead, yes, dryRun bool
}

// newFenceCmd is tricenter fence; power replaces the BMCs (tests: a
// fake), nil: the BMCs.
func newFenceCmd(g *globals, power installer.PowerControl) *cobra.Command {
	var f engineFlags
	var o fenceFlags
	cmd := &cobra.Command{
		Use:   "fence -f FILE --center CENTER",
		Short: "Confirm a dead center is off through its BMCs, then taint its Nodes out-of-service so its pods move at once",
		Long: `fence makes Kubernetes give up on a dead center at once. Without it the pods of
a NotReady node are evicted only after 300 s, and StatefulSet pods never
move until someone confirms the old ones are dead.

fence asks the BMC of every server of the center for its power state. A
server that is still on is powered off through its BMC after confirmation
(--yes skips the question; without a terminal it is needed) and fence waits
until its BMC reports off. Only when every server is confirmed off does it
taint their Nodes with node.kubernetes.io/out-of-service=nodeshutdown:NoExecute:
on a NotReady Node with that taint kube-controller-manager force-deletes the
pods and detaches their volumes, so StatefulSet pods start in the other
centers.

A server whose BMC does not answer is not confirmed off, and then no Node is
tainted (exit 2): a server that is in fact running and tainted would run a
second copy of its StatefulSet pods. Pass --assume-dead only if you know
those servers are dead (the center lost its power with its BMCs); the
report marks them "assumed dead".

--dry-run asks the BMCs and reads the Nodes, and says what fence would do.
Run it twice: Nodes already tainted are left as they are. Undo it with
tricenter unfence once the servers are back:
  tricenter fence -f cluster.yaml --center dc2 --dry-run
  tricenter fence -f cluster.yaml --center dc2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFence(cmd.Context(), g, &f, &o, power, cmd.InOrStdin())
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &o.output)
	fl := cmd.Flags()
	fl.StringVar(&o.center, "center", "", "the dead center to fence")
	_ = cmd.MarkFlagRequired("center")
	fl.BoolVar(&o.assumeDead, "assume-dead", false, "fence servers whose BMC does not answer as if they were off (only when you know they are dead)")
	fl.BoolVarP(&o.yes, "yes", "y", false, "power off servers of the center that are still on without asking for confirmation")
	fl.BoolVar(&o.dryRun, "dry-run", false, "ask the BMCs and read the Nodes, change nothing and print what fence would do")
	return cmd
}

func runFence(ctx context.Context, g *globals, f *engineFlags, o *fenceFlags, power installer.PowerControl, in io.Reader) error {
	if err := cliflags.CheckOutput(o.output); err != nil {
		return err
	}
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	opts := installer.FenceOptions{Center: o.center, AssumeDead: o.assumeDead, Yes: o.yes, DryRun: o.dryRun, Power: power}
	if !o.yes {
		opts.Confirm = func(ctx context.Context, q string) (bool, error) { return confirm(ctx, g.stderr, in, q) }
	}
	rep, err := e.Fence(ctx, opts)
	if rep != nil {
		if o.output == "json" {
			if jerr := cliflags.WriteJSON(g.stdout, rep); jerr != nil {
				return jerr
			}
		} else {
			printFence(g.stdout, rep, f.file)
		}
	}
	switch {
	case errors.Is(err, installer.ErrFenceRefused):
		return &exitError{code: exitFenceIncomplete, err: err}
	case errors.Is(err, installer.ErrFenceNotConfirmed):
		return &exitError{code: 1, err: err}
	}
	return engineError(err)
}

func printFence(w io.Writer, r *installer.FenceReport, inv string) {
	title := "Fence of center " + r.Center
	if r.DryRun {
		title += " (dry run: nothing was changed)"
	}
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tNODE\tPOWER")
	var errs []string
	for _, s := range r.Servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Node, s.Power)
		if s.Error != "" && !strings.Contains(s.Power, s.Error) {
			errs = append(errs, s.Name+": "+s.Error)
		}
	}
	tw.Flush()
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
	taint := installer.OutOfServiceTaint.ToString()
	switch {
	case r.Refused != "":
		fmt.Fprintf(w, "REFUSED: %s\n", r.Refused)
	case r.DryRun:
		fmt.Fprintf(w, "fence would taint the registered Nodes %s\n", taint)
	case r.Fenced:
		fmt.Fprintf(w, "Fenced: the Nodes carry %s; once they are NotReady kube-controller-manager force-deletes their pods.\n", taint)
		fmt.Fprintf(w, "When the servers are back: tricenter unfence -f %s --center %s\n", shell.Quote(inv), r.Center)
	default:
		fmt.Fprintln(w, "NOT fenced: see the errors above; running fence again is safe")
	}
}

type unfenceFlags struct {
	center, output string
	dryRun         bool
}

func newUnfenceCmd(g *globals) *cobra.Command {
	var f engineFlags
	var o unfenceFlags
	cmd := &cobra.Command{
		Use:   "unfence -f FILE --center CENTER",
		Short: "Take the out-of-service taint off the Nodes of a center that are Ready again",
		Long: `unfence undoes tricenter fence once a center is back. Each Node of the center
is judged now by the health rule of tricenter status (Ready condition True,
a kubelet heartbeat at most two renew intervals old, and the server's boot id
over SSH where it answers): a Ready Node loses the
node.kubernetes.io/out-of-service taint; a Node that is not Ready keeps it
and the report says why. It exits 2 while any Node keeps the taint: run it
again once those servers are up.
  tricenter unfence -f cluster.yaml --center dc2 --dry-run
  tricenter unfence -f cluster.yaml --center dc2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnfence(cmd.Context(), g, &f, &o)
		},
	}
	addEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &o.output)
	fl := cmd.Flags()
	fl.StringVar(&o.center, "center", "", "the center to unfence")
	_ = cmd.MarkFlagRequired("center")
	fl.BoolVar(&o.dryRun, "dry-run", false, "judge the Nodes, change nothing and print what unfence would do")
	return cmd
}

func runUnfence(ctx context.Context, g *globals, f *engineFlags, o *unfenceFlags) error {
	if err := cliflags.CheckOutput(o.output); err != nil {
		return err
	}
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := e.Unfence(ctx, o.center, o.dryRun)
	if rep != nil {
		if o.output == "json" {
			if jerr := cliflags.WriteJSON(g.stdout, rep); jerr != nil {
				return jerr
			}
		} else {
			printUnfence(g.stdout, rep)
		}
	}
	if err != nil {
		return engineError(err)
	}
	if !rep.Unfenced {
		return &exitError{code: exitFenceIncomplete, err: fmt.Errorf("%s of center %s %s the out-of-service taint: not Ready (see WHY)",
			countNodes(unfenceKept(rep)), o.center, plural(unfenceKept(rep), "keeps", "keep"))}
	}
	return nil
}

func unfenceKept(r *installer.UnfenceReport) int {
	n := 0
	for _, s := range r.Servers {
		if s.Node == installer.UnfenceNodeKept {
			n++
		}
	}
	return n
}

func countNodes(n int) string { return fmt.Sprintf("%d %s", n, plural(n, "Node", "Nodes")) }

func printUnfence(w io.Writer, r *installer.UnfenceReport) {
	title := "Unfence of center " + r.Center
	if r.DryRun {
		title += " (dry run: nothing was changed)"
	}
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tNODE\tREADY\tWHY")
	for _, s := range r.Servers {
		ready, why := "yes", "boot "+s.Boot
		if !s.Ready {
			ready, why = "no", s.Reason
		}
		if s.Error != "" {
			why += ": " + s.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Node, ready, why)
	}
	tw.Flush()
}
