package installer

import (
	"context"
	"errors"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// EtcdStatusTimeout bounds EtcdStatus's questions to the members.
const EtcdStatusTimeout = 30 * time.Second

// EtcdStatus is the etcd cluster as observed: every planned member's
// health, leader, raft position, DB size and server certificate, the
// members per center against the plan, etcd's own peer round trips, and
// the state's certificates with their expiry.
type EtcdStatus struct {
	Health *etcd.ClusterHealth `json:"health"`
	// PlannedPerCenter is the placement's voting members per center.
	PlannedPerCenter map[string]int `json:"plannedPerCenter"`
	PeerRTTs         []etcd.PeerRTT `json:"peerRTTs"`
	Certificates     []pki.Expiry   `json:"certificates"`
	Healthy          bool           `json:"healthy"`
}

// EtcdStatus asks every planned etcd member (through the jump hosts when
// needed) for its state. It needs the PKI an apply created (ErrNoPKI).
func (e *Engine) EtcdStatus(ctx context.Context) (*EtcdStatus, error) {
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	cli.ReportCertificates()
	ctx, cancel := context.WithTimeout(ctx, EtcdStatusTimeout)
	defer cancel()
	members := e.Placement().Etcd.Members
	h := cli.Health(ctx, members)
	st := &EtcdStatus{Health: h, PlannedPerCenter: e.Placement().Etcd.PerCenter, Healthy: h.OK()}
	st.PeerRTTs = cli.PeerRTTs(ctx, h.Members)
	if st.Certificates, err = e.cfg.Store.PKI().Expiries(); err != nil {
		return nil, err
	}
	return st, nil
}

// EtcdSnapshot saves a snapshot from a healthy member into dir (empty:
// the state directory's snapshots/), with its sha256 beside it.
func (e *Engine) EtcdSnapshot(ctx context.Context, dir string) (*etcd.SnapshotResult, error) {
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		d, ok := e.cfg.Store.(*state.Dir)
		if !ok {
			return nil, errors.New("no directory for the snapshot: this engine's store is no state directory, name one (--to)")
		}
		dir = d.Snapshots()
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return cli.Snapshot(ctx, e.Placement().Etcd.Members, e.cfg.Cluster.Metadata.Name, dir)
}
