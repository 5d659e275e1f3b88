package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// loadInventory reads and validates an inventory. Warnings go to w; errors
// make it fail with every error listed.
func loadInventory(path string, w io.Writer) (*inventory.Cluster, error) {
	c, lines, err := inventory.Load(path)
	if err != nil {
		return nil, err
	}
	res := c.Validate(lines)
	for _, p := range res.Warnings {
		fmt.Fprintln(w, "Warning:", p)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// loadPlan reads an inventory and what the last apply recorded under
// stateDir (nothing when empty or on a first run), validates it and derives
// the plan: placement and IPAM keep earlier allocations. Warnings go to w.
// The prior it read is returned too (nil on a first run).
func loadPlan(path, stateDir string, w io.Writer) (*inventory.Cluster, *inventory.Plan, *inventory.Prior, error) {
	c, lines, err := inventory.Load(path)
	if err != nil {
		return nil, nil, nil, err
	}
	var prior *inventory.Prior
	if stateDir != "" && c.Metadata.Name != "" {
		d := &state.Dir{Path: filepath.Join(stateDir, c.Metadata.Name)}
		if prior, err = d.Prior(); err != nil {
			return nil, nil, nil, fmt.Errorf("reading the last apply's allocations from %s: %w", d.Path, err)
		}
	}
	p, err := inventory.BuildPlan(c, lines, prior)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, pr := range p.Warnings {
		fmt.Fprintln(w, "Warning:", pr)
	}
	return c, p, prior, nil
}

// addStateDirFlag registers --state-dir: where the last apply recorded
// its allocations (pod CIDRs, etcd members), read but never created here.
func addStateDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "state-dir", state.DefaultDir(), "state directory of the last apply (its pod CIDRs and members are kept); env "+state.EnvDir)
}
