package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// engineFlags are the flags of commands that build the engine (and so
// may reach the servers): the inventory, the state directory, the fan-out
// and how to connect (sshFlags).
type engineFlags struct {
	file        string
	stateDir    string
	concurrency int
	perCenter   int
	lockTimeout time.Duration
	ssh         sshFlags
	// readOnly: the state directory is read (what the last apply
	// recorded), never created.
	readOnly bool
	// cmd names the run in the locks it takes ("tricenter apply").
	cmd *cobra.Command
}

// addEngineFlags registers the engine's flags on a command that may write
// the state directory (the PKI, recorded allocations, the drill journal).
func addEngineFlags(cmd *cobra.Command, f *engineFlags) {
	f.cmd = cmd
	addInventoryFlag(cmd, &f.file)
	cmd.Flags().StringVar(&f.stateDir, "state-dir", state.DefaultDir(), "state directory (PKI, recorded allocations); env "+state.EnvDir)
	addConnectFlags(cmd, f)
}

// addReadOnlyEngineFlags registers the engine's flags on a command that
// only connects (ssh-check, exec, bgp install and status): its state
// directory is read for the last apply's allocations, never created.
func addReadOnlyEngineFlags(cmd *cobra.Command, f *engineFlags) {
	f.cmd, f.readOnly = cmd, true
	addInventoryFlag(cmd, &f.file)
	addStateDirFlag(cmd, &f.stateDir)
	addConnectFlags(cmd, f)
}

// addConnectFlags registers the fan-out and the SSH flags.
func addConnectFlags(cmd *cobra.Command, f *engineFlags) {
	cmd.Flags().IntVar(&f.concurrency, "concurrency", installer.DefaultConcurrency, "hosts worked on at once")
	cmd.Flags().IntVar(&f.perCenter, "per-center", 0, "hosts worked on at once per center (0: no limit)")
	addSSHFlags(cmd, &f.ssh)
}

// addLockFlag registers --lock-timeout on commands that change the
// cluster (they hold its locks while they run).
func addLockFlag(cmd *cobra.Command, f *engineFlags) {
	cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", installer.DefaultLockTimeout,
		"how long to wait while another run (a CLI elsewhere, Terraform) holds the cluster's lock; 0: do not wait")
}

// holder names this command in the locks it takes.
func (f *engineFlags) holder() installer.Holder {
	name := "run"
	if f.cmd != nil {
		name = strings.TrimPrefix(f.cmd.CommandPath(), f.cmd.Root().Name()+" ")
	}
	return installer.NewHolder("tricenter", name)
}

// lockTimeoutOption maps --lock-timeout onto the engine's (0 there
// means the default; here it means do not wait).
func (f *engineFlags) lockTimeoutOption() time.Duration {
	if f.lockTimeout == 0 {
		return -1
	}
	return f.lockTimeout
}

// openState opens the cluster's state directory (read-only commands do
// not create it).
func (f *engineFlags) openState(cluster string) (*state.Dir, error) {
	if f.readOnly {
		return &state.Dir{Path: filepath.Join(f.stateDir, cluster)}, nil
	}
	return state.Open(f.stateDir, cluster)
}

// loadEngine reads the inventory and its state directory and builds the
// engine every host-reaching command calls.
func loadEngine(g *globals, f *engineFlags) (*installer.Engine, *state.Dir, error) {
	return loadEngineWith(g, f, nil)
}

// loadEngineWith is loadEngine with the command's own Config fields set
// by more (the BGP agent binary).
func loadEngineWith(g *globals, f *engineFlags, more func(*installer.Config)) (*installer.Engine, *state.Dir, error) {
	if f.concurrency < 1 {
		return nil, nil, fmt.Errorf("--concurrency %d: use 1 or more", f.concurrency)
	}
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	c, lines, err := g.readInventory(f.file)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.openState(c.Metadata.Name)
	if err != nil {
		return nil, nil, err
	}
	cfg := installer.Config{Cluster: c, Lines: lines, Source: inventorySource(f.file), Store: st, Logger: log,
		Progress: progress.NewPrinter(g.stderr, isTTY(g.stderr)), Concurrency: f.concurrency, PerCenter: f.perCenter,
		Holder: f.holder(), LockTimeout: f.lockTimeoutOption()}
	f.ssh.config(&cfg)
	if more != nil {
		more(&cfg)
	}
	e, err := installer.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	for _, w := range e.Warnings() {
		warn(g, w)
	}
	return e, st, nil
}

func warn(g *globals, w string) { _, _ = io.WriteString(g.stderr, "Warning: "+w+"\n") }

// errNoPKI: commands other than apply need the PKI apply created.
var errNoPKI = errors.New("no etcd PKI in the state directory: run tricenter apply first (or pass --state-dir)")

// engineError says what to do about the engine's errors the CLI words
// its own way.
func engineError(err error) error {
	if errors.Is(err, installer.ErrNoPKI) {
		return errNoPKI
	}
	return err
}

// isTTY reports whether w is a terminal (a character device that answers
// the terminal ioctl: /dev/null, for one, is not).
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
