package installer

import (
	"context"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
)

// etcdLeaderHealthTimeout bounds the one health check of etcdLeaderHome.
const etcdLeaderHealthTimeout = 15 * time.Second

// etcdLeaderHome brings etcd's leader into the production center in an
// apply that does not walk etcd again (its plan found it converged), as
// etcd/health does at the end of a walk (etcd.MoveLeaderHome): a leader
// left in a DR center by a failover or a restart makes every write from
// production pay the round trip. Only a healthy cluster's leader is moved
// (gates/etcd judges an unhealthy one). A move is reported in
// Result.Etcd, not as a host's change.
func (r *applyRun) etcdLeaderHome(ctx context.Context) error {
	cli, err := r.e.EtcdClient(r.etcdPKI)
	if err != nil {
		return err
	}
	defer cli.Close()
	plan := r.e.Placement().Etcd.Members
	hctx, cancel := context.WithTimeout(ctx, etcdLeaderHealthTimeout)
	h := cli.Health(hctx, plan)
	cancel()
	if !h.OK() {
		return nil
	}
	mv, nh, err := etcd.MoveLeaderHome(ctx, cli, r.e.cfg.Cluster, plan, h, r.e.cfg.HealthTimeout, r.e.log)
	if mv.Moved == "" && err == nil {
		return nil
	}
	r.res.Etcd = &etcd.Result{Health: nh, LeaderMoved: mv.Moved, Leader: mv.After.Leader, LeaderCenter: mv.After.LeaderCenter}
	return err
}
