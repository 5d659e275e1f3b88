package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/drain"
	"github.com/tricenter/terraform-provider-tricenter/installer/upgrade"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// upgradeFlags are upgrade's own flags.
type upgradeFlags struct {
	to, etcdTo          string
	dryRun, yes         bool
	maxPerRack          int
	drainTimeout        time.Duration
	allowPatchDowngrade bool
	replan              bool
	output              string
}

func newUpgradeCmd(g *globals) *cobra.Command {
	var f engineFlags
	var u upgradeFlags
	cmd := &cobra.Command{
		Use:   "upgrade -f FILE [--to VERSION] [--etcd-to VERSION] [--dry-run] [--yes]",
		Short: "Upgrade etcd and Kubernetes: plan, confirm, then a rolling upgrade that resumes where it stopped",
		Long: `upgrade takes the cluster to a new Kubernetes release (--to, default the
inventory's spec.kubernetes.version) and etcd release (--etcd-to, default
spec.etcd.version). It observes what every component runs, checks the path
(one Kubernetes minor at a time, never a skip or a minor downgrade; etcd v3.5
members go to v3.5.35 before any goes to v3.6), prints the plan and asks
before changing anything.

The plan, in order: etcd members one at a time (followers first, the leader
last once its leadership moved to an upgraded member, every member healthy in
between); the control-plane servers one at a time (the API VIP withdrawn
while kube-apiserver, kube-controller-manager and kube-scheduler are replaced
and restarted, until /readyz answers on the new release); the control-plane
and etcd servers' kubelets one at a time; then the workers, one center at a
time, at most --max-unavailable-per-rack per rack: cordon, drain, replace
kubelet and kube-proxy, wait until the Node is Ready on the new release,
uncordon.

Progress is recorded in the state directory after every step. A run that
stops (a failed step, Ctrl-C, a lost jump host) is resumed by running the
same command again: what is done is observed, never assumed, and the upgrade
goes on from the first step that is not. --dry-run shows the steps that
remain.`,
		Example: `  tricenter upgrade -f cluster.yaml --to v1.37.2 --dry-run
  tricenter upgrade -f cluster.yaml --to v1.37.2 --etcd-to v3.6.16
  tricenter upgrade -f cluster.yaml --max-unavailable-per-rack 2 --drain-timeout 10m --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkUpgradeFlags(&u); err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if !u.yes && !u.dryRun {
				// Refused before anything is observed: nobody could answer.
				if err := canConfirm(in, "the upgrade"); err != nil {
					return fmt.Errorf("%w (--dry-run shows the plan)", err)
				}
			}
			return runUpgrade(cmd.Context(), g, &f, &u, in)
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	cliflags.AddOutput(cmd, &u.output)
	cmd.Flags().StringVar(&u.to, "to", "", "Kubernetes release to upgrade to, vMAJOR.MINOR.PATCH (default: the inventory's spec.kubernetes.version)")
	cmd.Flags().StringVar(&u.etcdTo, "etcd-to", "", "etcd release to upgrade to (default: the inventory's spec.etcd.version)")
	cmd.Flags().BoolVar(&u.dryRun, "dry-run", false, "print the plan (the steps that remain, for an upgrade in progress) and stop")
	cmd.Flags().BoolVarP(&u.yes, "yes", "y", false, "upgrade without asking for confirmation")
	cmd.Flags().IntVar(&u.maxPerRack, "max-unavailable-per-rack", upgrade.DefaultMaxUnavailablePerRack, "workers of one rack drained and upgraded at once")
	cmd.Flags().DurationVar(&u.drainTimeout, "drain-timeout", drain.DefaultTimeout, "how long a node's drain may take (PodDisruptionBudgets are honoured) before the upgrade pauses there")
	cmd.Flags().BoolVar(&u.allowPatchDowngrade, "allow-patch-downgrade", false, "allow going back to an older patch release of the same minor")
	cmd.Flags().BoolVar(&u.replan, "replan", false, "drop the record of an upgrade in progress and plan anew from what the cluster runs now")
	return cmd
}

// checkUpgradeFlags refuses flag values before anything is read.
func checkUpgradeFlags(u *upgradeFlags) error {
	if err := cliflags.CheckOutput(u.output); err != nil {
		return err
	}
	for name, s := range map[string]string{"--to": u.to, "--etcd-to": u.etcdTo} {
		if s == "" {
			continue
		}
		if _, err := inventory.ParseVersion(s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if u.maxPerRack < 1 {
		return fmt.Errorf("--max-unavailable-per-rack %d: use 1 or more", u.maxPerRack)
	}
	if u.drainTimeout <= 0 {
		return fmt.Errorf("--drain-timeout %v: use a positive duration, e.g. 10m", u.drainTimeout)
	}
	return nil
}

type upgradeReport struct {
	Plan    *installer.UpgradeResult `json:"plan"`
	Upgrade *installer.UpgradeResult `json:"upgrade,omitempty"`
}

func runUpgrade(ctx context.Context, g *globals, f *engineFlags, u *upgradeFlags, in io.Reader) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	o := installer.UpgradeOptions{Kubernetes: u.to, Etcd: u.etcdTo, MaxUnavailablePerRack: u.maxPerRack,
		DrainTimeout: u.drainTimeout, AllowPatchDowngrade: u.allowPatchDowngrade, Replan: u.replan,
		LockTimeout: f.lockTimeoutOption()}
	rep := &upgradeReport{}
	plan, err := e.PlanUpgrade(ctx, o)
	rep.Plan = plan
	if plan != nil {
		for _, w := range plan.Warnings {
			warn(g, w)
		}
		if u.output == "table" && plan.Plan != nil {
			printUpgradePlan(g.stdout, plan)
		}
	}
	if err != nil {
		if u.output == "json" {
			_ = cliflags.WriteJSON(g.stdout, rep)
		}
		return fmt.Errorf("planning the upgrade: %w", engineError(err))
	}
	left := plan.Remaining()
	// A recorded upgrade whose steps are all done only has its record
	// left to remove: that changes no server and needs no question.
	if u.dryRun || len(left) == 0 && !plan.Resumed {
		if u.output == "json" {
			return cliflags.WriteJSON(g.stdout, rep)
		}
		return nil
	}
	if len(left) > 0 && !u.yes {
		ok, err := confirm(ctx, g.stdout, in, fmt.Sprintf("Run these %d steps?", len(left)))
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: errors.New("not upgraded")}
		}
	}
	// The upgrade runs the plan that was shown, or none.
	o.Digest = plan.Digest
	res, err := e.Upgrade(ctx, o)
	rep.Upgrade = res
	if u.output == "json" {
		if werr := cliflags.WriteJSON(g.stdout, rep); werr != nil && err == nil {
			err = werr
		}
	} else if res != nil {
		printUpgraded(g.stdout, res)
		if res.Apply != nil {
			var took time.Duration
			for _, t := range res.Apply.Timings {
				took += t.Took
			}
			for _, gt := range res.Apply.Gates {
				took += gt.Took
			}
			printApplied(g.stdout, e, res.Apply, took)
		}
	}
	if err != nil {
		var pe *upgrade.PausedError
		if errors.As(err, &pe) {
			return err
		}
		return fmt.Errorf("upgrading: %w", engineError(err))
	}
	return nil
}

func printUpgradePlan(w io.Writer, r *installer.UpgradeResult) {
	left := r.Remaining()
	if r.Resumed {
		fmt.Fprintf(w, "Upgrade in progress since %s: %d of %d steps done\n", r.Started.Local().Format(time.RFC3339),
			len(r.Plan.Steps)-len(left), len(r.Plan.Steps))
		if r.Paused != nil {
			fmt.Fprintf(w, "Paused at %s\n", r.Paused)
		}
	}
	_ = r.Plan.Render(w, r.Status)
	switch {
	case len(r.Plan.Steps) == 0:
	case len(left) == 0:
		fmt.Fprintln(w, "Every step is done")
	default:
		fmt.Fprintf(w, "%d %s to run, from step %d (%s)\n", len(left), plural(len(left), "step", "steps"), left[0].Number, left[0].ID)
	}
	if r.Record != "" && len(left) > 0 {
		fmt.Fprintf(w, "Progress is recorded in %s\n", r.Record)
	}
}

func printUpgraded(w io.Writer, r *installer.UpgradeResult) {
	if r.Outcome != nil {
		fmt.Fprintf(w, "ran %d %s (%d found already done) in %v\n", len(r.Outcome.Ran), plural(len(r.Outcome.Ran), "step", "steps"), len(r.Outcome.AlreadyDone), r.Took.Round(time.Second))
	}
	if r.Lock != "" {
		fmt.Fprintf(w, "locks held: %s\n", r.Lock)
	}
	if r.Paused != nil {
		left := r.Remaining()
		fmt.Fprintf(w, "paused at %s\n%d %s: fix that, then run the same command again to resume\n", r.Paused, len(left),
			plural(len(left), "step remains", "steps remain"))
		return
	}
	if r.Plan != nil && len(r.Remaining()) == 0 {
		fmt.Fprintf(w, "upgraded: etcd %s, Kubernetes %s on every server\n", r.Plan.Etcd, r.Plan.Kubernetes)
	}
}
