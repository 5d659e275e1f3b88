package installer

import (
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcdsnap"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// SnapshotIdentityFile names the snapshot key in the PKI store: the
// private X25519 key every scheduled snapshot is sealed for. It lives
// with the certificate authorities (the state directory, or the
// provider's Sensitive state), never on a server: the stores hold only
// its public half.
const SnapshotIdentityFile = "snapshots/identity.key"

// snapshotIdentity reads the cluster's snapshot key from the state. A
// state without one gets one with create; a dry run (create and dry)
// gets a key it does not save, so a plan shows what apply would write.
// Without create, a missing key is an error saying which state lacks it.
func (e *Engine) snapshotIdentity(create, dry bool) (*ecdh.PrivateKey, error) {
	s := e.cfg.Store.PKI()
	where := s.Files.Where(SnapshotIdentityFile)
	b, err := s.Files.ReadFile(SnapshotIdentityFile)
	switch {
	case err == nil:
		k, err := backup.ParseIdentity(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: restore it from a copy of the state (a new key cannot open the snapshots taken so far)", where, err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading %s: %w", where, err)
	case !create:
		return nil, fmt.Errorf("no snapshot key in the state (%s): the snapshots cannot be opened without the state that scheduled them", where)
	}
	k, err := backup.NewIdentity()
	if err != nil || dry {
		return k, err
	}
	if err := s.Files.WriteFile(SnapshotIdentityFile, []byte(backup.EncodeIdentity(k)+"\n"), pki.FileMode(SnapshotIdentityFile)); err != nil {
		return nil, fmt.Errorf("writing %s: %w", where, err)
	}
	e.log.Info("Created the snapshot key", "where", where)
	return k, nil
}

// snapshotBinary is tricenter-snapshot: beside the BGP agent the engine
// uses (the artifact set), proven by the same manifest.
func (e *Engine) snapshotBinary() (string, error) {
	agent, err := e.agentBinary()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(agent), "tricenter-snapshot")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("tricenter-snapshot not found beside %s: run make artifacts", agent)
	}
	if err := e.checkAgentBinary(p); err != nil {
		return "", err
	}
	return p, nil
}

