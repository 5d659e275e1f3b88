package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// drillPower chooses how the drill takes servers down; tests replace it.
type drillPower func(kind string, e *etcdEnv, m *phase.Manager) (etcd.Power, error)

func defaultDrillPower(kind string, e *etcdEnv, m *phase.Manager) (etcd.Power, error) {
	switch kind {
	case "bmc":
		return &etcd.BMCPower{Options: bmc.Options{Logger: e.log}}, nil
	case "ssh":
		return &etcd.SSHPower{Manager: m}, nil
	}
	return nil, fmt.Errorf("--power %q: use bmc or ssh", kind)
}

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Failure drills against a running cluster",
	}
	cmd.AddCommand(newDrillCenterLossCmd(g, defaultDrillPower))
	return cmd
}

type drillFlags struct {
	center, power, output, k8s    string
	hold, restoreTimeout, healthT time.Duration
	writers                       int
}

func newDrillCenterLossCmd(g *globals, powerFor drillPower) *cobra.Command {
	var f engineFlags
	var d drillFlags
	cmd := &cobra.Command{
		Use:   "center-loss -f FILE --center CENTER",
		Short: "Power off a whole center, measure write recovery and loss, restore",
		Long: `center-loss takes one center down while a client keeps writing a numbered
sequence of keys, measures how long until writes succeed again, restores the
center, waits for the cluster to be healthy and reads the sequence back: no
acknowledged write may be missing.

--power bmc powers every server of the center off and on through its BMC (a
real power cut; the default when every server of the center has a BMC);
--power ssh only kills etcd with SIGKILL over SSH on the center's etcd
members and holds it stopped: the servers stay up, so it is not a power cut.

The restore runs on every path (a failed power-off, writes that never
resume, Ctrl-C) under its own deadlines (--restore-timeout for powering on,
--health-timeout for the cluster to be healthy). A second Ctrl-C abandons it
and prints the servers still off and the command that brings them back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDrill(cmd.Context(), g, &f, &d, powerFor)
		},
	}
	addEngineFlags(cmd, &f)
	addOutputFlag(cmd, &d.output)
	fl := cmd.Flags()
	fl.StringVar(&d.center, "center", "", "the center to lose")
	_ = cmd.MarkFlagRequired("center")
	fl.StringVar(&d.power, "power", "", "how to take servers down: bmc or ssh (default: bmc when every server of the center has a BMC)")
	fl.DurationVar(&d.hold, "hold", 3*time.Second, "how long the center stays down after writes resumed (and how long the rejoin is watched after health)")
	fl.DurationVar(&d.restoreTimeout, "restore-timeout", etcd.DefaultRestoreTimeout, "deadline for powering the center back on (retries included)")
	fl.DurationVar(&d.healthT, "health-timeout", etcd.DefaultDrillHealthTimeout, "deadline for the cluster to be healthy after power-on (real servers take minutes to boot)")
	fl.IntVar(&d.writers, "writers", 1, "concurrent writers through each etcd member outside the center")
	fl.StringVar(&d.k8s, "kubernetes", "auto", "probe the API through the VIP and the surviving centers' nodes during the outage: auto (when the API answers before the drill), on or off")
	return cmd
}

// choosePower picks --power's default and checks that a power cut can
// reach every server of the center.
func choosePower(kind string, c *inventory.Cluster, center string) (string, error) {
	hosts, err := c.Select(inventory.Selector{Centers: []string{center}})
	if err != nil {
		return "", fmt.Errorf("--center: %w", err)
	}
	var noBMC []string
	for _, h := range hosts {
		if h.BMC == nil {
			noBMC = append(noBMC, h.Name)
		}
	}
	switch {
	case kind == "" && len(noBMC) == 0:
		return "bmc", nil
	case kind == "":
		return "ssh", nil
	case kind == "bmc" && len(noBMC) > 0:
		return "", fmt.Errorf("--power bmc: servers of center %s without a bmc block: %s: add their BMCs or use --power ssh (stops etcd only)",
			center, strings.Join(noBMC, ", "))
	}
	return kind, nil
}

func runDrill(ctx context.Context, g *globals, f *engineFlags, d *drillFlags, powerFor drillPower) error {
	if err := checkOutput(d.output); err != nil {
		return err
	}
	e, err := loadEtcdEnv(g, f, false)
	if err != nil {
		return err
	}
	kind, err := choosePower(d.power, e.cluster, d.center)
	if err != nil {
		return err
	}
	if kind == "ssh" {
		e.log.Warn("Power ssh only stops etcd on the center's members: the servers stay up, so this is not a power cut",
			"center", d.center)
	}
	m := e.manager(false, nil)
	defer m.Close()
	pw, err := powerFor(kind, e, m)
	if err != nil {
		return err
	}
	cli, err := e.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	probes, err := drillProbes(ctx, g, e, d)
	if err != nil {
		return err
	}
	abandon := claimSecondInterrupt(ctx)
	stopNotice := context.AfterFunc(ctx, func() {
		fmt.Fprintf(g.stderr, "Restoring center %s before exiting (Ctrl-C again to abandon the restore)\n", d.center)
	})
	defer stopNotice()
	rep, err := etcd.Drill(ctx, etcd.DrillOptions{Cluster: e.cluster, Placement: e.placement,
		Center: d.center, Client: cli, Power: pw, Logger: e.log, Hold: d.hold, Writers: d.writers,
		RestoreTimeout: d.restoreTimeout, HealthTimeout: d.healthT, Abandon: abandon, Probes: probes})
	if rep != nil {
		if d.output == "json" {
			if jerr := writeJSON(g, rep); jerr != nil {
				return jerr
			}
		} else {
			printDrill(g.stdout, rep)
		}
		if len(rep.StillOff) > 0 {
			fmt.Fprintf(g.stderr, "Servers of center %s that may still be off: %s\nBring them back with:\n  %s\n",
				d.center, strings.Join(rep.StillOff, ", "), restoreCommand(kind, f.file, rep.StillOff))
		}
	}
	return err
}

// restoreCommand is the command that brings the given servers back.
func restoreCommand(kind, inv string, servers []string) string {
	list := strings.Join(servers, ",")
	if kind == "ssh" {
		return fmt.Sprintf("tricenter exec -f %s --sudo --host %s -- systemctl start %s", shellWord(inv), list, etcd.Unit)
	}
	return fmt.Sprintf("tricenter bmc on -f %s --server %s", shellWord(inv), list)
}

// shellWord quotes s for a POSIX shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func printDrill(w io.Writer, r *etcd.DrillReport) {
	fmt.Fprintf(w, "Center-loss drill: %s (%s)\n", r.Center, r.Method)
	if r.Note != "" {
		fmt.Fprintf(w, "  note               %s\n", r.Note)
	}
	var down []string
	for _, s := range r.Servers {
		n := s.Name
		if s.EtcdMember {
			n += " (etcd)"
		}
		if s.OffError != "" {
			n += " (power-off failed: " + s.OffError + ")"
		}
		down = append(down, n)
	}
	verb := "powered off"
	if !r.PowerCut {
		verb = "etcd stopped on"
	}
	fmt.Fprintf(w, "  %-18s %s\n", verb, strings.Join(down, ", "))
	fmt.Fprintf(w, "  power-off took     %v (the loss counts from the first server confirmed down)\n", ms(r.PowerOffTook))
	fmt.Fprintf(w, "  leader             %s before, %s during (leader lost: %v)\n", r.LeaderBefore, orDash(r.LeaderDuring), r.LeaderWasLost)
	if r.ResumedAfter > 0 {
		fmt.Fprintf(w, "  writes resumed     %v after the loss (election timeout %v)\n", ms(r.ResumedAfter), r.ElectionTimeout)
	} else {
		fmt.Fprintf(w, "  writes resumed     not measured (election timeout %v)\n", r.ElectionTimeout)
	}
	fmt.Fprintf(w, "  longest write gap  %v while the center was down, %v while it rejoined\n", ms(r.WriteGap), ms(r.RejoinWriteGap))
	lost := fmt.Sprintf("%d acknowledged but lost", r.Lost)
	if !r.Verified {
		lost = "loss not verified (" + r.NotVerified + ")"
	}
	fmt.Fprintf(w, "  writes             %d acknowledged, %d failed or timed out, %s\n", r.Acknowledged, r.Failed, lost)
	switch {
	case !r.Restored:
		fmt.Fprintf(w, "  restore            not run\n")
	default:
		on := "none"
		if len(r.PoweredBackOn) > 0 {
			on = strings.Join(r.PoweredBackOn, ", ")
		}
		verb := "powered back on"
		if !r.PowerCut {
			verb = "etcd started on"
		}
		fmt.Fprintf(w, "  restore            %s: %s\n", verb, on)
		if len(r.StillOff) > 0 {
			fmt.Fprintf(w, "  STILL DOWN         %s\n", strings.Join(r.StillOff, ", "))
		}
		if r.Healthy {
			fmt.Fprintf(w, "  restored healthy   %v after power-on\n", ms(r.RestoredHealthy))
		} else {
			fmt.Fprintf(w, "  restored healthy   NO: %s\n", r.RestoreError)
		}
	}
	for _, p := range r.Probes {
		fmt.Fprintf(w, "  probe %-12s %d checks, %d failed, longest gap %v\n", p.Name, p.Attempts, p.Failures, ms(p.MaxGap))
		for _, e := range p.Errors {
			fmt.Fprintf(w, "    %d× from %v to %v after the loss: %s\n", e.Count, ms(e.First.Sub(r.LossAt)), ms(e.Last.Sub(r.LossAt)), e.Error)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// drillProbes are the Kubernetes checks of the drill (--kubernetes).
func drillProbes(ctx context.Context, g *globals, e *etcdEnv, d *drillFlags) ([]etcd.Probe, error) {
	switch d.k8s {
	case "off":
		return nil, nil
	case "auto", "on":
	default:
		return nil, fmt.Errorf("--kubernetes %q: use auto, on or off", d.k8s)
	}
	if err := e.eng.APIReady(ctx); err != nil {
		if d.k8s == "on" {
			return nil, fmt.Errorf("--kubernetes on: the API does not answer before the drill: %w", err)
		}
		fmt.Fprintf(g.stderr, "Kubernetes not checked during the drill (the API does not answer: %v)\n", err)
		return nil, nil
	}
	return e.eng.DrillProbes(d.center)
}
