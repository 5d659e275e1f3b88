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
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset -f FILE [--only COMPONENT,...] [--servers NAME,...]",
		Short: "Remove what apply installed from the hosts: destroys the cluster's data",
		Long: `reset tears down what apply built, in a safe order: node agents, the API VIP
and the control plane, the BGP agents, and etcd last (its data is destroyed).

With --servers it removes those workers only: each Node is drained (pod
disruption budgets respected) and deleted through the API, then kubelet,
kube-proxy and the BGP agent stop (the routers withdraw the node's pod CIDR)
and their files go. Take the servers out of the inventory afterwards. A
server that holds etcd or the control plane is refused: change its roles
and apply first.

It prints what it would remove and asks for confirmation (or takes --yes).`,
		Example: `  tricenter reset -f cluster.yaml
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
			if len(plan.Changes) == 0 && len(servers) == 0 {
				fmt.Fprintln(g.stdout, "Nothing to reset: no tricenter files on any server")
				_, err := e.Reset(cmd.Context(), o)
				return err
			}
			for _, h := range plan.Hosts() {
				for _, c := range plan.Changes[h] {
					fmt.Fprintf(g.stdout, "  %s: %s\n", h, c)
				}
			}
			for _, s := range servers {
				fmt.Fprintf(g.stdout, "  drain and delete Node %s\n", s)
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
	return cmd
}
