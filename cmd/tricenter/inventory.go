package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// envInventory names the inventory of commands run without -f.
const envInventory = "TRICENTER_INVENTORY"

// inventoryFlag annotates the -f flags that name an inventory (the lab's
// -f names a lab description).
const inventoryFlag = "tricenter_inventory"

// stdinName is how messages name an inventory read with -f -.
const stdinName = "stdin"

// resolveInventory settles the -f of cmd before it runs: without -f it is
// TRICENTER_INVENTORY; -f - reads the inventory from stdin now, and the
// command's confirmations then read the terminal (openTTY) instead, or
// fail asking for --yes when there is none.
func (g *globals) resolveInventory(cmd *cobra.Command) error {
	fl := inventoryFlagOf(cmd)
	if fl == nil {
		return nil
	}
	if !fl.Changed {
		if env := g.getenv(envInventory); env != "" {
			if err := fl.Value.Set(env); err != nil {
				return err
			}
		}
	}
	switch fl.Value.String() {
	case "":
		return fmt.Errorf("no inventory: pass -f FILE (- reads it from stdin) or set %s", envInventory)
	case "-":
	default:
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), inventory.MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("reading the inventory from stdin (-f -): %w", err)
	}
	if len(data) > inventory.MaxFileSize {
		return fmt.Errorf("the inventory on stdin is larger than %d MiB", inventory.MaxFileSize>>20)
	}
	g.stdinInventory = data
	// stdin held the inventory: an answer can only come from the terminal.
	var in io.Reader = noTerminal{}
	if g.openTTY != nil {
		if tty, err := g.openTTY(); err == nil {
			in = tty
		}
	}
	cmd.SetIn(in)
	return nil
}

// inventoryFlagOf is the -f flag of a command run that needs an inventory
// (nil for others: no -f, the lab's -f, apply --list-phases).
func inventoryFlagOf(cmd *cobra.Command) *pflag.Flag {
	fl := cmd.Flags().Lookup("file")
	if fl == nil || fl.Annotations[inventoryFlag] == nil {
		return nil
	}
	if lp := cmd.Flags().Lookup("list-phases"); lp != nil && lp.Changed {
		return nil // the workflow needs no inventory
	}
	return fl
}

// openTerminal opens the controlling terminal for confirmations.
func openTerminal() (io.Reader, error) {
	f, err := os.Open("/dev/tty")
	if err != nil {
		return nil, err
	}
	if !isTTY(f) {
		f.Close()
		return nil, errors.New("/dev/tty is not a terminal")
	}
	return f, nil
}

// inventorySource names the inventory of path in messages.
func inventorySource(path string) string {
	if path == "-" {
		return stdinName
	}
	return path
}

// readInventory parses the inventory of -f: a file, or what
// resolveInventory read from stdin for -f -. It applies the defaults but
// does not validate.
func (g *globals) readInventory(path string) (*inventory.Cluster, *inventory.Lines, error) {
	if path != "-" {
		return inventory.Load(path)
	}
	if g.stdinInventory == nil {
		return nil, nil, errors.New("-f -: no inventory was read from stdin")
	}
	c, lines, err := inventory.Parse(g.stdinInventory)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory from %s: %w", stdinName, err)
	}
	return c, lines, nil
}

// loadInventory reads and validates an inventory. Warnings go to stderr;
// errors make it fail with every error listed.
func (g *globals) loadInventory(path string) (*inventory.Cluster, error) {
	c, lines, err := g.readInventory(path)
	if err != nil {
		return nil, err
	}
	res := c.Validate(lines)
	for _, p := range res.Warnings {
		fmt.Fprintln(g.stderr, "Warning:", p)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", inventorySource(path), err)
	}
	return c, nil
}

// loadPlan reads an inventory and what the last apply recorded under
// stateDir (nothing when empty or on a first run), validates it and derives
// the plan: placement and IPAM keep earlier allocations. Warnings go to
// stderr. The prior it read is returned too (nil on a first run).
func (g *globals) loadPlan(path, stateDir string) (*inventory.Cluster, *inventory.Plan, *inventory.Prior, error) {
	c, lines, err := g.readInventory(path)
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
		return nil, nil, nil, fmt.Errorf("%s: %w", inventorySource(path), err)
	}
	for _, pr := range p.Warnings {
		fmt.Fprintln(g.stderr, "Warning:", pr)
	}
	return c, p, prior, nil
}

// addStateDirFlag registers --state-dir: where the last apply recorded
// its allocations (pod CIDRs, etcd members), read but never created here.
func addStateDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "state-dir", state.DefaultDir(), "state directory of the last apply (its pod CIDRs and members are kept); env "+state.EnvDir)
}
