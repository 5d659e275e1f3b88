package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newCertsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Certificates of the cluster: list their expiry, renew leaf certificates, rotate an authority",
		Long: `tricenter keeps the cluster's authorities and leaf certificates in its state
(pki/ under the state directory). apply reissues a leaf when it no longer
matches what it is for or is within spec.pki.renewBefore of its expiry;
certs renew reissues the leaves you select now, and certs list shows when
each kind expires.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertsListCmd(g), newCertsRenewCmd(g))
	addRotateCACommand(cmd, g)
	return cmd
}

func newCertsListCmd(g *globals) *cobra.Command {
	var f engineFlags
	var output string
	cmd := &cobra.Command{
		Use:   "list -f FILE",
		Short: "Show the earliest expiry of every kind of certificate in the state",
		Long: `list reads the certificates in the state (it touches no server) and shows, per
kind, the one that expires first, flagged RENEW DUE within spec.pki.renewBefore
and EXPIRED after.`,
		Example: `  tricenter certs list -f cluster.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			e, _, err := loadEngine(g, &f)
			if err != nil {
				return err
			}
			defer e.Close()
			r, err := e.CertificateExpiry()
			if err != nil {
				return engineError(err)
			}
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, r)
			}
			printCertificates(g.stdout, &installer.CertificateStatus{Source: installer.CertificateSourceStore,
				RenewBefore: r.RenewBefore, Kinds: r.Kinds, Unused: r.Unused})
			return nil
		},
	}
	addReadOnlyEngineFlags(cmd, &f)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

// renewFlags are renew's own flags.
type renewFlags struct {
	all, due, dryRun, yes bool
	kinds, hosts          []string
	output                string
}

