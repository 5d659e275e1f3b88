package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/internal/logging"
	"github.com/tricenter/terraform-provider-tricenter/internal/version"
)

// globals are the flags every command shares; they live in a struct passed
// down, never in package variables.
type globals struct {
	stdout, stderr io.Writer
	// logFlags are --log-format and --log-level.
	logFlags cliflags.Logging
	// getenv reads the environment (TRICENTER_INVENTORY).
	getenv func(string) string
	// openTTY opens the terminal confirmations read when stdin holds the
	// inventory (-f -).
	openTTY func() (io.Reader, error)
	// stdinInventory is the inventory -f - read from stdin.
	stdinInventory []byte
}

// logger is the process's logger; client-go's klog output goes through it
// too (so --log-format json holds for every line).
func (g *globals) logger() (*slog.Logger, error) {
	l, err := g.logFlags.Logger(g.stderr)
	if err != nil {
		return nil, err
	}
	logging.RouteKlog(l.Handler())
	return l, nil
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	return newRoot(&globals{stdout: stdout, stderr: stderr, getenv: os.Getenv, openTTY: openTerminal})
}

// newRoot builds the command tree over g (tests set its environment and
// terminal).
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:     "tricenter",
		Version: version.Get().String(),
		Short:   "Bring bare-metal servers in three centers up to a verified Kubernetes cluster",
		Long: `tricenter takes TOR-racked bare-metal servers in two sites and three centers
(production, local disaster recovery, remote disaster recovery) from "reachable
only through its BMC" to a running, verified Kubernetes cluster.

Start with an inventory file (see examples/inventory/), then:
  tricenter validate -f cluster.yaml
  tricenter plan -f cluster.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command with -f reads its inventory from the flag, from
		// stdin (-f -) or from TRICENTER_INVENTORY.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return g.resolveInventory(cmd) },
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	// Declared here rather than added by cobra at run time, so that it is
	// a flag of the tree like any other (help, examples checks).
	root.Flags().Bool("version", false, "print the version, commit and Go version (as tricenter version) and exit")
	g.logFlags.Register(root.PersistentFlags())
	root.AddCommand(
		newValidateCmd(g),
		newPlanCmd(g),
		newBGPCmd(g),
		newBMCCmd(g),
		newApplyCmd(g), newStatusCmd(g), newKubeconfigCmd(g), newEtcdCmd(g), newSnapshotCmd(g), newDrillCmd(g), newResetCmd(g),
		newFenceCmd(g, nil), newUnfenceCmd(g), newRestoreCmd(g, nil),
		newSSHCheckCmd(g), newExecCmd(g), newStateCmd(g), newVersionCmd(g),
		newUpgradeCmd(g), newSecretsCmd(g), newCertsCmd(g),
	)
	registerInventoryCompletions(root, g)
	return root
}

// addInventoryFlag registers the -f flag every inventory command takes:
// a file, - for stdin, or TRICENTER_INVENTORY when not given
// (resolveInventory).
func addInventoryFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "file", "f", "", "inventory file (YAML, apiVersion tricenter.io/v1alpha1), - for stdin; default $"+envInventory)
	_ = cmd.MarkFlagFilename("file", "yaml", "yml")
	_ = cmd.Flags().SetAnnotation("file", inventoryFlag, []string{"true"})
}

// addOutputFileFlag registers --output-file, where a command writes what
// it would print (-o stays the format). --out, its old name, still works
// for this release, hidden.
func addOutputFileFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "output-file", "", "write to this file (atomically, mode 0600) instead of stdout")
	cmd.Flags().StringVar(path, "out", "", "old name of --output-file")
	_ = cmd.Flags().MarkHidden("out")
}
