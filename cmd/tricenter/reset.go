package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func newResetCmd(g *globals) *cobra.Command {
	var f engineFlags
	var only string
	var yes bool
	cmd := &cobra.Command{
		Use:   "reset -f FILE --only etcd",
		Short: "Remove what apply installed from the hosts (etcd so far): destroys the data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if only != "etcd" {
				return fmt.Errorf("--only %q: only etcd can be reset by this version: pass --only etcd", only)
			}
			e, err := loadEtcdEnv(g, &f, true)
			if err != nil {
				return err
			}
			// Every server that is, was or could be a member.
			names := map[string]bool{}
			for _, m := range e.placement.Etcd.Members {
				names[m.Name] = true
			}
			if e.prior != nil {
				for _, n := range e.prior.EtcdMembers {
					if _, ok := e.cluster.Host(n); ok {
						names[n] = true
					}
				}
			}
			for _, h := range e.cluster.Hosts() {
				if h.HasRole(inventory.RoleEtcd) {
					names[h.Name] = true
				}
			}
			servers := make([]string, 0, len(names))
			for n := range names {
				servers = append(servers, n)
			}
			sort.Strings(servers)
			dry := e.manager(true, nil)
			err = etcd.Reset(cmd.Context(), dry, servers)
			changes := dry.Changes()
			dry.Close()
			if err != nil {
				return err
			}
			if len(changes) == 0 {
				fmt.Fprintln(g.stdout, "Nothing to reset: no etcd files on any server")
				return e.state.RecordEtcd(nil)
			}
			for _, h := range phase.HostNames(changes) {
				for _, c := range changes[h] {
					fmt.Fprintf(g.stdout, "  %s: %s\n", h, c)
				}
			}
			if !yes {
				ok, err := confirm(g.stdout, cmd.InOrStdin(), "Destroy etcd and its data on these servers?")
				if err != nil {
					return err
				}
				if !ok {
					return &exitError{code: 1, err: fmt.Errorf("not reset")}
				}
			}
			m := e.manager(false, g.stderr)
			defer m.Close()
			if err := etcd.Reset(cmd.Context(), m, servers); err != nil {
				return err
			}
			if err := e.state.RecordEtcd(nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "etcd removed from %d servers\n", len(changes))
			return nil
		},
	}
	addEngineFlags(cmd, &f)
	cmd.Flags().StringVar(&only, "only", "", "component to reset: etcd")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "reset without asking for confirmation")
	return cmd
}
