package etcd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// wipeCmd stops etcd for good on a server and removes its membership data
// (binaries and certificates stay until reset).
const wipeCmd = "systemctl disable --now " + Unit + " 2>/dev/null; systemctl reset-failed " + Unit +
	" 2>/dev/null; rm -rf " + DataDir + "/member " + BootstrapFile + "; true"

// planMembership plans the changes from r.members to the plan and, in an
// apply, refuses a plan with a transient risk that was not accepted:
// before any membership change.
func (r *run) planMembership() error {
	mp, err := PlanMembership(r.members, r.healthy, r.plan,
		PlanOptions{Hosts: r.o.Cluster.Hosts(), HealthTimeout: r.o.HealthTimeout})
	r.res.Membership, r.res.Steps, r.res.Risks = &mp.Before, mp.Steps, mp.Risks
	if err != nil {
		return err
	}
	for i, s := range mp.Steps {
		r.log.Info("Membership change planned", "step", s.String(), "number", i+1, "after", s.After.String())
	}
	for _, k := range mp.Risks {
		r.log.Warn("Membership plan has a window where one center's loss loses quorum", "risk", k.String(), "transient", k.Transient)
	}
	if r.dry {
		return nil
	}
	return CheckRisks(mp.Risks, r.o.AcceptTransientRisk)
}

// membershipPhase applies the membership steps one at a time.
type membershipPhase struct {
	r *run
	m *phase.Manager
	// ids are the learners this run added, by peer URL.
	ids map[string]uint64
}

func (p *membershipPhase) Title() string { return "etcd membership changes" }

func (p *membershipPhase) PhaseID() string { return PhaseMembership }

func (p *membershipPhase) Prepare(_ context.Context, m *phase.Manager) error {
	p.m, p.ids = m, map[string]uint64{}
	return nil
}

func (p *membershipPhase) ShouldRun() bool { return len(p.r.res.Steps) > 0 }

// hostAt finds the inventory server with address addr.
func (r *run) hostAt(peerURLs []string) (inventory.Host, bool) {
	for _, h := range r.o.Cluster.Hosts() {
		for _, u := range peerURLs {
			if u == PeerURL(h.SSH.Address) {
				return h, true
			}
		}
	}
	return inventory.Host{}, false
}

func (p *membershipPhase) host(name string) (*phase.Host, error) {
	hs, err := p.m.Hosts(inventory.Selector{Servers: []string{name}})
	if err != nil {
		return nil, err
	}
	return hs[0], nil
}

func (p *membershipPhase) Run(ctx context.Context) error {
	r := p.r
	if !p.m.DryRun {
		// discover refused already; this keeps any other path honest.
		if err := CheckRisks(r.res.Risks, r.o.AcceptTransientRisk); err != nil {
			return err
		}
	}
	for i, s := range r.res.Steps {
		var err error
		switch s.Kind {
		case StepAddLearner:
			err = p.addLearner(ctx, s)
		case StepPromote:
			err = p.promote(ctx, s)
		default:
			err = p.remove(ctx, s)
		}
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s, err)
		}
		if p.m.DryRun {
			continue
		}
		if err := r.waitStable(ctx); err != nil {
			return fmt.Errorf("after step %d (%s): %w", i+1, s, err)
		}
	}
	return nil
}

// hostOps is the host side of membership changes: SSH and systemd
// (sshOps) in Apply, processes the test starts itself in the integration
// test.
type hostOps interface {
	// join writes a joining member's bootstrap configuration and starts it.
	join(ctx context.Context, h *phase.Host, m inventory.Member, initial []InitialMember) error
	// wipe stops etcd on a server for good and removes its membership data.
	wipe(ctx context.Context, h *phase.Host) error
}

type sshOps struct{ r *run }

func (o sshOps) join(ctx context.Context, h *phase.Host, _ inventory.Member, initial []InitialMember) error {
	if _, err := h.WriteFile(ctx, BootstrapFile, RenderBootstrap(o.r.set, initial, true), 0o644); err != nil {
		return err
	}
	if err := h.Systemctl(ctx, "enable", Unit); err != nil {
		return err
	}
	return h.Systemctl(ctx, "restart", "--no-block", Unit)
}

func (sshOps) wipe(ctx context.Context, h *phase.Host) error {
	_, err := h.Sudo(ctx, wipeCmd)
	return err
}

func (r *run) hostOps() hostOps {
	if r.ops != nil {
		return r.ops
	}
	return sshOps{r}
}

