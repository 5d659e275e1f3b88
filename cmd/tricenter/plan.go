package main

import (
	"github.com/spf13/cobra"
)

func newPlanCmd(g *globals) *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show placement, IPAM and the failure-domain report for an inventory",
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
