package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer"
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
	cmd.AddCommand(newDrillCenterLossCmd(g, defaultDrillPower), newDrillResumeCmd(g, defaultDrillPower))
	return cmd
}

type drillFlags struct {
	center, power, output, k8s    string
	hold, restoreTimeout, healthT time.Duration
	writers                       int
	yes                           bool
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

The drill lists what will go dark (the servers by center and rack, the etcd
members and control-plane servers among them) and asks for confirmation;
--yes skips the question (needed when stdin is not a terminal).

The restore runs on every path (a failed power-off, writes that never
resume, Ctrl-C, SIGHUP when the session drops, SIGTERM) under its own
deadlines (--restore-timeout for powering on, --health-timeout for the
cluster to be healthy). A second Ctrl-C abandons it and prints the servers
still off and the command that brings them back.

Before its first power-off the drill writes a journal to the state
directory (drill-journal.json: the center, the method, the servers, which
came back); it removes it once every server is back. A drill killed before
that leaves the journal: "tricenter drill resume" brings back what it names,
and no new drill starts while it exists. The drill's keys (under
/tricenter/drill/) are deleted at its end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDrill(cmd.Context(), g, &f, &d, powerFor, cmd.InOrStdin())
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
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
	fl.BoolVarP(&d.yes, "yes", "y", false, "take the center down without asking for confirmation")
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

func runDrill(ctx context.Context, g *globals, f *engineFlags, d *drillFlags, powerFor drillPower, in io.Reader) error {
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
	if err := etcd.CheckDrillJournal(e.state); err != nil {
		return withResumeHint(err, f)
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
	targets, err := etcd.DrillServers(etcd.DrillOptions{Cluster: e.cluster, Placement: e.placement, Center: d.center, Power: pw})
	if err != nil {
		return err
	}
	if !d.yes {
		writeDrillTargets(g.stderr, e.placement, d.center, pw, targets)
		ok, err := confirm(ctx, g.stderr, in, fmt.Sprintf("Take center %s down now?", d.center))
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: fmt.Errorf("not confirmed: the drill did not start")}
		}
	}
	// One writer at a time: no apply may run while a center is dark.
	lock, err := e.eng.Lock(ctx, installer.LockOptions{})
	if err != nil {
		return err
	}
	defer lock.Release()
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
		RestoreTimeout: d.restoreTimeout, HealthTimeout: d.healthT, Abandon: abandon, Probes: probes,
		Journal: e.state, Method: kind})
	if errors.Is(err, etcd.ErrDrillJournal) {
		err = withResumeHint(err, f)
	}
	if rep != nil {
		if d.output == "json" {
			if jerr := writeJSON(g, rep); jerr != nil {
				return jerr
			}
		} else {
			printDrill(g.stdout, rep)
		}
		if len(rep.StillOff) > 0 {
			fmt.Fprintf(g.stderr, "Servers of center %s that may still be off: %s\n", d.center, strings.Join(rep.StillOff, ", "))
			if rep.JournalKept {
				fmt.Fprintf(g.stderr, "The drill journal %s names them; bring them back with:\n  %s\nor by hand:\n  %s\n",
					rep.Journal, resumeCommand(f), restoreCommand(kind, f.file, rep.StillOff))
			} else {
				fmt.Fprintf(g.stderr, "Bring them back with:\n  %s\n", restoreCommand(kind, f.file, rep.StillOff))
			}
		}
	}
	return err
}

// writeDrillTargets shows what a drill of center takes down before asking.
func writeDrillTargets(w io.Writer, p *inventory.Placement, center string, pw etcd.Power, targets []inventory.Host) {
	fmt.Fprintf(w, "Center-loss drill of %s (%s) takes down %s:\n", center, pw.Describe(), countServers(len(targets)))
	var members, cps []string
	writeGoingDark(w, targets, func(h inventory.Host) string {
		var what []string
		if p.IsEtcdMember(h.Name) {
			what = append(what, "etcd member")
			members = append(members, h.Name)
		}
		if p.IsControlPlane(h.Name) {
			what = append(what, "control plane")
			cps = append(cps, h.Name)
		}
		return strings.Join(what, ", ")
	})
	fmt.Fprintf(w, "  etcd members among them: %s (%d of %d; %d remain, quorum %d)\n", orNone(members),
		len(members), len(p.Etcd.Members), len(p.Etcd.Members)-len(members), p.Etcd.Quorum)
	fmt.Fprintf(w, "  control-plane servers among them: %s (%d of %d)\n", orNone(cps), len(cps), len(p.ControlPlane))
	fmt.Fprintln(w, "They are brought back when the drill ends (or by tricenter drill resume if it is killed).")
}

// withResumeHint adds the command that resumes the drill a journal names.
func withResumeHint(err error, f *engineFlags) error {
	if !errors.Is(err, etcd.ErrDrillJournal) {
		return err
	}
	return fmt.Errorf("%w: %s", err, resumeCommand(f))
}

