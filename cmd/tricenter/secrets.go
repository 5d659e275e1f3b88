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
	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newSecretsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Secrets encrypted in etcd: rotate the encryption key",
		Long: `Every control-plane server's kube-apiserver encrypts Secrets in etcd with a
key tricenter keeps in its state (encryption/keys.json) and writes to
/etc/kubernetes/encryption-config.yaml. secrets rotate-key replaces it.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSecretsRotateKeyCmd(g))
	return cmd
}

// rotateKeyFlags are rotate-key's own flags.
type rotateKeyFlags struct {
	dryRun, yes   bool
	reloadTimeout time.Duration
	output        string
}

func newSecretsRotateKeyCmd(g *globals) *cobra.Command {
	var f engineFlags
	var r rotateKeyFlags
	cmd := &cobra.Command{
		Use:   "rotate-key -f FILE [--dry-run] [--yes]",
		Short: "Replace the key Secrets are encrypted with in etcd, with the API serving throughout; resumes where it stopped",
		Long: `rotate-key generates a new key (key-<n+1>) and replaces the one Secrets are
encrypted with in etcd, in the order Kubernetes documents for a cluster of
several kube-apiservers, each stage on every control-plane server before the
next begins:

  1 add      the new key second in the encryption configuration of every
             server (each can then read it); wait until each kube-apiserver
             loaded it
  2 promote  the new key first everywhere (every write uses it); wait again
  3 rewrite  every Secret rewritten, unchanged, through the API; etcd read to
             check every value is encrypted with the new key
  4 drop     the old key out of every configuration (wait again), then out of
             the state

