package installer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
)

// RestoreOptions configure Engine.Restore.
type RestoreOptions struct {
	// Snapshot is the ID of the snapshot to restore ("": the newest one
	// whose sealed file matches its record, on the servers left).
	Snapshot string
	// DryRun finds, opens and rehearses the snapshot and plans the etcd
	// restore, changing nothing.
	DryRun bool
	// Power replaces the BMCs for fencing the lost centers (tests).
	Power PowerControl
	// WaitReachable, when positive, first waits this long for the
	// servers to accept SSH (replacement servers just powered on).
	WaitReachable time.Duration
	// LockTimeout is as Options.LockTimeout.
	LockTimeout time.Duration
}

// RestoreReport is what a restore found and did.
type RestoreReport struct {
	DryRun bool `json:"dryRun,omitempty"`
	// Lost are the centers marked lost, LostServers their servers.
	Lost        []string `json:"lost"`
	LostServers []string `json:"lostServers"`
	// Stores is what every server that is left holds.
	Stores []SnapshotStoreStatus `json:"stores"`
	// Snapshot is the snapshot restored, From the server it came from.
	Snapshot *StoredSnapshot `json:"snapshot,omitempty"`
	From     string          `json:"from,omitempty"`
	// Rehearsal is its restore into a throw-away etcd on this machine,
	// before any server was touched.
	Rehearsal *backup.Rehearsal `json:"rehearsal,omitempty"`
	// Members are the etcd members of the restored cluster; New those
	// the last apply did not record as members (replacement servers).
	Members []string `json:"members"`
	New     []string `json:"new,omitempty"`
	// Etcd is the run that restored etcd, the control plane and the BGP
	// agents; Apply the full apply after it (nil in a dry run).
	Etcd  *Result `json:"etcd,omitempty"`
	Apply *Result `json:"apply,omitempty"`
	// Fences are the lost centers' fences (taints on their Nodes).
	Fences []*FenceReport `json:"fences,omitempty"`
	// BytesMoved counts the sealed file fetched plus the opened snapshot
	// uploaded to every member.
	BytesMoved int64 `json:"bytesMoved"`
	// Timings from the start of the restore.
	// Opened: the snapshot chosen, fetched, opened and rehearsed here.
	// ControlPlane: etcd, the BGP agents and the control plane back on
	// every member (the API behind the VIP answers earlier, once etcd
	// has a quorum again and a surviving API server reconnects).
	// Done: the full apply after the fences.
	Opened       time.Duration `json:"opened,omitempty"`
	ControlPlane time.Duration `json:"controlPlane,omitempty"`
	Done         time.Duration `json:"done,omitempty"`
}

// ErrNoSnapshot is returned when no server that is left holds a usable
// snapshot.
var ErrNoSnapshot = errors.New("no snapshot to restore")

