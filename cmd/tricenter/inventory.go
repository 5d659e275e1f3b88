package main

import (
	"fmt"
	"io"

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