kube-apiserver reloads its configuration by itself: nothing restarts and the
API VIP never moves. The rotation's stage is recorded in the state before its
work starts; a run that stops (a failed stage, Ctrl-C, a lost jump host) is
resumed by running the same command again, and every server reads every
Secret at every moment. --dry-run prints the servers' keys and the stages.`,
		Example: `  tricenter secrets rotate-key -f cluster.yaml --dry-run
  tricenter secrets rotate-key -f cluster.yaml --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(r.output); err != nil {
				return err
			}
			if r.reloadTimeout <= 0 {
				return fmt.Errorf("--reload-timeout %v: use a positive duration, e.g. 5m", r.reloadTimeout)
			}
			in := cmd.InOrStdin()
			if !r.yes && !r.dryRun {
				// Refused before anything is read: nobody could answer.
				if err := canConfirm(in, "the key rotation"); err != nil {
					return fmt.Errorf("%w (--dry-run shows the stages)", err)
				}
			}
			return runRotateKey(cmd.Context(), g, &f, &r, in)
		},
	}
	addEngineFlags(cmd, &f)
	addLockFlag(cmd, &f)
	cliflags.AddOutput(cmd, &r.output)
	cmd.Flags().BoolVar(&r.dryRun, "dry-run", false, "print the servers' keys and the stages (those left, for a rotation in progress) and stop")
	cmd.Flags().BoolVarP(&r.yes, "yes", "y", false, "rotate without asking for confirmation")
	cmd.Flags().DurationVar(&r.reloadTimeout, "reload-timeout", installer.DefaultReloadTimeout,
		"how long every kube-apiserver may take to load a stage's configuration (it looks at the file once a minute)")
	return cmd
}

type rotateKeyReport struct {
	Plan     *installer.RotateKeyResult `json:"plan"`
	Rotation *installer.RotateKeyResult `json:"rotation,omitempty"`
}

func runRotateKey(ctx context.Context, g *globals, f *engineFlags, r *rotateKeyFlags, in io.Reader) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	o := installer.RotateKeyOptions{LockTimeout: f.lockTimeoutOption(), ReloadTimeout: r.reloadTimeout}
	rep := &rotateKeyReport{}
	plan, err := e.PlanRotateKey(ctx, o)
	rep.Plan = plan
	if plan != nil {
		for _, w := range plan.Warnings {
			warn(g, w)
		}
		if r.output == "table" && plan.Stages != nil {
			printRotateKeyPlan(g.stdout, plan)
		}
	}
	if err != nil {
		if r.output == "json" {
			_ = cliflags.WriteJSON(g.stdout, rep)
		}
		return fmt.Errorf("planning the key rotation: %w", engineError(err))
	}
	if r.dryRun {
		if r.output == "json" {
			return cliflags.WriteJSON(g.stdout, rep)
		}
		return nil
	}
	if !r.yes {
		q := fmt.Sprintf("Rotate the Secrets encryption key to %s?", plan.Key)
		if plan.InProgress {
			q = fmt.Sprintf("Resume the rotation to %s?", plan.Key)
		}
		ok, err := confirm(ctx, g.stdout, in, q)
		if err != nil {
			return err
		}
		if !ok {
			return &exitError{code: 1, err: errors.New("not rotated")}
		}
	}
	res, err := e.RotateKey(ctx, o)
	rep.Rotation = res
	if r.output == "json" {
		if werr := cliflags.WriteJSON(g.stdout, rep); werr != nil && err == nil {
			err = werr
		}
	} else if res != nil {
		printKeyRotated(g.stdout, res)
	}
	if err != nil {
		return fmt.Errorf("rotating the key: %w", engineError(err))
	}
	return nil
}

// printRotateKeyPlan prints the keys, the servers and the stages.
func printRotateKeyPlan(w io.Writer, r *installer.RotateKeyResult) {
	fmt.Fprintf(w, "Secrets encryption keys in %s: %s\n", r.Keyring, strings.Join(r.Keys, ", "))
	next := ""
	for _, s := range r.Stages {
		if s.Status == encryption.StatusNext {
			next = fmt.Sprintf("stage %d (%s)", s.Number, s.Stage)
		}
	}
	if r.InProgress {
		fmt.Fprintf(w, "Rotation to %s in progress since %s: resumes at %s\n", r.Key, r.Started.Local().Format(time.RFC3339), next)
	} else {
		fmt.Fprintf(w, "A new rotation: %s is generated and replaces %s\n", r.Key, strings.Join(r.Keys, ", "))
	}
	if len(r.Servers) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SERVER\tKEYS\tIN USE\tNEXT STAGE CHANGES IT")
		for _, s := range r.Servers {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Server, keyList(s.Keys), s.Loaded, lowerYesNo(s.Changes))
		}
		_ = tw.Flush()
	}
	if len(r.Objects) > 0 {
		var parts []string
		for _, res := range r.Resources {
			parts = append(parts, fmt.Sprintf("%d %s", r.Objects[res], res))
		}
		fmt.Fprintf(w, "To rewrite: %s\n", strings.Join(parts, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\t\tSTATUS\tCONFIGURATION\tWHAT IT DOES")
	for _, s := range r.Stages {
		conf := "-"
		if len(s.Keys) > 0 {
			conf = keyList(s.Keys)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", s.Number, s.Stage, s.Status, conf, s.Does)
	}
	_ = tw.Flush()
	if next != "" {
		fmt.Fprintf(w, "Runs from %s; the stage is recorded in the state: run again to resume a rotation that stopped\n", next)
	}
}

// printKeyRotated says what the run did.
func printKeyRotated(w io.Writer, r *installer.RotateKeyResult) {
	rot := r.Rotation
	if rot != nil && len(rot.Ran) > 0 {
		var ran []string
		for _, s := range rot.Ran {
			ran = append(ran, fmt.Sprintf("%d (%s)", s.Number(), s))
		}
		fmt.Fprintf(w, "ran %s %s in %v\n", plural(len(ran), "stage", "stages"), strings.Join(ran, ", "), r.Took.Round(time.Second))
	}
	if r.Lock != "" {
		fmt.Fprintf(w, "locks held: %s\n", r.Lock)
	}
	if rot != nil && (rot.Rewrite.Rewritten > 0 || rot.Rewrite.Checked > 0) {
		fmt.Fprintf(w, "%d objects rewritten through the API, %d checked in etcd\n", rot.Rewrite.Rewritten, rot.Rewrite.Checked)
	}
	switch {
	case r.InProgress:
		at := ""
		for _, s := range r.Stages {
			if s.Status == encryption.StatusNext {
				at = fmt.Sprintf(" at stage %d (%s)", s.Number, s.Stage)
			}
		}
		fmt.Fprintf(w, "the rotation to %s stopped%s: every server still reads every Secret; fix the cause, then run the same command again to resume\n", r.Key, at)
	case rot != nil && len(rot.To) > 0:
		fmt.Fprintf(w, "rotated: Secrets are encrypted with %s on every control-plane server; %s dropped from the servers and the state\n",
			r.Key, strings.Join(dropped(rot.From, r.Key), ", "))
	}
}

func dropped(from []string, key string) []string {
	var out []string
	for _, n := range from {
		if n != key {
			out = append(out, n)
		}
	}
	return out
}

func keyList(keys []string) string {
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ", ") + ", identity"
}

func lowerYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
