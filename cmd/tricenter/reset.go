package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
)

func newResetCmd(g *globals) *cobra.Command {
	var f engineFlags
	var only, servers []string
	var yes, dryRun bool
	cmd := &cobra.Command{
		Use:   "reset -f FILE [--only COMPONENT,...] [--servers NAME,...] [--dry-run]",
		Short: "Remove what apply installed from the hosts: destroys the cluster's data",
		Long: `reset tears down what apply built, in a safe order: node agents, the API VIP
and the control plane, the BGP agents, and etcd last (its data is destroyed).

With --servers it removes those workers only: each Node is drained (pod
disruption budgets respected) and deleted through the API, then kubelet,
kube-proxy and the BGP agent stop (the routers withdraw the node's pod CIDR)
and their files go. Take the servers out of the inventory afterwards. A
server that holds etcd or the control plane is refused: change its roles
and apply first.

It prints what it would remove, per host (a dry run of the very code that
removes it), and asks for confirmation (or takes --yes). --dry-run prints
that plan and stops.`,
		Example: `  tricenter reset -f cluster.yaml
  tricenter reset -f cluster.yaml --servers dc1-r02-w03 --dry-run
  tricenter reset -f cluster.yaml --servers dc1-r02-w03 --yes
  tricenter reset -f cluster.yaml --only etcd`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			o := installer.Options{Only: only, Servers: servers}
			plan, err := e.PlanReset(cmd.Context(), o)
			if err != nil {
				return err
			}
			if plan.Converged() {
				fmt.Fprintln(g.stdout, "Nothing to reset: no tricenter files on any server")
				if dryRun {
					return nil
				}
				_, err := e.Reset(cmd.Context(), o)
				return err
			}
			printResetPlan(g, e, plan)
			if dryRun {
				fmt.Fprintln(g.stdout, "dry run: nothing was removed")
				return nil
			}
			if !yes {
				ok, err := confirm(cmd.Context(), g.stdout, cmd.InOrStdin(), "Remove these components (their data is destroyed)?")
				if err != nil {
					return err
				}
				if !ok {
					return &exitError{code: 1, err: fmt.Errorf("not reset")}
				}
			}
			res, err := e.Reset(cmd.Context(), o)
			if err != nil {
				return err
			}
			if len(servers) > 0 {
				fmt.Fprintf(g.stdout, "removed %s: drained, deleted, agents stopped and routes withdrawn\n", strings.Join(servers, ", "))
				return nil
			}
			fmt.Fprintf(g.stdout, "reset %s on %d servers\n", joinComps(res.Components), len(res.Changes))
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	cmd.Flags().StringSliceVar(&only, "only", nil, "components to remove: etcd, bgp, control-plane, nodes (default: all)")
	cmd.Flags().StringSliceVar(&servers, "servers", nil, "remove only these workers (drained and deleted first)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "reset without asking for confirmation")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed on each host and stop")
	return cmd
}

// printResetPlan prints the per-host plan as apply prints its own, then
// the API work (draining Nodes).
func printResetPlan(g *globals, e *installer.Engine, plan *installer.Result) {
	printPlan(g.stdout, e, plan)
	if len(plan.APIChanges) > 0 {
		fmt.Fprintln(g.stdout, "through the Kubernetes API:")
		for _, c := range plan.APIChanges {
			fmt.Fprintf(g.stdout, "  %s\n", c)
		}
	}
}
