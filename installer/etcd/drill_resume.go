package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ResumeOptions configure ResumeDrill.
type ResumeOptions struct {
	Cluster   *inventory.Cluster
	Placement *inventory.Placement
	// Journal is the state directory holding the drill journal.
	Journal *state.Dir
	// PowerFor returns the Power for the journal's method (MethodBMC or
	// MethodSSH): the servers come back the way they went down.
	PowerFor func(method string) (Power, error)
	Client   *Client
	Logger   *slog.Logger
	// RestoreTimeout and HealthTimeout bound powering the servers back on
	// and the wait for health, as in the drill's restore.
	RestoreTimeout time.Duration
	HealthTimeout  time.Duration
	// Abandon, once closed, gives up (the CLI's second Ctrl-C); the
	// journal is then kept.
	Abandon <-chan struct{}
}

// ResumeReport is what ResumeDrill found and did.
type ResumeReport struct {
	// Path is the journal's path; Journal what it held, nil when there was
	// nothing to resume.
	Path    string              `json:"path"`
	Journal *state.DrillJournal `json:"journal"`
	// Method names how the servers were brought back (Power.Describe).
	Method string `json:"method,omitempty"`
	// Pending are the servers the journal did not confirm back on.
	Pending       []string `json:"pending"`
	PoweredBackOn []string `json:"poweredBackOn"`
	StillOff      []string `json:"stillOff,omitempty"`
	// Healthy: the cluster was healthy RestoredHealthy after power-on.
	Healthy          bool          `json:"healthy"`
	RestoredHealthy  time.Duration `json:"restoredHealthy"`
	RestoreError     string        `json:"restoreError,omitempty"`
	RestoreAbandoned bool          `json:"restoreAbandoned,omitempty"`
	// LeaderHome, LeaderMovedFrom, LeaderMoveTook and LeaderMoveError are
	// the DrillReport's: the leader brought back into production.
	LeaderHome      *LeaderPlacement `json:"leaderHome,omitempty"`
	LeaderMovedFrom string           `json:"leaderMovedFrom,omitempty"`
	LeaderMoveTook  time.Duration    `json:"leaderMoveTook,omitempty"`
	LeaderMoveError string           `json:"leaderMoveError,omitempty"`
	// KeysDeleted: the killed drill's writes were deleted.
	KeysDeleted bool   `json:"keysDeleted"`
	KeysError   string `json:"keysError,omitempty"`
	// JournalRemoved: every server is back and the journal is gone.
	JournalRemoved bool `json:"journalRemoved"`
}

// ResumeDrill brings back what a drill left down when it ended before its
// restore (killed, or a restore abandoned): it reads the journal the drill
// wrote to o.Journal, powers on (or starts etcd on, for MethodSSH) every
// server the journal does not confirm back on, retrying for the restore
// deadline, waits for the cluster to be healthy, deletes the drill's keys
// and removes the journal once every server is back. With no journal it
// does nothing and returns a report whose Journal is nil.
func ResumeDrill(ctx context.Context, o ResumeOptions) (*ResumeReport, error) {
	if o.Client == nil {
		return nil, errors.New("drill resume: no etcd client")
	}
	return resume(ctx, o, clientCluster{o.Client})
}

func resume(ctx context.Context, o ResumeOptions, cl drillCluster) (*ResumeReport, error) {
	if o.Journal == nil {
		return nil, errors.New("drill resume: no state directory")
	}
	unlock, err := o.Journal.LockDrill()
	if err != nil {
		return nil, err
	}
	defer unlock()
	rr := &ResumeReport{Path: o.Journal.DrillJournalPath()}
	j, err := o.Journal.DrillJournal()
	if err != nil || j == nil {
		return rr, err
	}
	rr.Journal, rr.Pending = j, j.Pending()
	if o.Cluster.Center(j.Center) == nil {
		return rr, fmt.Errorf("drill journal %s: center %s is not in the inventory: pass the inventory the drill ran with", rr.Path, j.Center)
	}
	var hosts []inventory.Host
	for _, n := range rr.Pending {
		h, ok := o.Cluster.Host(n)
		if !ok {
			return rr, fmt.Errorf("drill journal %s: server %s is not in the inventory: pass the inventory the drill ran with, or bring it back by hand and remove the journal", rr.Path, n)
		}
		hosts = append(hosts, h)
	}
	pw, err := o.PowerFor(j.Method)
	if err != nil {
		return rr, fmt.Errorf("drill journal %s: %w", rr.Path, err)
	}
	do := DrillOptions{Cluster: o.Cluster, Placement: o.Placement, Center: j.Center, Power: pw, Logger: o.Logger,
		RestoreTimeout: o.RestoreTimeout, HealthTimeout: o.HealthTimeout, Abandon: o.Abandon, Method: j.Method}
	do.setDefaults()
	rr.Method = pw.Describe()
	rep := &DrillReport{Center: j.Center, Method: rr.Method}
	for _, h := range hosts {
		rep.Servers = append(rep.Servers, DrillServer{Name: h.Name, EtcdMember: o.Placement.IsEtcdMember(h.Name)})
	}
	do.Logger.Info("Resuming the drill", "journal", rr.Path, "center", j.Center, "method", j.Method, "servers", rr.Pending,
		"pid", j.PID, "host", j.Host, "started", j.Started)
	jr := &journal{dir: o.Journal, log: do.Logger, j: *j}
	_, rerr := restore(ctx, do, cl, hosts, rep, o.Placement.Etcd.Members, jr)
	rr.PoweredBackOn, rr.StillOff = rep.PoweredBackOn, rep.StillOff
	rr.Healthy, rr.RestoredHealthy, rr.RestoreError, rr.RestoreAbandoned = rep.Healthy, rep.RestoredHealthy, rep.RestoreError, rep.RestoreAbandoned
	rr.LeaderHome, rr.LeaderMovedFrom, rr.LeaderMoveTook, rr.LeaderMoveError = rep.LeaderHome, rep.LeaderMovedFrom, rep.LeaderMoveTook, rep.LeaderMoveError
	if j.Keys != "" && !rr.RestoreAbandoned {
		if err := deleteKeys(ctx, cl, j.Keys, do.Logger); err != nil {
			rr.KeysError = err.Error()
		} else {
			rr.KeysDeleted = true
		}
	}
	rr.JournalRemoved = jr.finish(rep.StillOff)
	return rr, rerr
}
