package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

func newApplyCmd(g *globals) *cobra.Command {
	var f engineFlags
	var only, output string
	var yes, planOnly bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE --only etcd",
		Short: "Plan, confirm and converge the hosts on the inventory (etcd so far)",
		Long: `apply computes what differs between the inventory and the hosts (a dry run
of the very code that applies it), prints that plan, asks for confirmation
(or takes --yes) and converges. When nothing differs it changes nothing.

An inventory whose etcd placement would not survive the loss of a center is
refused before any host is touched (unless etcd.allowDegradedPlacement).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if only != "etcd" {
				return fmt.Errorf("--only %q: only etcd can be applied by this version: pass --only etcd", only)
			}
			return runApplyEtcd(cmd.Context(), g, &f, yes, planOnly, output, cmd.InOrStdin())
		},
	}
	addEngineFlags(cmd, &f)
	addOutputFlag(cmd, &output)
	cmd.Flags().StringVar(&only, "only", "", "component to apply: etcd")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "apply without asking for confirmation")
	cmd.Flags().BoolVar(&planOnly, "plan", false, "print the plan and stop (a dry run)")
	return cmd
}

type applyReport struct {
	Plan      *etcd.Result  `json:"plan"`
	Applied   *etcd.Result  `json:"applied,omitempty"`
	Converged bool          `json:"converged"`
	PlanTime  time.Duration `json:"planTime"`
	ApplyTime time.Duration `json:"applyTime,omitempty"`
}

func runApplyEtcd(ctx context.Context, g *globals, f *engineFlags, yes, planOnly bool, output string, in io.Reader) error {
	e, err := loadEtcdEnv(g, f, true)
	if err != nil {
		return err
	}
	opts := etcd.Options{Cluster: e.cluster, Placement: e.placement, Prior: e.prior, PKI: e.pki,
		Artifacts: e.artifacts(), Logger: e.log}
	rep := &applyReport{}
	start := time.Now()
	dry := e.manager(true, nil)
	opts.Manager = dry
	plan, err := etcd.Apply(ctx, opts)
	dry.Close()
	rep.Plan, rep.PlanTime = plan, time.Since(start)
	if err != nil {
		return fmt.Errorf("planning etcd: %w", err)
	}
	if output == "table" {
		printEtcdPlan(g.stdout, e, plan)
	}
	if plan.Converged() {
		rep.Converged = true
		if err := e.state.RecordEtcd(e.placement.Etcd.Members); err != nil {
			return err
		}
		if output == "json" {
			return writeJSON(g, rep)
		}
		fmt.Fprintf(g.stdout, "etcd is converged: nothing to do (checked in %v)\n", rep.PlanTime.Round(time.Millisecond))
		return nil
	}
	if planOnly {
		if output == "json" {
			return writeJSON(g, rep)
		}
		return nil
	}
	if !yes {
		ok, err := confirm(g.stdout, in, "Apply these changes?")
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: fmt.Errorf("not applied")}
		}
	}
	start = time.Now()
	m := e.manager(false, g.stderr)
	defer m.Close()
	opts.Manager = m
	res, err := etcd.Apply(ctx, opts)
	rep.Applied, rep.ApplyTime = res, time.Since(start)
	if err != nil {
		return fmt.Errorf("applying etcd: %w", err)
	}
	if err := e.state.RecordEtcd(e.placement.Etcd.Members); err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(g, rep)
	}
	fmt.Fprintf(g.stdout, "etcd applied in %v: %d members healthy, leader %s\n", rep.ApplyTime.Round(time.Millisecond),
		len(e.placement.Etcd.Members), leaderName(res.Health))
	return nil
}

func printEtcdPlan(w io.Writer, e *etcdEnv, r *etcd.Result) {
	p := e.placement.Etcd
	fmt.Fprintf(w, "etcd plan for %s: %d members (quorum %d), heartbeat %d ms, election timeout %d ms\n",
		e.cluster.Metadata.Name, p.Count, p.Quorum, p.Timers.HeartbeatMs, p.Timers.ElectionTimeoutMs)
	for _, c := range sortedCenters(p.PerCenter) {
		var names []string
		for _, m := range p.Members {
			if m.Center == c {
				names = append(names, m.Name)
			}
		}
		fmt.Fprintf(w, "  %-12s %d  %s\n", c, p.PerCenter[c], strings.Join(names, ", "))
	}
	if r.Bootstrap {
		fmt.Fprintln(w, "  bootstrap a new cluster")
	}
	for _, s := range r.Steps {
		fmt.Fprintln(w, "  membership:", s)
	}
	for _, h := range phase.HostNames(r.Changes) {
		fmt.Fprintf(w, "  %s:\n", h)
		for _, c := range r.Changes[h] {
			fmt.Fprintf(w, "    %s\n", c)
		}
	}
}

func sortedCenters(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
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

func confirm(w io.Writer, in io.Reader, q string) (bool, error) {
	if f, ok := in.(*os.File); ok && !isTTY(f) {
		return false, fmt.Errorf("stdin is not a terminal: pass --yes to apply without confirmation")
	}
	fmt.Fprintf(w, "%s [y/N] ", q)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}