// snapshotPhases are etcd/snapshots for the run: the schedule on the
// stores the placement rule names, its removal elsewhere.
func (r *applyRun) snapshotPhases() ([]phase.Phase, error) {
	e := r.e
	var members []string
	for _, m := range e.Placement().Etcd.Members {
		members = append(members, m.Name)
	}
	o := etcdsnap.Options{Members: members, Servers: r.o.Servers}
	sched := e.cfg.Cluster.Spec.Etcd.Snapshots
	if sched == nil {
		return etcdsnap.Phases(o)
	}
	stores, err := e.cfg.Cluster.SnapshotStores(e.Placement().Etcd.Members)
	if err != nil {
		return nil, err
	}
	if r.etcdPKI == nil {
		return nil, errors.New("etcd snapshots: the run issued no etcd PKI")
	}
	client, err := e.cfg.Store.PKI().EnsureSnapshotClient()
	if err != nil {
		return nil, err
	}
	id, err := e.snapshotIdentity(true, r.dry)
	if err != nil {
		return nil, err
	}
	bin, err := e.snapshotBinary()
	if err != nil {
		return nil, err
	}
	recipient := backup.EncodeRecipient(id.PublicKey())
	o.Stores, o.Every, o.Binary = stores, sched.EveryDuration(), bin
	o.CA, o.Cert, o.Key = r.etcdPKI.CA.CertPEM, client.CertPEM, client.KeyPEM
	o.Config = func(st inventory.SnapshotStore) ([]byte, error) {
		cfg := backup.Config{
			Cluster: e.cfg.Cluster.Metadata.Name, StoredOn: st.Server.Name, StoredCenter: st.Server.Center,
			Dir: etcdsnap.Dir, Keep: sched.KeepOrDefault(), Recipient: recipient,
			CACert: etcdsnap.CAPath, Cert: etcdsnap.CertPath, Key: etcdsnap.KeyPath,
		}
		for _, src := range st.Sources {
			cfg.Sources = append(cfg.Sources, backup.Source{Name: src.Name, Center: src.Center,
				URL: etcd.ClientURL(src.Address)})
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		return append(b, '\n'), err
	}
	return etcdsnap.Phases(o)
}

// StoredSnapshot is one snapshot a store holds, with the check of its
// sealed file against its record, done now on the store.
type StoredSnapshot struct {
	backup.Meta
	// Check is "ok" or why the sealed file is not the recorded one.
	Check string `json:"check"`
	// Rehearsal is the snapshot's last restore into a throw-away etcd
	// (VerifySnapshots); nil: never restored.
	Rehearsal      *backup.Rehearsal `json:"rehearsal,omitempty"`
	RehearsalError string            `json:"rehearsalError,omitempty"`
}

// SnapshotStoreStatus is one store's snapshots as observed now.
type SnapshotStoreStatus struct {
	Center string `json:"center"`
	Server string `json:"server"`
	// Snapshots are newest first.
	Snapshots []StoredSnapshot `json:"snapshots"`
	// Error says why the store was not read ("" when it was).
	Error string `json:"error,omitempty"`
}

// Rehearsed is the store's newest snapshot whose sealed file matches
// its record and whose last restore rehearsal succeeded (nil: none).
func (s *SnapshotStoreStatus) Rehearsed() *StoredSnapshot {
	for i := range s.Snapshots {
		if x := &s.Snapshots[i]; x.Check == "ok" && x.Rehearsal != nil && x.Rehearsal.OK {
			return x
		}
	}
	return nil
}

// Newest is the store's newest snapshot whose sealed file matches its
// record (nil: none).
func (s *SnapshotStoreStatus) Newest() *StoredSnapshot {
	for i := range s.Snapshots {
		if s.Snapshots[i].Check == "ok" {
			return &s.Snapshots[i]
		}
	}
	return nil
}

// ListSnapshots asks every store of the schedule, over new connections,
// for its snapshots, each sealed file hashed and compared with its
// record. A cluster without spec.etcd.snapshots has no stores.
func (e *Engine) ListSnapshots(ctx context.Context) ([]SnapshotStoreStatus, error) {
	m := e.ObserveManager()
	defer m.Close()
	return e.listSnapshots(ctx, m)
}

func (e *Engine) listSnapshots(ctx context.Context, m *phase.Manager) ([]SnapshotStoreStatus, error) {
	if e.cfg.Cluster.Spec.Etcd.Snapshots == nil {
		return nil, nil
	}
	stores, err := e.cfg.Cluster.SnapshotStores(e.Placement().Etcd.Members)
	if err != nil {
		return nil, err
	}
	out := make([]SnapshotStoreStatus, len(stores))
	for i, st := range stores {
		out[i] = SnapshotStoreStatus{Center: st.Server.Center, Server: st.Server.Name}
	}
	return e.readStores(ctx, m, out)
}

// readStores fills out (one entry per server, Center and Server set)
// with what each server's tricenter-snapshot lists, each sealed file
// hashed and compared with its record.
func (e *Engine) readStores(ctx context.Context, m *phase.Manager, out []SnapshotStoreStatus) ([]SnapshotStoreStatus, error) {
	index := map[string]int{}
	var names []string
	for i, st := range out {
		index[st.Server] = i
		names = append(names, st.Server)
	}
	hosts, err := m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	cmd := etcdsnap.BinaryPath + " list -o json --check --config " + etcdsnap.ConfigPath
	_ = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		o, err := h.Query(ctx, cmd)
		var snaps []StoredSnapshot
		if err == nil {
			if jerr := json.Unmarshal([]byte(o), &snaps); jerr != nil {
				err = fmt.Errorf("reading tricenter-snapshot list: %w", jerr)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		s := &out[index[h.Name]]
		if err != nil {
			s.Error = err.Error()
			return err
		}
		s.Snapshots = snaps
		return nil
	})
	return out, nil
}

// SnapshotCenterStatus is, for one center's store, the newest snapshot
// whose sealed file matches its record, and its age: the recovery point
// the center holds right now.
type SnapshotCenterStatus struct {
	Center string          `json:"center"`
	Server string          `json:"server"`
	Newest *StoredSnapshot `json:"newest,omitempty"`
	// Age is the newest snapshot's age when observed.
	Age time.Duration `json:"age,omitempty"`
	// Count is how many snapshots the store holds.
	Count int `json:"count"`
	// Rehearsed is the newest snapshot of the store whose restore was
	// rehearsed with success (nil: none, the backups are not verified).
	Rehearsed *StoredSnapshot `json:"rehearsed,omitempty"`
	// Restored says it in words: "not verified (…)" until a rehearsal
	// succeeded.
	Restored string `json:"restored"`
	// Error says why the store could not be read.
	Error string `json:"error,omitempty"`
}

// snapshotStatus fills the snapshot section of a status: per center
// the newest good snapshot and its age. Problems: a store not read, a
// sealed file that differs from its record, no snapshot, or a newest one
// older than two intervals.
func (e *Engine) snapshotStatus(ctx context.Context, st *Status, m *phase.Manager) {
	stores, err := e.listSnapshots(ctx, m)
	if err != nil {
		st.Problems = append(st.Problems, "etcd snapshots: not verified ("+err.Error()+")")
		return
	}
	cs, problems := judgeSnapshots(stores, *e.cfg.Cluster.Spec.Etcd.Snapshots, e.cfg.Clock())
	st.Snapshots = cs
	st.Problems = append(st.Problems, problems...)
}

// judgeSnapshots is snapshotStatus's rule over what the stores listed,
// observed at now.
func judgeSnapshots(stores []SnapshotStoreStatus, sched inventory.EtcdSnapshots, now time.Time) (out []SnapshotCenterStatus, problems []string) {
	for _, s := range stores {
		c := SnapshotCenterStatus{Center: s.Center, Server: s.Server, Count: len(s.Snapshots), Error: s.Error,
			Restored: "not verified (no restore rehearsed: tricenter snapshot verify)"}
		if r := s.Rehearsed(); r != nil {
			c.Rehearsed = r
			c.Restored = fmt.Sprintf("rehearsed %v ago (snapshot of %s: revision %d, %d keys)", now.Sub(r.Rehearsal.At).Round(time.Minute),
				r.TakenAt.Format(time.RFC3339), r.Rehearsal.Revision, r.Rehearsal.Keys)
		}
		for _, x := range s.Snapshots {
			if x.Check != "ok" {
				problems = append(problems, fmt.Sprintf("etcd snapshot %s on %s: %s", x.ID, s.Server, x.Check))
			}
			if x.Rehearsal != nil && !x.Rehearsal.OK {
				problems = append(problems, fmt.Sprintf("etcd snapshot %s on %s: its restore rehearsal differs from its record: %s", x.ID, s.Server, x.Rehearsal.Detail))
			}
		}
		switch {
		case s.Error != "":
			problems = append(problems, fmt.Sprintf("etcd snapshots in %s (%s): not verified (%s)", s.Center, s.Server, s.Error))
		case s.Newest() == nil:
			problems = append(problems, fmt.Sprintf("etcd snapshots in %s (%s): none", s.Center, s.Server))
		default:
			c.Newest = s.Newest()
			c.Age = max(now.Sub(c.Newest.TakenAt), 0)
			if limit := 2 * sched.EveryDuration(); c.Age > limit {
				problems = append(problems, fmt.Sprintf("etcd snapshots in %s (%s): the newest is %v old, more than two intervals (every %s): look at journalctl -u %s there",
					s.Center, s.Server, c.Age.Round(time.Second), sched.Every, etcdsnap.ServiceName))
			}
		}
		out = append(out, c)
	}
	return out, problems
}

// pickSnapshot is the record of snapshot id on server among the listed
// stores (their sealed files checked when listed); "" for id: the newest
// good one there.
func pickSnapshot(stores []SnapshotStoreStatus, server, id string) (StoredSnapshot, error) {
	for _, s := range stores {
		if s.Server != server {
			continue
		}
		if s.Error != "" {
			return StoredSnapshot{}, fmt.Errorf("listing the snapshots on %s: %s", server, s.Error)
		}
		if id == "" {
			if n := s.Newest(); n != nil {
				return *n, nil
			}
			return StoredSnapshot{}, fmt.Errorf("%s holds no snapshot whose sealed file matches its record", server)
		}
		for _, x := range s.Snapshots {
			if x.ID == id {
				if x.Check != "ok" {
					return x, fmt.Errorf("snapshot %s on %s: %s", id, server, x.Check)
				}
				return x, nil
			}
		}
		return StoredSnapshot{}, fmt.Errorf("%s holds no snapshot %s (tricenter snapshot list shows what it holds)", server, id)
	}
	return StoredSnapshot{}, fmt.Errorf("%s keeps no snapshots: the stores are the members inventory.SnapshotStores names (tricenter snapshot list)", server)
}

// OpenSnapshot fetches the sealed file of snapshot id ("": the newest
// good one) from the store server, over a new connection, and opens it
// into dst with the state's snapshot key, checking it is the recorded
// file (recipient, size, sha256). dst may hold part of the data when it
// fails: give it a temporary file and discard that on error.
func (e *Engine) OpenSnapshot(ctx context.Context, server, id string, dst io.Writer) (StoredSnapshot, error) {
	key, err := e.snapshotIdentity(false, false)
	if err != nil {
		return StoredSnapshot{}, err
	}
	m := e.ObserveManager()
	defer m.Close()
	stores, err := e.listSnapshots(ctx, m)
	if err != nil {
		return StoredSnapshot{}, err
	}
	rec, err := pickSnapshot(stores, server, id)
	if err != nil {
		return rec, err
	}
	return rec, e.openStored(ctx, m, server, rec, key, dst)
}

// openStored streams the sealed file of rec from server and opens it into
// dst with key (see OpenSnapshot).
func (e *Engine) openStored(ctx context.Context, m *phase.Manager, server string, rec StoredSnapshot, key *ecdh.PrivateKey, dst io.Writer) error {
	hosts, err := m.Hosts(inventory.Selector{Servers: []string{server}})
	if err != nil {
		return err
	}
	cl, err := hosts[0].Client(ctx)
	if err != nil {
		return fmt.Errorf("fetching snapshot %s from %s: %w", rec.ID, server, err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var stderr strings.Builder
		err := cl.Run(ctx, cl.AsRoot("cat "+shell.Quote(backup.Dir{Path: etcdsnap.Dir}.SealedPath(rec.ID))), nil, pw, &stderr)
		if err != nil {
			err = fmt.Errorf("reading the sealed file on %s: %w %s", server, err, strings.TrimSpace(stderr.String()))
		}
		_ = pw.CloseWithError(err)
		done <- err
	}()
	_, err = backup.OpenRecorded(dst, pr, rec.Meta, key)
	_ = pr.CloseWithError(errors.New("stopped reading"))
	if ferr := <-done; ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("snapshot %s from %s: %w", rec.ID, server, err)
	}
	return nil
}

// VerifyOptions choose what VerifySnapshots rehearses.
type VerifyOptions struct {
	// Servers limits it to these stores (empty: every store).
	Servers []string
	// ID rehearses this snapshot instead of each store's newest (with
	// one server in Servers).
	ID string
}

// SnapshotVerification is the rehearsal of one store's snapshot.
type SnapshotVerification struct {
	Center   string            `json:"center"`
	Server   string            `json:"server"`
	Snapshot *StoredSnapshot   `json:"snapshot,omitempty"`
	Result   *backup.Rehearsal `json:"rehearsal,omitempty"`
	// Error says why the snapshot could not be rehearsed.
	Error string `json:"error,omitempty"`
}

// OK reports a rehearsal that restored and matched the record.
func (v *SnapshotVerification) OK() bool { return v.Error == "" && v.Result != nil && v.Result.OK }

// VerifySnapshots rehearses a restore of each store's newest snapshot
// (or o.ID): fetched and opened here with the state's key, restored with
// etcdutl into a throw-away etcd on this machine's loopback (the
// artifacts' binaries of the cluster's etcd release), and its revision and
// key count compared with the snapshot's record. Each result is recorded
// next to the snapshot on its store, where status and tricenter snapshot
// list read it. One store's failure does not stop the others.
func (e *Engine) VerifySnapshots(ctx context.Context, o VerifyOptions) ([]SnapshotVerification, error) {
	if e.cfg.Cluster.Spec.Etcd.Snapshots == nil {
		return nil, errors.New("spec.etcd.snapshots is not set: the cluster schedules no snapshots to verify")
	}
	if o.ID != "" && len(o.Servers) != 1 {
		return nil, errors.New("a snapshot ID names one store's snapshot: give the store with it")
	}
	bins, err := e.Artifacts().ResolveVersion(ctx, e.cfg.Cluster.Spec.Etcd.Version, "etcd", "etcdutl")
	if err != nil {
		return nil, fmt.Errorf("the throw-away etcd: %w", err)
	}
	key, err := e.snapshotIdentity(false, false)
	if err != nil {
		return nil, err
	}
	// One listing (each sealed file hashed once) serves every store.
	m := e.ObserveManager()
	defer m.Close()
	stores, err := e.listSnapshots(ctx, m)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "tricenter-rehearsal-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	w := e.Manager(false)
	defer w.Close()
	var out []SnapshotVerification
	for _, s := range stores {
		if len(o.Servers) > 0 && !slices.Contains(o.Servers, s.Server) {
			continue
		}
		v := SnapshotVerification{Center: s.Center, Server: s.Server}
		if err := e.rehearse(ctx, m, w, &v, stores, o.ID, key, bins, tmp); err != nil {
			v.Error = err.Error()
			e.log.Warn("Snapshot not verified", "server", s.Server, "error", err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no store among %v: the stores are %s", o.Servers, storeNames(stores))
	}
	return out, nil
}

func storeNames(stores []SnapshotStoreStatus) string {
	var names []string
	for _, s := range stores {
		names = append(names, s.Server)
	}
	return strings.Join(names, ", ")
}

func (e *Engine) rehearse(ctx context.Context, m, w *phase.Manager, v *SnapshotVerification, stores []SnapshotStoreStatus, id string,
	key *ecdh.PrivateKey, bins map[string]string, tmp string) error {
	rec, err := pickSnapshot(stores, v.Server, id)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(tmp, "snapshot-*.db")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = e.openStored(ctx, m, v.Server, rec, key, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	v.Snapshot = &rec
	e.log.Info("Rehearsing a restore", "server", v.Server, "snapshot", rec.ID)
	r, err := backup.Rehearse(ctx, backup.RehearseOptions{DB: f.Name(), Meta: rec.Meta, Etcdutl: bins["etcdutl"], Etcd: bins["etcd"],
		Dir: filepath.Join(tmp, "restore"), Log: e.log})
	if err != nil {
		return err
	}
	v.Result = &r
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	hosts, err := w.Hosts(inventory.Selector{Servers: []string{v.Server}})
	if err != nil {
		return err
	}
	path := filepath.Join(etcdsnap.Dir, rec.ID+backup.RehearsalExt)
	if _, err := hosts[0].WriteFile(ctx, path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording the rehearsal on %s: %w", v.Server, err)
	}
	return nil
}
