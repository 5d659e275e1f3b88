package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func newApplyCmd(g *globals) *cobra.Command {
	var f engineFlags
	var only, skip, servers []string
	var listPhases bool
	var output string
	var yes, planOnly, verify bool
	var waitReachable time.Duration
	var acceptRisk bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE [--only COMPONENT,...] [--servers NAME,...]",
		Short: "Plan, confirm and converge the hosts on the inventory",
		Long: `apply computes what differs between the inventory and the hosts (a dry run
of the very code that applies it), prints that plan, asks for confirmation
(or takes --yes) and converges: etcd, the BGP agents, the control plane,
the node agents and the add-ons, in that order, then the verification gates.
When nothing differs it changes nothing.

--only limits the run to some components (etcd, bgp, control-plane, nodes,
addons); --servers limits the per-node components to some servers (adding a
worker touches only it).

An inventory whose etcd placement would not survive the loss of a center is
refused before any host is touched (unless etcd.allowDegradedPlacement).

The plan shows, for each etcd membership change, the voting members per
center after it and whether the loss of each center keeps quorum. Growing or
shrinking etcd (3, 5, 7) and moving members pass through states where one
center's loss would lose quorum: the plan lists each such window (from which
step until which, and how long it may last), and apply refuses to start it
unless --accept-transient-risk.`,
		Example: `  tricenter apply -f cluster.yaml
  tricenter apply -f cluster.yaml --dry-run -o json
  tricenter apply -f cluster.yaml --only etcd --yes
  tricenter apply -f cluster.yaml --servers dc1-r02-w03 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			if cmd.Flags().Changed("plan") {
				warn(g, "--plan is deprecated: use --dry-run (--plan goes in the next release)")
			}
			if listPhases {
				return printPhases(g, output)
			}
			if err := installer.CheckSelection(only, skip); err != nil {
				return fmt.Errorf("--only/--skip-phases: %w", err)
			}
			return runApply(cmd.Context(), g, &f, installer.Options{Only: only, Skip: skip, Servers: servers, Verify: verify, WaitReachable: waitReachable, AcceptTransientRisk: acceptRisk}, yes, planOnly, output, cmd.InOrStdin())
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	cmd.Flags().StringSliceVar(&only, "only", nil, "components (etcd, bgp, control-plane, nodes, addons, gates) or phase IDs to run (default: all; --list-phases lists them)")
	cmd.Flags().StringSliceVar(&skip, "skip-phases", nil, "components or phase IDs to leave out")
	cmd.Flags().BoolVar(&listPhases, "list-phases", false, "print the workflow's phases in order, with their IDs, and exit")
	cmd.Flags().StringSliceVar(&servers, "servers", nil, "limit the per-node components to these servers")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "apply without asking for confirmation")
	cmd.Flags().BoolVar(&planOnly, "dry-run", false, "print the plan and stop: every phase runs with the mutation gate recording what it would change")
	cmd.Flags().BoolVar(&planOnly, "plan", false, "print the plan and stop (the old name of --dry-run)")
	// Hidden, warning on stderr (pflag's deprecation notice would go to
	// stdout, into -o json).
	_ = cmd.Flags().MarkHidden("plan")
	cmd.Flags().BoolVar(&verify, "verify", false, "run every gate even when nothing changed (the pod gate creates pods)")
	cmd.Flags().DurationVar(&waitReachable, "wait-reachable", 0, "first wait up to this long for every server to accept SSH (servers just powered on through their BMCs are still booting)")
	cmd.Flags().BoolVar(&acceptRisk, "accept-transient-risk", false, "run etcd membership changes that pass through states where the loss of one center loses quorum (the plan lists those windows)")
	return cmd
}

type applyReport struct {
	Plan      *installer.Result `json:"plan"`
	Applied   *installer.Result `json:"applied,omitempty"`
	Converged bool              `json:"converged"`
	PlanTime  time.Duration     `json:"planTime"`
	ApplyTime time.Duration     `json:"applyTime,omitempty"`
}

func runApply(ctx context.Context, g *globals, f *engineFlags, o installer.Options, yes, planOnly bool, output string, in io.Reader) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	rep := &applyReport{}
	start := time.Now()
	if planOnly {
		plan, err := e.Plan(ctx, o)
		rep.Plan, rep.PlanTime = plan, time.Since(start)
		if err != nil {
			return fmt.Errorf("planning: %w", err)
		}
		if output == "table" {
			printPlan(g.stdout, e, plan)
		}
		rep.Converged = plan.Converged()
		if output == "json" {
			return cliflags.WriteJSON(g.stdout, rep)
		}
		if rep.Converged && !hasAPIComponents(plan, o) {
			fmt.Fprintf(g.stdout, "converged: nothing to do (checked in %v)\n", rep.PlanTime.Round(time.Millisecond))
		}
		return nil
	}
	// One run: the plan, shown and confirmed, then the apply that relies
	// on it, under one lock (Engine.PlanApply).
	planned, nothingToDo := false, false
	_, res, err := e.PlanApply(ctx, o, func(plan *installer.Result) (bool, error) {
		planned = true
		rep.Plan, rep.PlanTime = plan, time.Since(start)
		if output == "table" {
			printPlan(g.stdout, e, plan)
		}
		if plan.Converged() && !hasAPIComponents(plan, o) {
			rep.Converged, nothingToDo = true, true
			return false, nil
		}
		if plan.Etcd != nil {
			// The engine refuses it too; refusing here spares the question.
			if err := etcd.CheckRisks(plan.Etcd.Risks, o.AcceptTransientRisk); err != nil {
				return false, fmt.Errorf("not applied: %w", err)
			}
		}
		if !plan.Converged() && !yes {
			ok, err := confirm(ctx, g.stdout, in, "Apply these changes?")
			if err != nil {
				return false, err
			}
			if !ok {
				return false, &exitError{code: 1, err: fmt.Errorf("not applied")}
			}
		}
		start = time.Now()
		return true, nil
	})
	if res == nil {
		switch {
		case err != nil && !planned:
			return fmt.Errorf("planning: %w", err)
		case err != nil:
			if output == "json" {
				_ = cliflags.WriteJSON(g.stdout, rep)
			}
			return err
		case output == "json":
			return cliflags.WriteJSON(g.stdout, rep)
		case nothingToDo:
			fmt.Fprintf(g.stdout, "converged: nothing to do (checked in %v)\n", rep.PlanTime.Round(time.Millisecond))
		}
		return nil
	}
	rep.Applied, rep.ApplyTime = res, time.Since(start)
	rep.Converged = res.Converged()
	if output == "json" {
		if werr := cliflags.WriteJSON(g.stdout, rep); werr != nil && err == nil {
			err = werr
		}
	} else {
		printApplied(g.stdout, e, res, rep.ApplyTime)
	}
	if err != nil {
		return fmt.Errorf("applying: %w", err)
	}
	return nil
}

// hasAPIComponents: the plan cannot know what the add-ons change through
// the API, nor what a gate asked for by name will find, so such a run goes
// on to apply even when the hosts are converged.
func hasAPIComponents(r *installer.Result, o installer.Options) bool {
	for _, c := range r.Components {
		if c == installer.Addons {
			return true
		}
	}
	for _, n := range o.Only {
		for _, x := range strings.Split(n, ",") {
			if x = strings.TrimSpace(x); x == string(installer.Gates) || strings.HasPrefix(x, string(installer.Gates)+"/") {
				return true
			}
		}
	}
	return false
}

// printPhases prints the one workflow: what apply runs, in order.
func printPhases(g *globals, output string) error {
	wf := installer.Workflow()
	if output == "json" {
		return cliflags.WriteJSON(g.stdout, wf)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tCOMPONENT\tDESCRIPTION")
	for _, p := range wf {
		d := p.Description
		if p.Always {
			d += " (always)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.ID, p.Component, d)
	}
	return tw.Flush()
}

func printPlan(w io.Writer, e *installer.Engine, r *installer.Result) {
	for _, c := range r.Components {
		if c == installer.Etcd && r.Etcd != nil {
			printEtcdPlan(w, e.Cluster(), e.Placement(), r.Etcd)
		}
	}
	if len(r.Changes) == 0 {
		fmt.Fprintln(w, "no host changes")
		return
	}
	fmt.Fprintf(w, "changes on %d hosts:\n", len(r.Changes))
	for _, h := range r.Hosts() {
		fmt.Fprintf(w, "  %s:\n", h)
		for _, c := range r.Changes[h] {
			fmt.Fprintf(w, "    %s\n", c)
		}
	}
}

func printApplied(w io.Writer, e *installer.Engine, r *installer.Result, took time.Duration) {
	fmt.Fprintf(w, "applied %s in %v: %d hosts changed\n", joinComps(r.Components), took.Round(time.Millisecond), len(r.Changes))
	for _, t := range r.Timings {
		fmt.Fprintf(w, "  %-14s %v\n", t.Component, t.Took.Round(time.Millisecond))
	}
	if len(r.Reused) > 0 {
		fmt.Fprintf(w, "  not walked again (converged in this run's plan): %s\n", joinComps(r.Reused))
	}
	if r.Lock != "" {
		fmt.Fprintf(w, "locks held: %s\n", r.Lock)
	}
	for _, j := range r.JumpHosts {
		fmt.Fprintln(w, j.String())
	}
	if r.Etcd != nil && r.Etcd.Health != nil {
		leader := leaderName(r.Etcd.Health)
		if r.Etcd.Leader != "" && r.Etcd.LeaderCenter != "" {
			leader = r.Etcd.Leader + " (" + r.Etcd.LeaderCenter + ")"
		}
		fmt.Fprintf(w, "etcd: %d members healthy, leader %s\n", len(e.Placement().Etcd.Members), leader)
	}
	if r.Etcd != nil && r.Etcd.LeaderMoved != "" {
		fmt.Fprintf(w, "etcd: leader moved into the production center: %s (no host changed)\n", r.Etcd.LeaderMoved)
	}
	for _, gt := range r.Gates {
		mark := "ok"
		switch {
		case gt.NotRun != "":
			fmt.Fprintf(w, "gate %-40s not run: %s\n", gt.Name, gt.NotRun)
			continue
		case !gt.OK:
			mark = "FAILED"
		}
		fmt.Fprintf(w, "gate %-40s %-6s %v  %s\n", gt.Name, mark, gt.Took.Round(time.Millisecond), gt.Detail)
	}
	for _, x := range r.Warnings {
		fmt.Fprintln(w, "Warning:", x)
	}
}

func joinComps(cs []installer.Component) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

func printEtcdPlan(w io.Writer, c *inventory.Cluster, pl *inventory.Placement, r *etcd.Result) {
	p := pl.Etcd
	fmt.Fprintf(w, "etcd plan for %s: %d members (quorum %d), heartbeat %d ms, election timeout %d ms\n",
		c.Metadata.Name, p.Count, p.Quorum, p.Timers.HeartbeatMs, p.Timers.ElectionTimeoutMs)
	for _, ctr := range slices.Sorted(maps.Keys(p.PerCenter)) {
		var names []string
		for _, m := range p.Members {
			if m.Center == ctr {
				names = append(names, m.Name)
			}
		}
		fmt.Fprintf(w, "  %-12s %d  %s\n", ctr, p.PerCenter[ctr], strings.Join(names, ", "))
	}
	if r.Bootstrap {
		fmt.Fprintln(w, "  bootstrap a new cluster")
	}
	if r.Membership != nil && len(r.Steps) > 0 {
		fmt.Fprintf(w, "  voting members now: %s\n", r.Membership)
	}
	for i, s := range r.Steps {
		fmt.Fprintf(w, "  membership %d: %s\n", i+1, s)
		fmt.Fprintf(w, "    then %s\n", s.After)
	}
	transient := false
	for _, k := range r.Risks {
		kind := "exposed"
		if k.Transient {
			kind, transient = "risk window", true
		}
		fmt.Fprintf(w, "  %s: %s\n", kind, k)
	}
	if transient {
		fmt.Fprintln(w, "  apply runs these windows only with --accept-transient-risk")
	}
}

func leaderName(h *etcd.ClusterHealth) string {
	if h == nil {
		return "unknown"
	}
	for _, m := range h.Members {
		if m.ID == h.Leader {
			return m.Name
		}
	}
	return fmt.Sprintf("%x", h.Leader)
}

// confirm asks q on w and reads the answer from in: "y" or "yes" goes
// ahead. A stdin that is not a terminal cannot answer (--yes must), nor
// one that held the inventory (-f -: in is the terminal then); an
// interrupt (ctx) ends the wait.
func confirm(ctx context.Context, w io.Writer, in io.Reader, q string) (bool, error) {
	if _, ok := in.(noTerminal); ok {
		return false, errNoTerminal
	}
	if f, ok := in.(*os.File); ok && !isTTY(f) {
		return false, fmt.Errorf("stdin is not a terminal, so nobody can confirm: pass --yes to go ahead without confirmation")
	}
	fmt.Fprintf(w, "%s [y/N] ", q)
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		ch <- answer{line, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		fmt.Fprintln(w)
		return false, fmt.Errorf("not confirmed: %w", ctx.Err())
	}
	if a.err != nil && !errors.Is(a.err, io.EOF) {
		return false, a.err
	}
	s := strings.ToLower(strings.TrimSpace(a.line))
	return s == "y" || s == "yes", nil
}