// Restore brings a cluster that lost its etcd quorum back from a
// snapshot. The inventory marks the lost centers (Center.Lost): nothing
// connects to their servers and the placement puts etcd on what is
// left, replacement servers included (new names, new addresses).
//
// It refuses while any member serves a linearizable read
// (etcd.ErrQuorumAnswers). It reads what every server left holds
// (surviving members keep the snapshots of the other site), takes the
// newest good snapshot (or o.Snapshot), fetches and opens it with the
// state's snapshot key, and rehearses it in a throw-away etcd on this
// machine before touching any server. Then, under the run lock: every
// planned member's etcd is stopped, its data moved aside and rebuilt
// from the snapshot (etcd/restore), the members start as a new cluster,
// the BGP agents and the control plane follow (the API answers behind
// the VIP); the lost centers' Nodes are fenced (assumed dead: the
// operator declared them lost; servers whose BMC says on are powered
// off), and a full apply converges the rest. Nodes that were left keep
// their installation and reconnect.
func (e *Engine) Restore(ctx context.Context, o RestoreOptions) (*RestoreReport, error) {
	start := time.Now()
	c := e.cfg.Cluster
	rep := &RestoreReport{DryRun: o.DryRun, Lost: c.LostCenters()}
	for _, h := range c.LostHosts() {
		rep.LostServers = append(rep.LostServers, h.Name)
	}
	prior := map[string]bool{}
	if e.prior != nil {
		for _, n := range e.prior.EtcdMembers {
			prior[n] = true
		}
	}
	for _, m := range e.Placement().Etcd.Members {
		rep.Members = append(rep.Members, m.Name)
		if !prior[m.Name] {
			rep.New = append(rep.New, m.Name)
		}
	}
	opts := Options{LockTimeout: o.LockTimeout, WaitReachable: o.WaitReachable}
	if !o.DryRun {
		lock := &Result{}
		lctx, unlock, err := e.lockRun(ctx, opts, lock)
		if err != nil {
			return rep, err
		}
		defer unlock()
		ctx, opts.locked = lctx, true
	}
	if err := e.refuseWithQuorum(ctx); err != nil {
		return rep, err
	}

	src, cleanup, err := e.restoreSource(ctx, o, rep)
	if err != nil {
		return rep, err
	}
	defer cleanup()
	rep.Opened = time.Since(start)
	opts.restore = src

	if o.DryRun {
		opts.Only = []string{string(Etcd)}
		res, err := e.run(ctx, opts, true)
		rep.Etcd = res
		return rep, err
	}
	// etcd from the snapshot, then what serves the API behind the VIP.
	opts.Only = []string{string(Etcd), string(BGP), string(ControlPlane)}
	res, err := e.run(ctx, opts, false)
	rep.Etcd = res
	if res != nil && res.Etcd != nil {
		rep.BytesMoved += rep.Snapshot.PlainBytes * int64(len(res.Etcd.Restored))
	}
	if err != nil {
		return rep, fmt.Errorf("restoring etcd from snapshot %s: %w", src.ID, err)
	}
	rep.ControlPlane = time.Since(start)
	e.log.Info("etcd restored, the control plane back on every member", "snapshot", src.ID, "after", rep.ControlPlane.Round(time.Second))

	// The lost centers' pods move now, not after 300 s.
	for _, center := range rep.Lost {
		f, err := e.Fence(ctx, FenceOptions{Center: center, AssumeDead: true, Yes: true, Power: o.Power})
		if f != nil {
			rep.Fences = append(rep.Fences, f)
		}
		if err != nil {
			return rep, fmt.Errorf("fencing lost center %s: %w", center, err)
		}
	}

	opts.Only, opts.restore = nil, nil
	res, err = e.run(ctx, opts, false)
	rep.Apply = res
	rep.Done = time.Since(start)
	if err != nil {
		return rep, fmt.Errorf("the apply after the restore: %w", err)
	}
	return rep, nil
}

// QuorumLost reports whether no etcd member, planned or recorded by the
// last apply (lost centers' included), serves a linearizable read: the
// condition under which Restore runs.
func (e *Engine) QuorumLost(ctx context.Context) (bool, error) {
	err := e.refuseWithQuorum(ctx)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, etcd.ErrQuorumAnswers):
		return false, nil
	}
	return false, err
}

// refuseWithQuorum asks every member the last apply recorded and every
// planned member, the lost centers' included, for a linearizable read:
// one that serves it proves a quorum.
func (e *Engine) refuseWithQuorum(ctx context.Context) error {
	p, err := e.EtcdPKI(false)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	want := map[string]bool{}
	if e.prior != nil {
		for _, n := range e.prior.EtcdMembers {
			want[n] = true
		}
	}
	for _, m := range e.Placement().Etcd.Members {
		want[m.Name] = true
	}
	var eps []string
	for _, h := range e.cfg.Cluster.AllHosts() {
		if want[h.Name] {
			eps = append(eps, etcd.ClientURL(h.SSH.Address))
		}
	}
	tc, err := etcd.TLSConfig(p)
	if err != nil {
		return err
	}
	cli, err := etcd.NewClient(eps, tc, e.log, etcd.WithDialer(e.Dial))
	if err != nil {
		return err
	}
	defer cli.Close()
	return etcd.QuorumRefusal(cli.QuorumAnswers(ctx, eps))
}

