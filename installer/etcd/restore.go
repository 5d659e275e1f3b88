package etcd

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
)

// PhaseRestore rebuilds every planned member's data directory from a
// snapshot (a restore after quorum loss only).
const PhaseRestore = "etcd/restore"

// RestoreSource is the snapshot a restore rebuilds etcd from: opened
// (decrypted and checked against its record) into a file on this
// machine.
type RestoreSource struct {
	// DB is the opened snapshot file.
	DB string
	// ID names the snapshot (logs, the new cluster's token).
	ID string
}

// RestoreBump is how far a restore moves the revision past the snapshot's
// (etcdutl --bump-revision, with --mark-compacted): every watch a client
// held on the lost cluster ends as compacted and the client lists again,
// instead of missing what changed after the snapshot or seeing revisions
// run backwards (the Kubernetes API's informers depend on that).
const RestoreBump = 1_000_000_000

// ErrQuorumAnswers is returned by a restore while a quorum of members
// answers: a restore is not a way to repair a healthy cluster.
var ErrQuorumAnswers = errors.New("etcd still has a quorum")

// QuorumAnswers asks every endpoint, in parallel, for a linearizable read
// through it alone (Status); the first that serves one proves a quorum
// answers ("" when none does).
func (c *Client) QuorumAnswers(ctx context.Context, endpoints []string) string {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		got string
	)
	for _, ep := range endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st := c.Status(ctx, ep); st.Healthy && !st.IsLearner {
				mu.Lock()
				if got == "" || ep < got {
					got = ep
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// checkNoQuorum refuses a restore while any member, planned or recorded
// by the last apply, serves a linearizable read.
func (r *run) checkNoQuorum(ctx context.Context) error {
	return QuorumRefusal(r.cli.QuorumAnswers(ctx, r.endpoints()))
}

// QuorumRefusal is a restore's refusal when endpoint ep served a
// linearizable read (nil when ep is "": no quorum answered).
func QuorumRefusal(ep string) error {
	if ep == "" {
		return nil
	}
	return fmt.Errorf("%w: %s served a linearizable read: a restore replaces the data of a cluster that lost its quorum, "+
		"and this one has not (tricenter apply converges it; if an earlier restore got this far, apply finishes it); nothing was changed",
		ErrQuorumAnswers, ep)
}

// restorePhase is etcd/restore: on every planned member at once, the
// running etcd is stopped, its data moved aside, and a data directory
// restored from the snapshot for the new membership (new member IDs, a
// new cluster token) put in its place. etcd/start then starts them
// together, as a bootstrap.
type restorePhase struct {
	r *run
	phase.HostPhase
}

func (p *restorePhase) ShouldRun() bool { return p.r.o.Restore != nil && p.HostPhase.ShouldRun() }

func (r *run) restorePhase() *restorePhase {
	p := &restorePhase{r: r}
	p.HostPhase = phase.HostPhase{ID: PhaseRestore, Name: "etcd restore from a snapshot", Select: r.selectHosts(false), Apply: r.restoreHost}
	return p
}

var snapshotIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (s *RestoreSource) check() error {
	if s.DB == "" || !snapshotIDRE.MatchString(s.ID) {
		return fmt.Errorf("restore source: an opened snapshot file and its ID (letters, digits, '.', '_', '-') are needed, got %q", s.ID)
	}
	return nil
}

// restoreDB is where the opened snapshot is uploaded on a member, for
// the time of its restore.
const restoreDB = "/var/lib/etcd-restore.db"

// restoreToken is the restored cluster's token: a member of the lost
// cluster that comes back cannot join it by accident.
func (r *run) restoreToken() string { return r.set.Token() + "-restore-" + r.o.Restore.ID }

func (r *run) restoreHost(ctx context.Context, h *phase.Host) error {
	m, ok := r.memberOf(h)
	if !ok {
		return nil
	}
	src := r.o.Restore
	var initial []string
	for _, p := range r.plan {
		initial = append(initial, p.Name+"="+PeerURL(p.Address))
	}
	aside := DataDir + ".before-restore-" + src.ID
	restoring := DataDir + ".restoring"
	cmd := strings.Join([]string{
		"set -e",
		"systemctl stop " + Unit,
		"rm -rf " + restoring,
		BinDir + "/etcdutl snapshot restore " + restoreDB +
			" --name " + shell.Quote(m.Name) +
			" --initial-cluster " + shell.Quote(strings.Join(initial, ",")) +
			" --initial-cluster-token " + shell.Quote(r.restoreToken()) +
			" --initial-advertise-peer-urls " + shell.Quote(PeerURL(m.Address)) +
			fmt.Sprintf(" --bump-revision %d --mark-compacted", RestoreBump) +
			" --data-dir " + restoring + " >/dev/null",
		// The lost cluster's data stays on the server, out of the way.
		"if [ -e " + DataDir + " ]; then rm -rf " + aside + "; mv " + DataDir + " " + aside + "; fi",
		"mv " + restoring + " " + DataDir,
		"chown -R " + DataOwner + " " + DataDir,
		"chmod 0700 " + DataDir,
		"rm -f " + restoreDB + " " + BootstrapFile,
	}, "\n")
	return h.Mutate(ctx, fmt.Sprintf("restore etcd from snapshot %s as member %s of %d (the data there now moved to %s)", src.ID, m.Name, len(r.plan), aside),
		func(ctx context.Context) error {
			// The opened snapshot holds every Secret: root only, no digest
			// on any command line or record, removed after the restore.
			if _, err := h.UploadFile(ctx, src.DB, restoreDB, phase.FileOptions{Mode: 0o600, Secret: true}); err != nil {
				return fmt.Errorf("uploading snapshot %s to %s: %w", src.ID, h.Name, err)
			}
			if _, err := h.Sudo(ctx, cmd); err != nil {
				_, _ = h.Sudo(context.WithoutCancel(ctx), "rm -f "+restoreDB)
				return fmt.Errorf("restoring etcd from snapshot %s on %s: %w", src.ID, h.Name, err)
			}
			enabled := r.fact(h.Name).Enabled
			r.mu.Lock()
			r.res.Restored = append(r.res.Restored, h.Name)
			r.facts[h.Name] = &Facts{HasData: true, HasDirs: true, Enabled: enabled}
			r.mu.Unlock()
			return nil
		})
}
