package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Failure drills against a running cluster",
	}
	cmd.AddCommand(newDrillCenterLossCmd(g))
	return cmd
}

func newDrillCenterLossCmd(g *globals) *cobra.Command {
	var f engineFlags
	var center, power, output string
	var hold time.Duration
	var writers int
	cmd := &cobra.Command{
		Use:   "center-loss -f FILE --center CENTER",
		Short: "Stop every etcd host of a center, measure write recovery and loss, restore",
		Long: `center-loss takes every etcd member of one center down while a client keeps
writing a numbered sequence of keys, measures how long until writes succeed
again, restores the center, waits for the cluster to be healthy and reads the
sequence back: no acknowledged write may be missing.

--power bmc powers the servers off and on through their BMCs (the default
when every member of the center has one); --power ssh kills etcd with
SIGKILL over SSH and holds it stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			e, err := loadEtcdEnv(g, &f, false)
			if err != nil {
				return err
			}
			if power == "" {
				power = "bmc"
				for _, m := range e.placement.Etcd.Members {
					if h, ok := e.cluster.Host(m.Name); ok && m.Center == center && h.BMC == nil {
						power = "ssh"
					}
				}
			}
			var pw etcd.Power
			m := e.manager(false, nil)
			defer m.Close()
			switch power {
			case "bmc":
				pw = &etcd.BMCPower{Options: bmc.Options{Logger: e.log}}
			case "ssh":
				pw = &etcd.SSHPower{Manager: m}
			default:
				return fmt.Errorf("--power %q: use bmc or ssh", power)
			}
			cli, err := e.client()
			if err != nil {
				return err
			}
			defer cli.Close()
			rep, err := etcd.Drill(cmd.Context(), etcd.DrillOptions{Cluster: e.cluster, Placement: e.placement,
				Center: center, Client: cli, Power: pw, Logger: e.log, Hold: hold, Writers: writers})
			if rep != nil {
				if output == "json" {
					if jerr := writeJSON(g, rep); jerr != nil {
						return jerr
					}
				} else {
					printDrill(g, rep)
				}
			}
			return err
		},
	}
	addEngineFlags(cmd, &f)
	addOutputFlag(cmd, &output)
	cmd.Flags().StringVar(&center, "center", "", "the center to lose")
	_ = cmd.MarkFlagRequired("center")
	cmd.Flags().StringVar(&power, "power", "", "how to stop hosts: bmc or ssh (default: bmc when the center's servers have BMCs)")
	cmd.Flags().DurationVar(&hold, "hold", 3*time.Second, "how long the center stays down after writes resumed")
	cmd.Flags().IntVar(&writers, "writers", 1, "concurrent writers")
	return cmd
}

func printDrill(g *globals, r *etcd.DrillReport) {
	w := g.stdout
	fmt.Fprintf(w, "Center-loss drill: %s (%s)\n", r.Center, r.Method)
	fmt.Fprintf(w, "  stopped            %v\n", r.Stopped)
	fmt.Fprintf(w, "  leader             %s before, %s during (leader lost: %v)\n", r.LeaderBefore, r.LeaderDuring, r.LeaderWasLost)
	fmt.Fprintf(w, "  writes resumed     %v after the loss (election timeout %v; longest gap %v)\n",
		r.ResumedAfter.Round(time.Millisecond), r.ElectionTimeout, r.WriteGap.Round(time.Millisecond))
	fmt.Fprintf(w, "  writes             %d acknowledged, %d failed or timed out, %d acknowledged but lost\n", r.Acknowledged, r.Failed, r.Lost)
	fmt.Fprintf(w, "  restored healthy   %v after power on\n", r.RestoredHealthy.Round(time.Millisecond))
}