func newCertsRenewCmd(g *globals) *cobra.Command {
	var f engineFlags
	var r renewFlags
	cmd := &cobra.Command{
		Use:   "renew -f FILE [--all | --kind KIND... | --host NAME... | --due] [--dry-run] [--yes]",
		Short: "Reissue leaf certificates now and restart what uses them, one server at a time, with the API serving throughout",
		Long: `renew reissues the selected leaf certificates now, whatever their expiry, and
installs them: the renewal (its start and its certificates) is recorded in the
state, then apply runs for the components concerned only. etcd members restart
one at a time with health checks; control-plane servers one at a time, the API
VIP held away from each while its kube-apiserver (or its etcd member) restarts
and released once its /readyz answers; kubelets and kube-proxy by the
concurrency bound.

A certificate issued since the renewal started is kept: a run that stops is
resumed by running again. Authorities are not renewed (tricenter certs
rotate-ca), nor the service-account key.

Selections combine: --kind and --host keep the certificates of those kinds
and servers (--host: the certificates named after the server: etcd peer and
server, kubelet client and serving), --due those within spec.pki.renewBefore;
without any, or with --all, every leaf certificate the inventory uses.`,
		Example: `  tricenter certs renew -f cluster.yaml --dry-run
  tricenter certs renew -f cluster.yaml --kind "kubelet serving" --host dc2-r01-w01 --yes
  tricenter certs renew -f cluster.yaml --due --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(r.output); err != nil {
				return err
			}
			if r.all && (len(r.kinds) > 0 || len(r.hosts) > 0 || r.due) {
				return errors.New("--all selects every leaf certificate: leave it out to select with --kind, --host or --due")
			}
			in := cmd.InOrStdin()
			if !r.yes && !r.dryRun {
				if err := canConfirm(in, "the renewal"); err != nil {
					return fmt.Errorf("%w (--dry-run shows the certificates and restarts)", err)
				}
			}
			return runRenew(cmd.Context(), g, &f, &r, in)
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	cliflags.AddOutput(cmd, &r.output)
	cmd.Flags().BoolVar(&r.all, "all", false, "every leaf certificate the inventory uses (the default)")
	cmd.Flags().StringArrayVar(&r.kinds, "kind", nil, "certificates of this kind, as certs list names it, e.g. \"kubelet serving\" (repeatable): "+
		strings.Join(installer.RenewableKinds(), ", "))
	cmd.Flags().StringArrayVar(&r.hosts, "host", nil, "the certificates named after this server (repeatable)")
	cmd.Flags().BoolVar(&r.due, "due", false, "only the certificates within spec.pki.renewBefore of their expiry, or expired")
	cmd.Flags().BoolVar(&r.dryRun, "dry-run", false, "print the certificates and the restarts and stop")
	cmd.Flags().BoolVarP(&r.yes, "yes", "y", false, "renew without asking for confirmation")
	_ = cmd.RegisterFlagCompletionFunc("kind", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return installer.RenewableKinds(), cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

type renewReport struct {
	Plan    *installer.RenewResult `json:"plan"`
	Renewal *installer.RenewResult `json:"renewal,omitempty"`
}

func runRenew(ctx context.Context, g *globals, f *engineFlags, r *renewFlags, in io.Reader) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	o := installer.RenewOptions{Kinds: r.kinds, Servers: r.hosts, Due: r.due, LockTimeout: f.lockTimeoutOption()}
	rep := &renewReport{}
	plan, err := e.PlanRenewal(ctx, o)
	rep.Plan = plan
	if err != nil {
		return fmt.Errorf("planning the renewal: %w", engineError(err))
	}
	for _, w := range plan.Warnings {
		warn(g, w)
	}
	if r.output == "table" {
		printRenewPlan(g.stdout, plan)
	}
	if r.dryRun || len(plan.Certificates) == 0 {
		if r.output == "json" {
			return cliflags.WriteJSON(g.stdout, rep)
		}
		return nil
	}
	if !r.yes {
		q := fmt.Sprintf("Renew %d certificates now?", len(plan.Certificates))
		if plan.Resumed {
			q = "Resume the renewal?"
		}
		ok, err := confirm(ctx, g.stdout, in, q)
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: errors.New("not renewed")}
		}
	}
	res, err := e.RenewCertificates(ctx, o)
	rep.Renewal = res
	if r.output == "json" {
		if werr := cliflags.WriteJSON(g.stdout, rep); werr != nil && err == nil {
			err = werr
		}
	} else if res != nil {
		printRenewed(g.stdout, res)
	}
	if err != nil {
		return fmt.Errorf("renewing certificates: %w", engineError(err))
	}
	return nil
}

// printRenewPlan prints the certificates and the restarts.
func printRenewPlan(w io.Writer, p *installer.RenewResult) {
	if len(p.Certificates) == 0 {
		fmt.Fprintln(w, "No certificate selected: nothing to renew")
		return
	}
	if p.Resumed {
		fmt.Fprintf(w, "A renewal started %s is not finished: it resumes (certificates issued since are kept)\n", p.Started.Local().Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSERVER\tEXPIRES\tINSTALLED BY\tFILE")
	for _, c := range p.Certificates {
		comp := string(c.Component)
		if comp == "" {
			comp = "(state only)"
		}
		exp := c.NotAfter.UTC().Format(time.RFC3339)
		if c.Renewed {
			exp += " (renewed)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Kind, dash(c.Server), exp, comp, c.File)
	}
	_ = tw.Flush()
	if len(p.Restarts) > 0 {
		fmt.Fprintln(w, "Restarts (etcd and control plane one server at a time):")
		for _, x := range p.Restarts {
			fmt.Fprintf(w, "  %s %s on %s\n", x.Component, x.Unit, strings.Join(x.Servers, ", "))
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printRenewed prints what a renewal did.
func printRenewed(w io.Writer, r *installer.RenewResult) {
	if r.Apply != nil && len(r.Apply.Changes) > 0 {
		fmt.Fprintf(w, "changed %d servers: %s\n", len(r.Apply.Hosts()), strings.Join(r.Apply.Hosts(), ", "))
	}
	if len(r.Held) > 0 {
		fmt.Fprintf(w, "API VIP held away from each server while it restarted: %s\n", strings.Join(r.Held, ", "))
	}
	fmt.Fprintf(w, "renewed %d of %d certificates (renewal started %s)\n", r.Renewed, len(r.Certificates), r.Started.Local().Format(time.RFC3339))
	if !r.EarliestExpiry.IsZero() {
		fmt.Fprintf(w, "earliest leaf expiry now: %s, %s\n", r.EarliestExpiry.UTC().Format(time.RFC3339), r.EarliestWhat)
	}
}