func (p *membershipPhase) remove(ctx context.Context, s Step) error {
	r := p.r
	var peers []string
	for _, m := range r.members {
		if m.ID == s.ID {
			peers = m.PeerURLs
		}
	}
	ih, known := r.hostAt(peers)
	gate := r.plan[0].Name
	if known {
		gate = ih.Name
	}
	h, err := p.host(gate)
	if err != nil {
		return err
	}
	if s.Kind == StepRemove && !p.m.DryRun {
		if err := r.checkHealthyBefore(ctx, s.ID); err != nil {
			return fmt.Errorf("removing member %s: %w", s.Name, err)
		}
	}
	err = h.Mutate(ctx, fmt.Sprintf("remove etcd member %s (%x) through the API", orUnnamed(s.Name), s.ID), func(ctx context.Context) error {
		return r.cli.Remove(ctx, s.ID)
	})
	if err != nil {
		return err
	}
	if !known {
		r.log.Warn("Removed member runs on no inventory server: stop it by hand", "member", s.Name, "peers", peers)
		return nil
	}
	// Stop it now that the cluster no longer counts it. A dead server is
	// tried briefly; it stays removed whatever its disk says.
	sctx, cancel := context.WithTimeout(ctx, removeStopTimeout)
	defer cancel()
	if err := r.hostOps().wipe(sctx, h); err != nil {
		if s.Kind == StepRemoveDead {
			r.log.Warn("Could not stop etcd on the removed (unreachable) server: wipe it before reuse", "host", h.Name, "err", err)
			return nil
		}
		return fmt.Errorf("stopping removed member on %s: %w", h.Name, err)
	}
	r.res.Retired = append(r.res.Retired, h.Name)
	return nil
}

// addLearner adds the planned server as a learner (unless it is one
// already), starts it and waits until it has caught up, so that its
// promotion is quick.
func (p *membershipPhase) addLearner(ctx context.Context, s Step) error {
	r := p.r
	h, err := p.host(s.Member.Name)
	if err != nil {
		return err
	}
	id := s.ID
	members := r.members
	if id == 0 {
		if f := r.fact(h.Name); f.HasData || f.Active {
			// Not a member, so its data is stale (an earlier removal that
			// was interrupted): clear it before joining.
			if err := r.hostOps().wipe(ctx, h); err != nil {
				return fmt.Errorf("clearing stale etcd data on %s: %w", h.Name, err)
			}
		}
		err := h.Mutate(ctx, "add etcd member "+s.Member.Name+" as a learner", func(ctx context.Context) error {
			m, all, err := r.cli.AddLearner(ctx, PeerURL(s.Member.Address))
			if err != nil {
				return err
			}
			id, members = m.ID, all
			return nil
		})
		if err != nil {
			return err
		}
	}
	p.ids[PeerURL(s.Member.Address)] = id
	var initial []InitialMember
	for _, m := range members {
		name := m.Name
		if m.ID == id || name == "" {
			name = ""
			for _, u := range m.PeerURLs {
				if u == PeerURL(s.Member.Address) {
					name = s.Member.Name
				}
			}
		}
		if name == "" || len(m.PeerURLs) == 0 {
			continue
		}
		initial = append(initial, InitialMember{name, m.PeerURLs[0]})
	}
	if p.m.DryRun {
		initial = append(initial, InitialMember{s.Member.Name, PeerURL(s.Member.Address)})
	}
	if err := r.hostOps().join(ctx, h, s.Member, initial); err != nil {
		return err
	}
	if p.m.DryRun {
		return nil
	}
	return r.waitCaughtUp(ctx, s.Member)
}

// promote makes the learner a voting member.
func (p *membershipPhase) promote(ctx context.Context, s Step) error {
	r := p.r
	h, err := p.host(s.Member.Name)
	if err != nil {
		return err
	}
	return h.Mutate(ctx, "promote etcd learner "+s.Member.Name, func(ctx context.Context) error {
		id := p.ids[PeerURL(s.Member.Address)]
		if id == 0 {
			id = s.ID
		}
		if id == 0 {
			if err := r.refreshMembers(ctx); err != nil {
				return err
			}
			m, ok := r.apiMember(s.Member)
			if !ok {
				return fmt.Errorf("learner %s is not a member", s.Member.Name)
			}
			id = m.ID
		}
		return r.promote(ctx, id, s.Member.Name)
	})
}

// learnerReady is etcd's own promotion threshold: a learner whose log
// matches 90% of the leader's may be promoted.
const learnerReady = 0.9

