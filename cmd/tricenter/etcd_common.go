package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// engineFlags are the flags of commands that reach hosts.
type engineFlags struct {
	file        string
	stateDir    string
	concurrency int
	perCenter   int
	lockTimeout time.Duration
	// cmd names the run in the locks it takes ("tricenter apply").
	cmd *cobra.Command
}

func addEngineFlags(cmd *cobra.Command, f *engineFlags) {
	f.cmd = cmd
	addInventoryFlag(cmd, &f.file)
	cmd.Flags().StringVar(&f.stateDir, "state-dir", state.DefaultDir(), "state directory (PKI, recorded allocations); env "+state.EnvDir)
	cmd.Flags().IntVar(&f.concurrency, "concurrency", phase.DefaultConcurrency, "hosts worked on at once")
	cmd.Flags().IntVar(&f.perCenter, "per-center", 0, "hosts worked on at once per center (0: no limit)")
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

// loadEngine reads the inventory and its state directory and builds the
// engine every host-reaching command calls.
func loadEngine(g *globals, f *engineFlags) (*installer.Engine, *state.Dir, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	c, lines, err := g.readInventory(f.file)
	if err != nil {
		return nil, nil, err
	}
	st, err := state.Open(f.stateDir, c.Metadata.Name)
	if err != nil {
		return nil, nil, err
	}
	e, err := installer.New(installer.Config{Cluster: c, Lines: lines, Source: inventorySource(f.file), Store: st, Logger: log,
		Progress: progress.NewPrinter(g.stderr, isTTY(g.stderr)), Concurrency: f.concurrency, PerCenter: f.perCenter,
		Holder: f.holder(), LockTimeout: f.lockTimeoutOption()})
	if err != nil {
		return nil, nil, err
	}
	for _, w := range e.Warnings() {
		warn(g, w)
	}
	return e, st, nil
}

func warn(g *globals, w string) { _, _ = io.WriteString(g.stderr, "Warning: "+w+"\n") }

// etcdEnv is what the etcd commands (status, snapshot, drill) use: the
// engine's view of the inventory, its state and the etcd PKI.
type etcdEnv struct {
	g         *globals
	f         *engineFlags
	eng       *installer.Engine
	log       *slog.Logger
	cluster   *inventory.Cluster
	state     *state.Dir
	prior     *inventory.Prior
	placement *inventory.Placement
	pki       *pki.Etcd
}

// errNoPKI: commands other than apply need the PKI apply created.
var errNoPKI = errors.New("no etcd PKI in the state directory: run tricenter apply first (or pass --state-dir)")

func loadEtcdEnv(g *globals, f *engineFlags, createPKI bool) (*etcdEnv, error) {
	e, st, err := loadEngine(g, f)
	if err != nil {
		return nil, err
	}
	return newEtcdEnv(g, f, e, st, createPKI)
}

// newEtcdEnv is loadEtcdEnv for an engine already loaded.
func newEtcdEnv(g *globals, f *engineFlags, e *installer.Engine, st *state.Dir, createPKI bool) (*etcdEnv, error) {
	p, err := e.EtcdPKI(createPKI)
	if errors.Is(err, installer.ErrNoPKI) {
		return nil, errNoPKI
	}
	if err != nil {
		return nil, err
	}
	return &etcdEnv{g: g, f: f, eng: e, log: e.Logger(), cluster: e.Cluster(), state: st, prior: e.Prior(),
		placement: e.Placement(), pki: p}, nil
}

func (e *etcdEnv) manager(dryRun bool, out io.Writer) *phase.Manager {
	m := e.eng.Manager(dryRun)
	m.Progress = progress.Discard
	if out != nil {
		m.Progress = progress.NewPrinter(out, isTTY(out))
	}
	return m
}

func (e *etcdEnv) client() (*etcd.Client, error) { return e.eng.EtcdClient(e.pki) }

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