// restoreSource finds the snapshot on the servers left, fetches and
// opens it into a private temporary file and rehearses it; cleanup
// removes the file (it holds every Secret of the cluster).
func (e *Engine) restoreSource(ctx context.Context, o RestoreOptions, rep *RestoreReport) (*etcd.RestoreSource, func(), error) {
	none := func() {}
	key, err := e.snapshotIdentity(false, false)
	if err != nil {
		return nil, none, err
	}
	bins, err := e.Artifacts().ResolveVersion(ctx, e.cfg.Cluster.Spec.Etcd.Version, "etcd", "etcdutl")
	if err != nil {
		return nil, none, fmt.Errorf("the rehearsal's etcd: %w", err)
	}
	m := e.ObserveManager()
	defer m.Close()
	// Every server left that was an etcd member may keep snapshots: the
	// stores of the last placement among them (without a record of the
	// members, every planned member is asked).
	want := map[string]bool{}
	if e.prior != nil {
		for _, n := range e.prior.EtcdMembers {
			want[n] = true
		}
	}
	if len(want) == 0 {
		for _, mb := range e.Placement().Etcd.Members {
			want[mb.Name] = true
		}
	}
	var stores []SnapshotStoreStatus
	for _, h := range e.cfg.Cluster.Hosts() {
		if want[h.Name] {
			stores = append(stores, SnapshotStoreStatus{Center: h.Center.Name, Server: h.Name})
		}
	}
	if stores, err = e.readStores(ctx, m, stores); err != nil {
		return nil, none, err
	}
	rep.Stores = stores
	var rec *StoredSnapshot
	for i := range stores {
		s := &stores[i]
		for j := range s.Snapshots {
			x := &s.Snapshots[j]
			if x.Check != "ok" || (o.Snapshot != "" && x.ID != o.Snapshot) {
				continue
			}
			if rec == nil || x.TakenAt.After(rec.TakenAt) {
				rec, rep.From = x, s.Server
			}
		}
	}
	if rec == nil {
		var seen []string
		for _, s := range stores {
			if s.Error != "" {
				seen = append(seen, s.Server+": not read ("+FirstLine(s.Error)+")")
			} else {
				seen = append(seen, fmt.Sprintf("%s: %d snapshots", s.Server, len(s.Snapshots)))
			}
		}
		what := "a snapshot whose sealed file matches its record"
		if o.Snapshot != "" {
			what = "snapshot " + o.Snapshot + " with a sealed file that matches its record"
		}
		return nil, none, fmt.Errorf("%w: no server left holds %s (%s)", ErrNoSnapshot, what, strings.Join(seen, "; "))
	}
	rep.Snapshot = rec
	dir, err := os.MkdirTemp("", "tricenter-restore-")
	if err != nil {
		return nil, none, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	db := filepath.Join(dir, "snapshot.db")
	f, err := os.OpenFile(db, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		cleanup()
		return nil, none, err
	}
	e.log.Info("Fetching the snapshot", "snapshot", rec.ID, "from", rep.From, "taken", rec.TakenAt, "revision", rec.Revision)
	err = e.openStored(ctx, m, rep.From, *rec, key, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return nil, none, err
	}
	rep.BytesMoved += rec.SealedBytes
	e.log.Info("Rehearsing the restore on this machine", "snapshot", rec.ID)
	r, err := backup.Rehearse(ctx, backup.RehearseOptions{DB: db, Meta: rec.Meta, Etcdutl: bins["etcdutl"], Etcd: bins["etcd"],
		Dir: filepath.Join(dir, "rehearsal"), Log: e.log})
	if err != nil {
		cleanup()
		return nil, none, fmt.Errorf("snapshot %s from %s did not restore in a throw-away etcd: %w (choose another with --snapshot)", rec.ID, rep.From, err)
	}
	rep.Rehearsal = &r
	return &etcd.RestoreSource{DB: db, ID: rec.ID}, cleanup, nil
}

// FirstLine is s up to its first newline.
func FirstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
