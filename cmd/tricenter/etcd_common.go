package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

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
}

func addEngineFlags(cmd *cobra.Command, f *engineFlags) {
	addInventoryFlag(cmd, &f.file)
	cmd.Flags().StringVar(&f.stateDir, "state-dir", state.DefaultDir(), "state directory (PKI, recorded allocations); env "+state.EnvDir)
	cmd.Flags().IntVar(&f.concurrency, "concurrency", phase.DefaultConcurrency, "hosts worked on at once")
	cmd.Flags().IntVar(&f.perCenter, "per-center", 0, "hosts worked on at once per center (0: no limit)")
}

// etcdEnv is what every etcd command loads: the inventory, its state, the
// placement (prior-aware) and the etcd PKI.
type etcdEnv struct {
	g         *globals
	f         *engineFlags
	log       *slog.Logger
	cluster   *inventory.Cluster
	state     *state.Dir
	prior     *inventory.Prior
	placement *inventory.Placement
	pki       *pki.Etcd
}

// errNoPKI: commands other than apply need the PKI apply created.
var errNoPKI = errors.New("no etcd PKI in the state directory: run tricenter apply --only etcd first (or pass --state-dir)")

func loadEtcdEnv(g *globals, f *engineFlags, createPKI bool) (*etcdEnv, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	// Placement keeps the members the last apply recorded; an inventory
	// that cannot survive a center loss fails here, before any host is
	// touched (a degraded placement it accepts was warned about).
	c, plan, prior, err := loadPlan(f.file, f.stateDir, g.stderr)
	if err != nil {
		return nil, err
	}
	st, err := state.Open(f.stateDir, c.Metadata.Name)
	if err != nil {
		return nil, err
	}
	p := plan.Placement()
	e := &etcdEnv{g: g, f: f, log: log, cluster: c, state: st, prior: prior, placement: p}
	store := st.PKI()
	if !createPKI {
		if _, err := os.Stat(filepath.Join(store.Dir, pki.EtcdCA, "ca.crt")); err != nil {
			return nil, errNoPKI
		}
	}
	var members []pki.EtcdMember
	for _, m := range p.Etcd.Members {
		members = append(members, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	if e.pki, err = store.EnsureEtcd(members); err != nil {
		return nil, fmt.Errorf("etcd PKI: %w", err)
	}
	if _, _, err := store.EnsureClusterCAs(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *etcdEnv) manager(dryRun bool, out io.Writer) *phase.Manager {
	rep := progress.Discard
	if out != nil {
		rep = progress.NewPrinter(out, isTTY(out))
	}
	return &phase.Manager{Cluster: e.cluster, Concurrency: e.f.concurrency, PerCenter: e.f.perCenter,
		DryRun: dryRun, Logger: e.log, Progress: rep}
}

func (e *etcdEnv) client() (*etcd.Client, error) {
	tc, err := etcd.TLSConfig(e.pki)
	if err != nil {
		return nil, err
	}
	var eps []string
	for _, m := range e.placement.Etcd.Members {
		eps = append(eps, etcd.ClientURL(m.Address))
	}
	return etcd.NewClient(eps, tc, e.log)
}

func (e *etcdEnv) artifacts() etcd.Artifacts {
	k := e.cluster.Spec.Kubernetes
	return etcd.Artifacts{Dir: k.ArtifactDir, MirrorURL: k.MirrorURL,
		CacheDir: filepath.Join(e.state.Path, "artifacts")}
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
