package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

func newStateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Move the engine state (PKI, recorded allocations) between Terraform and a state directory",
	}
	var file, stateDir, from string
	restore := &cobra.Command{
		Use:   "restore -f FILE --from STATE_JSON",
		Short: "Write a tricenter_cluster's state attribute into a state directory",
		Long: `restore writes the engine state Terraform keeps in a tricenter_cluster's
Sensitive "state" attribute into a state directory, so that the CLI's commands
(status, drill, kubeconfig, etcd) work on a cluster Terraform manages. The
other direction is "terraform import tricenter_cluster.NAME STATE_DIR#INVENTORY".
The directory holds the cluster's private keys: it is created 0700.

A state written with tricenter_cluster's pki_dir holds only the fingerprints
of the PKI: restore reads the files back from the directory the state names
(it must be reachable here) and checks each against its fingerprint; a
missing or changed file is an error naming it, and nothing is written.`,
		Example: `  terraform output -raw engine_state | tricenter state restore -f cluster.yaml --from - --state-dir /tmp/tc
  tricenter drill center-loss -f cluster.yaml --state-dir /tmp/tc --center dc3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "-" && from == "-" {
				return fmt.Errorf("-f - and --from - both read stdin: give one of them a file")
			}
			c, _, err := g.readInventory(file)
			if err != nil {
				return err
			}
			var data []byte
			if from == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(from)
			}
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			files, _, err := state.DecodeBlob(string(data))
			if err != nil {
				return fmt.Errorf("--from %s: not a tricenter_cluster state attribute: %w", from, err)
			}
			// A state written with pki_dir holds the PKI's fingerprints:
			// the files themselves are read back from that directory.
			files, pkiDir, err := state.InternalizePKI(files)
			if err != nil {
				return fmt.Errorf("--from %s: %w", from, err)
			}
			st, err := state.Open(stateDir, c.Metadata.Name)
			if err != nil {
				return err
			}
			if err := state.Restore(st.Path, files); err != nil {
				return err
			}
			if pkiDir != "" {
				fmt.Fprintf(g.stdout, "PKI of %s read from pki_dir %s (every file matched the state's fingerprints)\n", c.Metadata.Name, pkiDir)
			}
			fmt.Fprintf(g.stdout, "Engine state of %s (%d files) written to %s\n", c.Metadata.Name, len(files), st.Path)
			return nil
		},
	}
	addInventoryFlag(restore, &file)
	restore.Flags().StringVar(&stateDir, "state-dir", state.DefaultDir(), "state directory; env "+state.EnvDir)
	restore.Flags().StringVar(&from, "from", "", "file holding the state attribute's value, - for stdin")
	_ = restore.MarkFlagRequired("from")
	cmd.AddCommand(restore)
	return cmd
}
