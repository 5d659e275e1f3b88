package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
)

func newSSHCheckCmd(g *globals) *cobra.Command {
	var f engineFlags
	var sel selectFlags
	var output string
	cmd := &cobra.Command{
		Use:   "ssh-check -f FILE [--role R] [--center C]",
		Short: "Check every host is reachable over SSH, its host key verified, sudo working; print OS facts",
		Long: `ssh-check connects to each selected host the way the installer does (through
its center's jump host and the --bastion, host keys checked against the
inventory pins, known_hosts files and @cert-authority lines) and reports per
host: reachable, the verified host key fingerprint, whether sudo works
without a password, and OS facts. It changes nothing on the hosts.

The exit status is 0 when every host passes, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			return runSSHCheck(cmd.Context(), g, &f, &sel, output)
		},
	}
	addReadOnlyEngineFlags(cmd, &f)
	addSelectFlags(cmd, &sel)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

func runSSHCheck(ctx context.Context, g *globals, f *engineFlags, sel *selectFlags, output string) error {
	e, _, err := loadEngine(g, f)
	if err != nil {
		return err
	}
	defer e.Close()
	// Interrupted, the check still shows what it found.
	rows, err := e.SSHCheck(ctx, sel.selector())
	if rows == nil {
		return err
	}
	failed := 0
	for i := range rows {
		if !rows[i].OK() {
			failed++
		}
	}
	if output == "json" {
		if err := cliflags.WriteJSON(g.stdout, rows); err != nil {
			return err
		}
	} else {
		printChecks(g, rows)
		fmt.Fprintf(g.stdout, "\n%d of %d hosts OK\n", len(rows)-failed, len(rows))
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}

func printChecks(g *globals, rows []installer.HostCheck) {
	tw := tabwriter.NewWriter(g.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCENTER\tADDRESS\tVIA\tREACHABLE\tHOST KEY\tSUDO\tOS\tKERNEL\tCPUS\tMEM")
	for _, r := range rows {
		reach := "no"
		if r.Reachable {
			reach = "yes"
		}
		dash := func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		}
		cpus, mem := "-", "-"
		if r.CPUs > 0 {
			cpus = strconv.Itoa(r.CPUs)
			mem = fmt.Sprintf("%.1fGiB", r.MemoryGiB)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, dash(r.Center), r.Address, r.Via, reach,
			dash(r.HostKey), r.Sudo, dash(r.OS), dash(r.Kernel), cpus, mem)
	}
	tw.Flush()
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(g.stdout, "%s: %s\n", r.Host, r.Error)
		}
	}
}
