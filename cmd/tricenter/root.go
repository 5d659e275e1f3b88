package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
)

// globals are the flags every command shares; they live in a struct passed
// down, never in package variables.
type globals struct {
	stdout, stderr io.Writer
	logFormat      string
	logLevel       string
}

func (g *globals) logger() (*slog.Logger, error) {
	return logging.New(g.stderr, g.logFormat, g.logLevel)
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "tricenter",
		Short: "Bring bare-metal servers in three centers up to a verified Kubernetes cluster",
		Long: `tricenter takes TOR-racked bare-metal servers in two sites and three centers
(production, local disaster recovery, remote disaster recovery) from "reachable
only through its BMC" to a running, verified Kubernetes cluster.

Start with an inventory file (see examples/inventory/), then:
  tricenter validate -f cluster.yaml
  tricenter plan -f cluster.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		newValidateCmd(g),
		newPlanCmd(g),
		newBGPCmd(g),
		newBMCCmd(g),
		newApplyCmd(g), newStatusCmd(g), newKubeconfigCmd(g), newEtcdCmd(g), newDrillCmd(g), newResetCmd(g),
		newSSHCheckCmd(g), newExecCmd(g), newLabCmd(g), newStateCmd(g),
	)
	return root
}

// addInventoryFlag registers the -f flag every inventory command takes.
func addInventoryFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "file", "f", "", "inventory file (YAML, apiVersion tricenter.io/v1alpha1)")
	_ = cmd.MarkFlagRequired("file")
	_ = cmd.MarkFlagFilename("file", "yaml", "yml")
}

// addOutputFlag registers -o table|json.
func addOutputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", "table", "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return fmt.Errorf("--output %q: use table or json", o)
	}
	return nil
}
