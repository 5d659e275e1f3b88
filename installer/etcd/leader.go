package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// etcd has no leader priority: after a failover, a drill or a restart the
// leader may stay in a DR center, and every write from production then
// pays the round trip to it. LeaderHome says whether leadership belongs
// elsewhere; MoveLeaderHome moves it. Apply's health gate, the drill's
// restore and status all judge by LeaderHome.

// LeaderPlacement is where etcd's leader is and whether it should move
// into the production center.
type LeaderPlacement struct {
	// Leader is the member leading now ("" when none is known), in
	// LeaderCenter, whose role is LeaderRole.
	Leader       string               `json:"leader,omitempty"`
	LeaderCenter string               `json:"leaderCenter,omitempty"`
	LeaderRole   inventory.CenterRole `json:"leaderRole,omitempty"`
	// Home: the leader is in the production center.
	Home bool `json:"home"`
	// Target is the healthy production member leadership should move to
	// (the first in plan order), in TargetCenter; "" when it stays.
	Target       string `json:"target,omitempty"`
	TargetCenter string `json:"targetCenter,omitempty"`
	// Reason says why a leader outside production stays where it is.
	Reason string `json:"reason,omitempty"`

	leaderURL string
	targetID  uint64
}

// Move reports whether leadership should move to Target.
func (p LeaderPlacement) Move() bool { return p.Target != "" }

// At is "member (center)", or "unknown".
func (p LeaderPlacement) At() string {
	switch {
	case p.Leader == "":
		return "unknown"
	case p.LeaderCenter == "":
		return p.Leader
	}
	return p.Leader + " (" + p.LeaderCenter + ")"
}

// Moving is "leader (center) → target (center)", "" when it stays.
func (p LeaderPlacement) Moving() string {
	if !p.Move() {
		return ""
	}
	return fmt.Sprintf("%s → %s (%s)", p.At(), p.Target, p.TargetCenter)
}

// Note says, for a leader outside production, what it costs and what
// happens next; "" when the leader is home or unknown.
func (p LeaderPlacement) Note() string {
	if p.Home || p.Leader == "" || p.LeaderCenter == "" {
		return ""
	}
	where := fmt.Sprintf("leader in %s (%s)", p.LeaderCenter, orRole(p.LeaderRole))
	if !p.Move() {
		return where + ", and it stays there: " + p.Reason
	}
	cost := "the round trip to " + p.LeaderCenter
	if p.LeaderRole == inventory.RoleRemoteDR {
		cost = "the WAN round trip"
	}
	return where + ": writes from production pay " + cost + "; the next apply moves it home"
}

func orRole(r inventory.CenterRole) string {
	if r == "" {
		return "no role"
	}
	return string(r)
}

// LeaderHome judges the leader of h (Client.Health of plan): it stays when
// it is in the production center; otherwise it should move to the first
// planned production member that is a healthy voting member, when there
// is one. Reason says why it stays away from production.
func LeaderHome(c *inventory.Cluster, plan []inventory.Member, h *ClusterHealth) LeaderPlacement {
	var p LeaderPlacement
	if h == nil || len(h.Endpoints) != len(plan) {
		p.Reason = "the members could not be asked"
		return p
	}
	role := func(center string) inventory.CenterRole {
		if ctr := c.Center(center); ctr != nil {
			return ctr.Role
		}
		return ""
	}
	leaders := map[uint64]bool{}
	target := -1
	for i, m := range plan {
		st := h.Endpoints[i]
		if !st.Healthy {
			continue
		}
		leaders[st.Leader] = true
		if st.MemberID == h.Leader && h.Leader != 0 {
			p.Leader, p.LeaderCenter, p.LeaderRole, p.leaderURL = m.Name, m.Center, role(m.Center), ClientURL(m.Address)
		}
		if target < 0 && !st.IsLearner && st.MemberID != 0 && role(m.Center) == inventory.RoleProduction {
			target = i
		}
	}
	switch {
	case h.Leader == 0:
		p.Reason = "no leader known"
		return p
	case len(leaders) > 1:
		p.Reason = fmt.Sprintf("the members disagree on the leader (%d different leaders)", len(leaders))
		return p
	case p.Leader == "":
		p.Leader = memberName(h, h.Leader)
		p.Reason = "the leader is not a planned member that answers"
		return p
	case p.LeaderRole == inventory.RoleProduction:
		p.Home = true
		return p
	case target < 0:
		p.Reason = "the production center has no healthy voting member"
		return p
	}
	p.Target, p.TargetCenter, p.targetID = plan[target].Name, plan[target].Center, h.Endpoints[target].MemberID
	return p
}

// LeaderMove is what MoveLeaderHome did.
type LeaderMove struct {
	// Moved is "from (center) → to (center)", "" when leadership stayed.
	Moved string `json:"moved,omitempty"`
	// Took is the move and the wait for health after it.
	Took time.Duration `json:"took,omitempty"`
	// After is where the leader is once done.
	After LeaderPlacement `json:"after"`
}

// leaderMover is what moving the leader needs (a *Client; a fake in unit
// tests).
type leaderMover interface {
	MoveLeader(ctx context.Context, leaderEndpoint string, to uint64) error
	WaitHealthy(ctx context.Context, plan []inventory.Member, timeout time.Duration) (*ClusterHealth, error)
}

// MoveLeaderHome moves leadership to LeaderHome's target when there is
// one, through the current leader, and waits up to timeout for the cluster
// to be healthy again. It returns what it did and the health after (h
// when nothing moved). It changes no host: the move is not a configuration
// change, and it is logged, not recorded as one.
func MoveLeaderHome(ctx context.Context, cl leaderMover, c *inventory.Cluster, plan []inventory.Member, h *ClusterHealth,
	timeout time.Duration, log *slog.Logger) (LeaderMove, *ClusterHealth, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := LeaderHome(c, plan, h)
	if !p.Move() {
		if !p.Home && p.Leader != "" {
			log.Info("etcd leader stays outside the production center", "leader", p.Leader, "center", p.LeaderCenter, "reason", p.Reason)
		}
		return LeaderMove{After: p}, h, nil
	}
	log.Info("Moving etcd leadership into the production center", "from", p.Leader, "fromCenter", p.LeaderCenter,
		"to", p.Target, "toCenter", p.TargetCenter)
	start := time.Now()
	mv := LeaderMove{After: p}
	if err := cl.MoveLeader(ctx, p.leaderURL, p.targetID); err != nil {
		mv.Took = time.Since(start)
		return mv, h, fmt.Errorf("moving etcd leadership from %s to %s: %w", p.At(), p.Target, err)
	}
	mv.Moved = p.Moving()
	nh, err := cl.WaitHealthy(ctx, plan, timeout)
	mv.Took = time.Since(start)
	if nh != nil {
		mv.After = LeaderHome(c, plan, nh)
	}
	if err != nil {
		return mv, nh, fmt.Errorf("after moving etcd leadership to %s: %w", p.Target, err)
	}
	log.Info("etcd leader in the production center", "leader", mv.After.Leader, "center", mv.After.LeaderCenter, "took", mv.Took.Round(time.Millisecond))
	return mv, nh, nil
}
