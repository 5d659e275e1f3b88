package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/internal/cliflags"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func newValidateCmd(g *globals) *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check an inventory and report every problem with its field path",
		Long: `Validate reads an inventory, applies defaults and checks every rule: address
classes, overlaps, TOR capacity, ASNs, references, and an etcd placement that
survives the loss of any one center. Every problem is reported at once with
its field path and line. Exit status: 0 valid (warnings allowed), 1 invalid.`,
		Example: `  tricenter validate -f examples/inventory/three-center.yaml
  tricenter validate -f cluster.yaml -o json | jq '.errors[].path'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cliflags.CheckOutput(output); err != nil {
				return err
			}
			c, lines, err := g.readInventory(file)
			if err != nil {
				if output == "json" {
					_ = cliflags.WriteJSON(g.stdout, validateJSON{Valid: false, Errors: []inventory.Problem{{Path: inventorySource(file), Message: err.Error()}}, Warnings: []inventory.Problem{}})
					return &exitError{code: 1}
				}
				return &exitError{code: 1, err: err}
			}
			res := c.Validate(lines)
			if output == "json" {
				if err := cliflags.WriteJSON(g.stdout, validateJSON{Valid: res.OK(), Errors: res.Errors, Warnings: res.Warnings}); err != nil {
					return err
				}
			} else {
				for _, p := range res.Errors {
					fmt.Fprintln(g.stdout, "Error:  ", p)
				}
				for _, p := range res.Warnings {
					fmt.Fprintln(g.stdout, "Warning:", p)
				}
				if res.OK() {
					fmt.Fprintf(g.stdout, "%s is valid: %d sites, %d centers, %d racks, %d servers (%d warnings)\n",
						inventorySource(file), len(c.Spec.Sites), len(c.Spec.Centers), len(c.Spec.Racks), len(c.Hosts()), len(res.Warnings))
				} else {
					fmt.Fprintf(g.stdout, "%s is invalid: %d errors, %d warnings\n", inventorySource(file), len(res.Errors), len(res.Warnings))
				}
			}
			if !res.OK() {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	addInventoryFlag(cmd, &file)
	cliflags.AddOutput(cmd, &output)
	return cmd
}

type validateJSON struct {
	Valid    bool                `json:"valid"`
	Errors   []inventory.Problem `json:"errors"`
	Warnings []inventory.Problem `json:"warnings"`
}
