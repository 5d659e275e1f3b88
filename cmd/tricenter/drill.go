package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// drillPower replaces how a drill takes servers down and brings them
// back for a method (tests: a fake); nil: the BMCs, or etcd over SSH.
type drillPower func(method string) (etcd.Power, error)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Failure drills against a running cluster",
	}
	cmd.AddCommand(newDrillCenterLossCmd(g, nil), newDrillResumeCmd(g, nil))
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
	cliflags.AddOutput(cmd, &d.output)
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

func runDrill(ctx context.Context, g *globals, f *engineFlags, d *drillFlags, powerFor drillPower, in io.Reader) error {
	if err := cliflags.CheckOutput(d.output); err != nil {
		return err
	}
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	var method string
	stopNotice := func() bool { return false }
	o := installer.DrillOptions{Center: d.center, Power: d.power, Hold: d.hold, Writers: d.writers,
		RestoreTimeout: d.restoreTimeout, HealthTimeout: d.healthT, Kubernetes: d.k8s, PowerFor: powerFor,
		Abandon: claimSecondInterrupt(ctx),
		Notice:  func(msg string) { fmt.Fprintln(g.stderr, msg) },
		Started: func(t *installer.DrillTargets) {
			method = t.Method
			stopNotice = context.AfterFunc(ctx, func() {
				fmt.Fprintf(g.stderr, "Restoring center %s before exiting (Ctrl-C again to abandon the restore)\n", d.center)
			})
		}}
	if !d.yes {
		o.Confirm = func(ctx context.Context, t *installer.DrillTargets) (bool, error) {
			writeDrillTargets(g.stderr, t)
			return confirm(ctx, g.stderr, in, fmt.Sprintf("Take center %s down now?", d.center))
		}
	}
	rep, err := e.Drill(ctx, o)
	stopNotice()
	switch {
	case errors.Is(err, installer.ErrDrillNotConfirmed):
		return &exitError{code: 1, err: err}
	case errors.Is(err, etcd.ErrDrillJournal):
		err = withResumeHint(err, f)
	}
	err = engineError(err)
	if rep != nil {
		if d.output == "json" {
			if jerr := cliflags.WriteJSON(g.stdout, rep); jerr != nil {
				return jerr
			}
		} else {
			printDrill(g.stdout, rep)
		}
		if len(rep.StillOff) > 0 {
			fmt.Fprintf(g.stderr, "Servers of center %s that may still be off: %s\n", d.center, strings.Join(rep.StillOff, ", "))
			if rep.JournalKept {
				fmt.Fprintf(g.stderr, "The drill journal %s names them; bring them back with:\n  %s\nor by hand:\n  %s\n",
					rep.Journal, resumeCommand(f), restoreCommand(method, f.file, rep.StillOff))
			} else {
				fmt.Fprintf(g.stderr, "Bring them back with:\n  %s\n", restoreCommand(method, f.file, rep.StillOff))
			}
		}
	}
	return err
}

// writeDrillTargets shows what a drill takes down before asking.
func writeDrillTargets(w io.Writer, t *installer.DrillTargets) {
	p := t.Placement
	fmt.Fprintf(w, "Center-loss drill of %s (%s) takes down %s:\n", t.Center, t.Power, countServers(len(t.Servers)))
	var members, cps []string
	writeGoingDark(w, t.Servers, func(h inventory.Host) string {
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
	return fmt.Sprintf("tricenter drill resume -f %s --state-dir %s", shell.Quote(f.file), shell.Quote(f.stateDir))
}

// restoreCommand is the command that brings the given servers back.
func restoreCommand(kind, inv string, servers []string) string {
	list := strings.Join(servers, ",")
	if kind == installer.DrillPowerSSH {
		return fmt.Sprintf("tricenter exec -f %s --sudo --host %s -- systemctl start %s", shell.Quote(inv), list, etcd.Unit)
	}
	return fmt.Sprintf("tricenter bmc on -f %s --server %s", shell.Quote(inv), list)
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
		printLeaderAfter(w, r.LeaderHome, r.LeaderMovedFrom, r.LeaderMoveTook, r.LeaderMoveError)
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

// printLeaderAfter says where the etcd leader was once the restore was
// healthy, and whether it was moved back into production.
func printLeaderAfter(w io.Writer, at *etcd.LeaderPlacement, from string, took time.Duration, moveErr string) {
	switch {
	case at == nil:
	case moveErr != "":
		fmt.Fprintf(w, "  leader after       %s, NOT moved into production: %s\n", at.At(), moveErr)
	case from != "":
		fmt.Fprintf(w, "  leader after       %s: moved back from %s in %v\n", at.At(), from, ms(took))
	case at.Home:
		fmt.Fprintf(w, "  leader after       %s: in production, not moved\n", at.At())
	default:
		fmt.Fprintf(w, "  leader after       %s: stays outside production: %s\n", at.At(), at.Reason)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
	cliflags.AddOutput(cmd, &d.output)
	fl := cmd.Flags()
	fl.DurationVar(&d.restoreTimeout, "restore-timeout", etcd.DefaultRestoreTimeout, "deadline for powering the servers back on (retries included)")
	fl.DurationVar(&d.healthT, "health-timeout", etcd.DefaultDrillHealthTimeout, "deadline for the cluster to be healthy after power-on")
	return cmd
}

func runDrillResume(ctx context.Context, g *globals, f *engineFlags, d *drillFlags, powerFor drillPower) error {
	if err := cliflags.CheckOutput(d.output); err != nil {
		return err
	}
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	stopNotice := context.AfterFunc(ctx, func() {
		fmt.Fprintln(g.stderr, "Finishing the resume before exiting (Ctrl-C again to abandon it and keep the journal)")
	})
	rr, err := e.ResumeDrill(ctx, installer.ResumeDrillOptions{RestoreTimeout: d.restoreTimeout, HealthTimeout: d.healthT,
		Abandon: claimSecondInterrupt(ctx), PowerFor: powerFor})
	stopNotice()
	err = engineError(err)
	if rr != nil {
		if d.output == "json" {
			if jerr := cliflags.WriteJSON(g.stdout, rr); jerr != nil {
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
	printLeaderAfter(w, r.LeaderHome, r.LeaderMovedFrom, r.LeaderMoveTook, r.LeaderMoveError)
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