// resumeCommand is the drill resume command for these flags.
func resumeCommand(f *engineFlags) string {
	return fmt.Sprintf("tricenter drill resume -f %s --state-dir %s", shellWord(f.file), shellWord(f.stateDir))
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
	if r.KeysError != "" {
		fmt.Fprintf(w, "  drill keys         NOT deleted: %s\n", r.KeysError)
	}
	if r.JournalKept {
		fmt.Fprintf(w, "  journal            kept: %s (drill resume brings back what may still be down)\n", r.Journal)
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

func newDrillResumeCmd(g *globals, powerFor drillPower) *cobra.Command {
	var f engineFlags
	var d drillFlags
	cmd := &cobra.Command{
		Use:   "resume -f FILE [--state-dir DIR]",
		Short: "Bring back what a killed drill left down (from its journal)",
		Long: `resume reads the journal a center-loss drill left in the state directory
when it ended before its restore (killed, or its restore abandoned), brings
back every server the journal does not confirm back on — through the same
method: BMC power on, or "systemctl start etcd" over SSH for --power ssh —
retrying for --restore-timeout, waits up to --health-timeout for the cluster
to be healthy, deletes the drill's keys and removes the journal once every
server is back. With no journal there is nothing to resume (exit 0).

Like the drill's restore it goes on after the first Ctrl-C (or SIGHUP); a
second Ctrl-C abandons it and keeps the journal.`,
		Example: `  tricenter drill resume -f cluster.yaml
  tricenter drill resume -f cluster.yaml --state-dir /var/lib/tricenter`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDrillResume(cmd.Context(), g, &f, &d, powerFor)
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	addOutputFlag(cmd, &d.output)
	fl := cmd.Flags()
	fl.DurationVar(&d.restoreTimeout, "restore-timeout", etcd.DefaultRestoreTimeout, "deadline for powering the servers back on (retries included)")
	fl.DurationVar(&d.healthT, "health-timeout", etcd.DefaultDrillHealthTimeout, "deadline for the cluster to be healthy after power-on")
	return cmd
}

func runDrillResume(ctx context.Context, g *globals, f *engineFlags, d *drillFlags, powerFor drillPower) error {
	if err := checkOutput(d.output); err != nil {
		return err
	}
	eng, st, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	// No journal: nothing to do, whatever else the state directory holds.
	if j, err := st.DrillJournal(); err != nil {
		return err
	} else if j == nil {
		if d.output == "json" {
			return writeJSON(g, &etcd.ResumeReport{Path: st.DrillJournalPath()})
		}
		fmt.Fprintf(g.stdout, "Nothing to resume: no drill journal at %s\n", st.DrillJournalPath())
		return nil
	}
	e, err := newEtcdEnv(g, f, eng, st, false)
	if err != nil {
		return err
	}
	lock, err := e.eng.Lock(ctx, installer.LockOptions{})
	if err != nil {
		return err
	}
	defer lock.Release()
	m := e.manager(false, nil)
	defer m.Close()
	cli, err := e.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	abandon := claimSecondInterrupt(ctx)
	stopNotice := context.AfterFunc(ctx, func() {
		fmt.Fprintln(g.stderr, "Finishing the resume before exiting (Ctrl-C again to abandon it and keep the journal)")
	})
	defer stopNotice()
	rr, err := etcd.ResumeDrill(ctx, etcd.ResumeOptions{Cluster: e.cluster, Placement: e.placement, Journal: st,
		PowerFor: func(method string) (etcd.Power, error) { return powerFor(method, e, m) },
		Client:   cli, Logger: e.log, RestoreTimeout: d.restoreTimeout, HealthTimeout: d.healthT, Abandon: abandon})
	if rr != nil {
		if d.output == "json" {
			if jerr := writeJSON(g, rr); jerr != nil {
				return jerr
			}
		} else {
			printResume(g.stdout, rr)
		}
	}
	return err
}

func printResume(w io.Writer, r *etcd.ResumeReport) {
	if r.Journal == nil {
		fmt.Fprintf(w, "Nothing to resume: no drill journal at %s\n", r.Path)
		return
	}
	j := r.Journal
	fmt.Fprintf(w, "Drill resume: center %s (%s)\n", j.Center, orDash(r.Method))
	fmt.Fprintf(w, "  journal            %s\n", r.Path)
	fmt.Fprintf(w, "  left by            pid %d on %s, started %s\n", j.PID, j.Host, j.Started.Local().Format(time.RFC3339))
	fmt.Fprintf(w, "  not back on        %s\n", orNone(r.Pending))
	fmt.Fprintf(w, "  brought back       %s\n", orNone(r.PoweredBackOn))
	if len(r.StillOff) > 0 {
		fmt.Fprintf(w, "  STILL DOWN         %s\n", strings.Join(r.StillOff, ", "))
	}
	switch {
	case r.Healthy:
		fmt.Fprintf(w, "  healthy            %v after power-on\n", ms(r.RestoredHealthy))
	case r.RestoreError != "":
		fmt.Fprintf(w, "  healthy            NO: %s\n", r.RestoreError)
	}
	if r.KeysError != "" {
		fmt.Fprintf(w, "  drill keys         NOT deleted: %s\n", r.KeysError)
	}
	if r.JournalRemoved {
		fmt.Fprintf(w, "  journal            removed\n")
	} else {
		fmt.Fprintf(w, "  journal            kept: run drill resume again once the servers can be reached\n")
	}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
