package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o table|json]",
		Short: "Print the version, the commit it was built from and the Go version",
		Long: `version prints this build's module version, the VCS revision it was built
from (and whether the tree had uncommitted changes), the commit time, the Go
version and the platform. The Terraform provider built from the same commit
reports the same version. tricenter --version prints the same on one line.`,
		Example: `  tricenter version
  tricenter version -o json | jq -r .revision`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			i := version.Get()
			if output == "json" {
				return cliflags.WriteJSON(g.stdout, i)
			}
			rev := i.Revision
			switch {
			case rev == "":
				rev = "unknown"
			case i.Modified:
				rev += " (modified)"
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "version\t%s\n", i.Version)
			fmt.Fprintf(tw, "revision\t%s\n", rev)
			if i.Time != "" {
				fmt.Fprintf(tw, "committed\t%s\n", i.Time)
			}
			fmt.Fprintf(tw, "go\t%s\n", i.GoVersion)
			fmt.Fprintf(tw, "platform\t%s\n", i.Platform)
			return tw.Flush()
		},
	}
	cliflags.AddOutput(cmd, &output)
	return cmd
}
