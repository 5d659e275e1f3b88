package main

import (
	"github.com/spf13/cobra"
)

func newValidateCmd(g *globals) *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check an inventory and report every problem with its field path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			_, err := loadInventory(file, g.stderr)
			return err
		},
	}
	addInventoryFlag(cmd, &file)
	addOutputFlag(cmd, &output)
	return cmd
}
