package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

// addRotateCACommand adds rotate-ca to the certs command group.
func addRotateCACommand(parent *cobra.Command, g *globals) {
	parent.AddCommand(newCertsRotateCACmd(g))
}

// rotateCAFlags are rotate-ca's own flags.
type rotateCAFlags struct {
	authority     string
	dryRun, yes   bool
	podTrustWait  time.Duration
	rootCATimeout time.Duration
	until         string
	output        string
}

func newCertsRotateCACmd(g *globals) *cobra.Command {
	var f engineFlags
	var r rotateCAFlags
	cmd := &cobra.Command{
		Use:   "rotate-ca -f FILE --authority NAME [--dry-run] [--yes]",
		Short: "Replace a certificate authority with a new one, with the API answering throughout; resumes where it stopped",
		Long: `rotate-ca replaces the certificate authority NAME (` + strings.Join(pki.Rotatable(), ", ") + `)
with a new one in three phases, each applied to every server that holds the
authority's files before the next begins:

  1 trust    every file that trusts the authority holds the old and the new CA
             (kubeconfigs included; for the kubernetes CA, pods get both in
             kube-root-ca.crt before the next phase)
  2 reissue  every certificate the authority signs is reissued by the new CA
  3 finish   the trust files hold the new CA only; the state keeps the new CA
             and the old certificate as ca-previous.pem

Each phase is an apply of the components that hold the authority's files
(etcd members one at a time, kube-apiservers one at a time behind /readyz,
kubelets within --concurrency), then the gates. The phase is recorded in the
state: a run that stops is resumed by running the same command again. On a
cluster whose etcd peers still share the etcd CA, rotating etcd-peer is the
split: the end state is the separate peer CA a new cluster gets.`,
		Example: `  tricenter certs rotate-ca -f cluster.yaml --authority kubernetes --dry-run
  tricenter certs rotate-ca -f cluster.yaml --authority kubernetes --until trust --yes
  tricenter certs rotate-ca -f cluster.yaml --authority etcd-peer --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(r.output); err != nil {
				return err
			}
			if !slices.Contains(pki.Rotatable(), r.authority) {
				return fmt.Errorf("--authority %q: use one of %s", r.authority, strings.Join(pki.Rotatable(), ", "))
			}
			if r.until != "" && !slices.Contains(pki.RotationPhases(), pki.RotationPhase(r.until)) {
				return fmt.Errorf("--until %q: use one of %s", r.until, phaseNames())
			}
			in := cmd.InOrStdin()
			if !r.yes && !r.dryRun {
				if err := canConfirm(in, "the CA rotation"); err != nil {
					return fmt.Errorf("%w (--dry-run shows the phases)", err)
				}
			}
			return runRotateCA(cmd.Context(), g, &f, &r, in)
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	cliflags.AddOutput(cmd, &r.output)
	cmd.Flags().StringVar(&r.authority, "authority", "", "the authority to rotate: "+strings.Join(pki.Rotatable(), ", "))
	_ = cmd.MarkFlagRequired("authority")
	cmd.Flags().BoolVar(&r.dryRun, "dry-run", false, "print the phases and the servers each applies to, and stop")
	cmd.Flags().BoolVarP(&r.yes, "yes", "y", false, "rotate without asking for confirmation")
	cmd.Flags().DurationVar(&r.podTrustWait, "pod-trust-wait", installer.DefaultPodTrustWait,
		"kubernetes CA: how long to wait, once kube-root-ca.crt holds both CAs everywhere, for the kubelets to refresh the pods' copies")
	cmd.Flags().StringVar(&r.until, "until", "", "stop after this phase ("+phaseNames()+"); the next run resumes after it")
	cmd.Flags().DurationVar(&r.rootCATimeout, "root-ca-timeout", installer.DefaultRootCATimeout,
		"kubernetes CA: how long kube-controller-manager may take to publish both CAs in every namespace's kube-root-ca.crt")
	return cmd
}

type rotateCAReport struct {
	Plan     *installer.RotateCAResult `json:"plan"`
	Rotation *installer.RotateCAResult `json:"rotation,omitempty"`
}

func runRotateCA(ctx context.Context, g *globals, f *engineFlags, r *rotateCAFlags, in io.Reader) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	o := installer.RotateCAOptions{LockTimeout: f.lockTimeoutOption(), PodTrustWait: r.podTrustWait, RootCATimeout: r.rootCATimeout,
		Until: pki.RotationPhase(r.until)}
	if r.podTrustWait == 0 {
		o.PodTrustWait = -1 // asked for no wait
	}
	rep := &rotateCAReport{}
	plan, err := e.PlanRotateCA(ctx, r.authority, o)
	rep.Plan = plan
	if plan != nil && r.output == "table" && plan.Steps != nil {
		printRotateCAPlan(g.stdout, plan)
	}
	if err != nil {
		if r.output == "json" {
			_ = cliflags.WriteJSON(g.stdout, rep)
		}
		return fmt.Errorf("planning the CA rotation: %w", engineError(err))
	}
	if r.dryRun {
		if r.output == "json" {
			return cliflags.WriteJSON(g.stdout, rep)
		}
		return nil
	}
	if !r.yes {
		q := fmt.Sprintf("Rotate the %s CA?", r.authority)
		if plan.InProgress {
			q = fmt.Sprintf("Resume the %s CA rotation?", r.authority)
		}
		ok, err := confirm(ctx, g.stdout, in, q)
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: errors.New("not rotated")}
		}
	}
	res, err := e.RotateCA(ctx, r.authority, o)
	rep.Rotation = res
	if r.output == "json" {
		if werr := cliflags.WriteJSON(g.stdout, rep); werr != nil && err == nil {
			err = werr
		}
	} else if res != nil {
		printCARotated(g.stdout, res)
	}
	if err != nil {
		return fmt.Errorf("rotating the %s CA: %w", r.authority, engineError(err))
	}
	return nil
}

func shortFP(fp string) string {
	if len(fp) > 16 {
		return "sha256:" + fp[:16] + "…"
	}
	if fp == "" {
		return "(new)"
	}
	return "sha256:" + fp
}

// printRotateCAPlan prints the phases × servers.
func printRotateCAPlan(w io.Writer, r *installer.RotateCAResult) {
	switch {
	case r.InProgress:
		fmt.Fprintf(w, "%s CA rotation in progress since %s: %s → %s\n", r.Authority, r.Started.Local().Format(time.RFC3339), shortFP(r.Old), shortFP(r.Next))
	case r.Split:
		fmt.Fprintf(w, "A new rotation of the etcd peer CA: the split from the etcd CA (%s) to a peer CA of its own\n", shortFP(r.Old))
	default:
		fmt.Fprintf(w, "A new rotation of the %s CA (%s)\n", r.Authority, shortFP(r.Old))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\t\tSTATUS\tCOMPONENTS\tSERVERS\tWHAT IT DOES")
	for i, s := range r.Steps {
		var comps []string
		for _, c := range s.Components {
			comps = append(comps, string(c))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, s.Phase, s.Status, strings.Join(comps, ","), strings.Join(s.Hosts, ","), s.What)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "Each phase is recorded in the state: run again to resume a rotation that stopped")
}

// printCARotated says what the run did.
func printCARotated(w io.Writer, r *installer.RotateCAResult) {
	for i, s := range r.Steps {
		if s.Took == 0 {
			continue
		}
		fmt.Fprintf(w, "phase %d (%s): %d %s in %v\n", i+1, s.Phase, len(s.Changes), plural(len(s.Changes), "server changed", "servers changed"),
			s.Took.Round(time.Second))
	}
	switch {
	case r.Complete:
		fmt.Fprintf(w, "rotated: the %s CA is %s on every server; the old certificate is kept in the state as ca-previous.pem\n", r.Authority, shortFP(r.Next))
	case r.InProgress:
		fmt.Fprintf(w, "the %s CA rotation stopped: every server trusts what is in use; run the same command again to resume\n", r.Authority)
	}
}

// phaseNames lists the rotation's phases for flag messages.
func phaseNames() string {
	var names []string
	for _, p := range pki.RotationPhases() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}