// waitCaughtUp waits, up to DefaultPromoteTimeout, until the learner knows
// the leader and has applied 90% of the leader's committed index.
func (r *run) waitCaughtUp(ctx context.Context, m inventory.Member) error {
	deadline := time.Now().Add(DefaultPromoteTimeout)
	for {
		why := r.caughtUp(ctx, m)
		if why == "" {
			r.log.Info("Learner caught up", "member", m.Name)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("learner %s did not catch up within %v: %s", m.Name, DefaultPromoteTimeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// caughtUp says why the learner has not caught up yet ("" when it has).
func (r *run) caughtUp(ctx context.Context, m inventory.Member) string {
	st := r.cli.Status(ctx, ClientURL(m.Address))
	switch {
	case st.Error != "":
		return st.Error
	case st.Leader == 0:
		return "no leader known yet"
	}
	ms, err := r.cli.Members(ctx)
	if err != nil {
		return err.Error()
	}
	for _, x := range ms {
		if x.ID != st.Leader || len(x.ClientURLs) == 0 {
			continue
		}
		ls := r.cli.Status(ctx, x.ClientURLs[0])
		if ls.Error != "" {
			return "leader: " + ls.Error
		}
		if float64(st.Applied) < learnerReady*float64(ls.RaftIndex) {
			return fmt.Sprintf("applied index %d of the leader's %d", st.Applied, ls.RaftIndex)
		}
		return ""
	}
	return fmt.Sprintf("leader %x not in the member list", st.Leader)
}

// promote retries until the learner has caught up with the leader.
func (r *run) promote(ctx context.Context, id uint64, name string) error {
	deadline := time.Now().Add(DefaultPromoteTimeout)
	for {
		err := r.cli.Promote(ctx, id)
		if err == nil {
			r.log.Info("Learner promoted", "member", name)
			return nil
		}
		msg := err.Error()
		if strings.Contains(msg, "not a learner") {
			return nil // promoted by an earlier, interrupted run
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("learner %s did not catch up within %v: %w", name, DefaultPromoteTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// retirePhase stops and wipes etcd on servers the last apply recorded as
// members that are no longer members (e.g. after an interrupted removal).
type retirePhase struct {
	r     *run
	m     *phase.Manager
	hosts []*phase.Host
}

func (p *retirePhase) Title() string { return "etcd retire removed members" }

func (p *retirePhase) PhaseID() string { return PhaseRetire }

func (p *retirePhase) Prepare(_ context.Context, m *phase.Manager) error {
	p.m = m
	var names []string
	for _, h := range p.r.priorHosts() {
		names = append(names, h.Name)
	}
	if len(names) == 0 {
		return nil
	}
	var err error
	p.hosts, err = m.Hosts(inventory.Selector{Servers: names})
	return err
}

func (p *retirePhase) ShouldRun() bool { return len(p.hosts) > 0 }

func (p *retirePhase) Run(ctx context.Context) error {
	r := p.r
	return p.m.Each(ctx, p.hosts, func(ctx context.Context, h *phase.Host) error {
		for _, x := range r.res.Retired {
			if x == h.Name {
				return nil
			}
		}
		if _, member := r.apiMember(inventory.Member{Address: h.SSH.Address}); member && !p.m.DryRun {
			return fmt.Errorf("%s is still an etcd member", h.Name)
		}
		f := r.fact(h.Name)
		if !f.HasData && !f.Active && !f.Enabled {
			return nil
		}
		if _, err := h.Sudo(ctx, wipeCmd); err != nil {
			return fmt.Errorf("retiring etcd on %s: %w", h.Name, err)
		}
		r.mu.Lock()
		r.res.Retired = append(r.res.Retired, h.Name)
		r.mu.Unlock()
		return nil
	})
}

// healthPhase is the gate: every planned member healthy, one leader,
// members per center as planned.
type healthPhase struct {
	r *run
	m *phase.Manager
}

func (p *healthPhase) Title() string { return "etcd health gate" }

func (p *healthPhase) PhaseID() string { return PhaseHealth }

func (p *healthPhase) Prepare(_ context.Context, m *phase.Manager) error { p.m = m; return nil }

func (p *healthPhase) ShouldRun() bool { return !p.m.DryRun }

func (p *healthPhase) Run(ctx context.Context) error {
	r := p.r
	h, err := r.cli.WaitHealthy(ctx, r.plan, r.o.HealthTimeout)
	r.res.Health = h
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range slices.Sorted(maps.Keys(r.o.Placement.Etcd.PerCenter)) {
		if want, got := r.o.Placement.Etcd.PerCenter[c], h.PerCenter[c]; want != got {
			errs = append(errs, fmt.Errorf("center %s has %d healthy voting members, planned %d", c, got, want))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrUnhealthy, err)
	}
	return p.r.leaderHome(ctx, h)
}

// leaderHome moves leadership into the production center when it is
// elsewhere and production has a healthy voting member (LeaderHome): with
// the leader in production, production's writes do not wait on a round
// trip to another center. The move changes no host: it is logged and
// reported in Result (LeaderMoved), not recorded as a host's change, so an
// apply that only brought the leader home is still converged.
func (r *run) leaderHome(ctx context.Context, h *ClusterHealth) error {
	mv, nh, err := MoveLeaderHome(ctx, r.cli, r.o.Cluster, r.plan, h, r.o.HealthTimeout, r.log)
	r.res.Health = nh
	r.res.LeaderMoved = mv.Moved
	r.res.Leader, r.res.LeaderCenter = mv.After.Leader, mv.After.LeaderCenter
	return err
}
