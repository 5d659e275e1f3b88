package etcd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }

// wipeCmd stops etcd for good on a server and removes its membership data
// (binaries and certificates stay until reset).
const wipeCmd = "systemctl disable --now " + Unit + " 2>/dev/null; systemctl reset-failed " + Unit +
	" 2>/dev/null; rm -rf " + DataDir + "/member " + BootstrapFile + "; true"

// membershipPhase applies the membership steps one at a time.
type membershipPhase struct {
	r *run
	m *phase.Manager
}

func (p *membershipPhase) Title() string { return "etcd membership changes" }

func (p *membershipPhase) Prepare(_ context.Context, m *phase.Manager) error { p.m = m; return nil }

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
	for _, s := range r.res.Steps {
		var err error
		switch s.Kind {
		case StepAdd:
			err = p.add(ctx, s)
		default:
			err = p.remove(ctx, s)
		}
		if err != nil {
			return err
		}
		if p.m.DryRun {
			continue
		}
		if err := r.waitStable(ctx); err != nil {
			return fmt.Errorf("after %q: %w", s, err)
		}
	}
	return nil
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
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := h.Sudo(sctx, wipeCmd); err != nil {
		if s.Kind == StepRemoveDead {
			r.log.Warn("Could not stop etcd on the removed (unreachable) server: wipe it before reuse", "host", h.Name, "err", err)
			return nil
		}
		return fmt.Errorf("stopping removed member on %s: %w", h.Name, err)
	}
	r.res.Retired = append(r.res.Retired, h.Name)
	return nil
}

func (p *membershipPhase) add(ctx context.Context, s Step) error {
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
			if _, err := h.Sudo(ctx, wipeCmd); err != nil {
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
	if _, err := h.WriteFile(ctx, BootstrapFile, RenderBootstrap(r.set, initial, true), 0o644); err != nil {
		return err
	}
	if err := h.Systemctl(ctx, "enable", Unit); err != nil {
		return err
	}
	if err := h.Systemctl(ctx, "restart", "--no-block", Unit); err != nil {
		return err
	}
	return h.Mutate(ctx, "promote etcd learner "+s.Member.Name+" once caught up", func(ctx context.Context) error {
		return r.promote(ctx, id, s.Member.Name)
	})
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
	for _, c := range sortedKeys(r.o.Placement.Etcd.PerCenter) {
		if want, got := r.o.Placement.Etcd.PerCenter[c], h.PerCenter[c]; want != got {
			errs = append(errs, fmt.Errorf("center %s has %d healthy voting members, planned %d", c, got, want))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrUnhealthy, err)
	}
	return p.r.leaderHome(ctx, p.m, h)
}

// leaderHome moves leadership out of the remote-dr center when it landed
// there (after a drill or a failure): with the leader in the site holding
// the quorum, commits never wait on the remote center.
func (r *run) leaderHome(ctx context.Context, m *phase.Manager, h *ClusterHealth) error {
	var leader, target *inventory.Member
	for i, pm := range r.plan {
		st := h.Endpoints[i]
		if st.MemberID == h.Leader {
			leader = &r.plan[i]
		}
		if c := r.o.Cluster.Center(pm.Center); target == nil && c != nil && c.Role == inventory.RoleProduction && st.Healthy {
			target = &r.plan[i]
		}
	}
	if leader == nil || target == nil {
		return nil
	}
	if c := r.o.Cluster.Center(leader.Center); c == nil || c.Role != inventory.RoleRemoteDR {
		return nil
	}
	var toID uint64
	for i, pm := range r.plan {
		if pm.Name == target.Name {
			toID = h.Endpoints[i].MemberID
		}
	}
	hs, err := m.Hosts(inventory.Selector{Servers: []string{target.Name}})
	if err != nil {
		return err
	}
	err = hs[0].Mutate(ctx, fmt.Sprintf("move etcd leadership from %s (%s) to %s (%s)", leader.Name, leader.Center, target.Name, target.Center),
		func(ctx context.Context) error { return r.cli.MoveLeader(ctx, ClientURL(leader.Address), toID) })
	if err != nil {
		return err
	}
	nh, err := r.cli.WaitHealthy(ctx, r.plan, r.o.HealthTimeout)
	r.res.Health = nh
	return err
}
