package etcd

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// leaderFixture is the membership inventory's five members in plan order:
// dc1-s01, dc1-s02 (production), dc2-s01, dc2-s02 (local-dr), dc3-s01
// (remote-dr).
func leaderFixture(t *testing.T) (*inventory.Cluster, []inventory.Member) {
	t.Helper()
	c, _, err := inventory.Load("testdata/membership-inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, p.Etcd.Members
}

// healthWith is a health report of plan in which leader leads (member IDs
// are plan index + 1); the members named in unhealthy did not answer,
// those in learners answered as learners.
func healthWith(plan []inventory.Member, leader string, unhealthy, learners []string) *ClusterHealth {
	h := &ClusterHealth{PerCenter: map[string]int{}}
	for i, m := range plan {
		if m.Name == leader {
			h.Leader = uint64(i + 1)
		}
	}
	for i, m := range plan {
		id := uint64(i + 1)
		h.Members = append(h.Members, Member{ID: id, Name: m.Name, IsLearner: slices.Contains(learners, m.Name)})
		if slices.Contains(unhealthy, m.Name) {
			h.Endpoints = append(h.Endpoints, EndpointStatus{Endpoint: ClientURL(m.Address), Error: "connection refused"})
			continue
		}
		h.Endpoints = append(h.Endpoints, EndpointStatus{Endpoint: ClientURL(m.Address), Healthy: true, MemberID: id,
			Leader: h.Leader, IsLearner: slices.Contains(learners, m.Name)})
	}
	return h
}

func TestLeaderHome(t *testing.T) {
	c, plan := leaderFixture(t)
	disagree := healthWith(plan, "dc2-s01", nil, nil)
	disagree.Endpoints[4].Leader = 5
	for _, tc := range []struct {
		name               string
		h                  *ClusterHealth
		home               bool
		at, target, reason string
		moving             string
	}{
		{name: "leader in production", h: healthWith(plan, "dc1-s02", nil, nil), home: true, at: "dc1-s02 (dc1)"},
		{name: "leader in local-dr", h: healthWith(plan, "dc2-s02", nil, nil), at: "dc2-s02 (dc2)", target: "dc1-s01",
			moving: "dc2-s02 (dc2) → dc1-s01 (dc1)"},
		{name: "leader in remote-dr", h: healthWith(plan, "dc3-s01", nil, nil), at: "dc3-s01 (dc3)", target: "dc1-s01",
			moving: "dc3-s01 (dc3) → dc1-s01 (dc1)"},
		{name: "first production member down: the next in plan order", h: healthWith(plan, "dc3-s01", []string{"dc1-s01"}, nil),
			at: "dc3-s01 (dc3)", target: "dc1-s02"},
		{name: "a production learner cannot lead", h: healthWith(plan, "dc2-s01", []string{"dc1-s02"}, []string{"dc1-s01"}),
			at: "dc2-s01 (dc2)", reason: "the production center has no healthy voting member"},
		{name: "production down", h: healthWith(plan, "dc2-s01", []string{"dc1-s01", "dc1-s02"}, nil),
			at: "dc2-s01 (dc2)", reason: "the production center has no healthy voting member"},
		{name: "no leader", h: healthWith(plan, "", nil, nil), at: "unknown", reason: "no leader known"},
		{name: "members disagree", h: disagree, at: "dc2-s01 (dc2)", reason: "the members disagree on the leader"},
		{name: "leader does not answer", h: healthWith(plan, "dc3-s01", []string{"dc3-s01"}, nil), at: "dc3-s01",
			reason: "the leader is not a planned member that answers"},
		{name: "members not asked", h: &ClusterHealth{Leader: 3}, at: "unknown", reason: "the members could not be asked"},
		{name: "no health", at: "unknown", reason: "the members could not be asked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := LeaderHome(c, plan, tc.h)
			if p.Home != tc.home || p.At() != tc.at || p.Target != tc.target {
				t.Errorf("home %v, leader %s, target %q; want home %v, leader %s, target %q", p.Home, p.At(), p.Target, tc.home, tc.at, tc.target)
			}
			if p.Move() != (tc.target != "") {
				t.Errorf("Move() = %v with target %q", p.Move(), p.Target)
			}
			if (tc.reason == "" && p.Reason != "") || !strings.HasPrefix(p.Reason, tc.reason) {
				t.Errorf("reason %q, want %q", p.Reason, tc.reason)
			}
			if tc.moving != "" && p.Moving() != tc.moving {
				t.Errorf("Moving() = %q, want %q", p.Moving(), tc.moving)
			}
			if p.Move() && (p.TargetCenter != "dc1" || p.targetID == 0 || p.leaderURL == "") {
				t.Errorf("target center %q, id %x, leader URL %q", p.TargetCenter, p.targetID, p.leaderURL)
			}
		})
	}
}

// fakeLeaderCluster is a fakeCluster over the five-member plan.
func fakeLeaderCluster(plan []inventory.Member, leader string) *fakeCluster {
	f := &fakeCluster{plan: plan, kv: map[string]string{}, down: map[string]bool{}, writesVia: map[string]int{}}
	for i, m := range plan {
		if m.Name == leader {
			f.leader = uint64(i + 1)
		}
	}
	return f
}

func TestMoveLeaderHome(t *testing.T) {
	c, plan := leaderFixture(t)
	ctx := context.Background()

	// From local-dr: through the leader to the first production member.
	f := fakeLeaderCluster(plan, "dc2-s02")
	mv, nh, err := MoveLeaderHome(ctx, f, c, plan, f.Health(ctx, plan), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mv.Moved != "dc2-s02 (dc2) → dc1-s01 (dc1)" || !slices.Equal(f.moves, []string{"dc2-s02→dc1-s01"}) {
		t.Errorf("moved %q, calls %v", mv.Moved, f.moves)
	}
	if !mv.After.Home || mv.After.Leader != "dc1-s01" || nh.Leader != 1 {
		t.Errorf("after: %+v, health leader %x", mv.After, nh.Leader)
	}

	// Home already: no call, the same health back.
	f = fakeLeaderCluster(plan, "dc1-s02")
	h := f.Health(ctx, plan)
	mv, nh, err = MoveLeaderHome(ctx, f, c, plan, h, time.Second, nil)
	if err != nil || mv.Moved != "" || len(f.moves) != 0 || nh != h || !mv.After.Home {
		t.Errorf("leader home: moved %q, calls %v, err %v", mv.Moved, f.moves, err)
	}

	// Production down: the leader stays, with the reason.
	f = fakeLeaderCluster(plan, "dc3-s01")
	f.down["dc1-s01"], f.down["dc1-s02"] = true, true
	mv, _, err = MoveLeaderHome(ctx, f, c, plan, f.Health(ctx, plan), time.Second, nil)
	if err != nil || mv.Moved != "" || len(f.moves) != 0 || mv.After.Reason == "" {
		t.Errorf("production down: moved %q, calls %v, reason %q, err %v", mv.Moved, f.moves, mv.After.Reason, err)
	}

	// A refused move is an error and reports no move.
	f = fakeLeaderCluster(plan, "dc3-s01")
	f.moveErr = errors.New("fake: refused")
	mv, _, err = MoveLeaderHome(ctx, f, c, plan, f.Health(ctx, plan), time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "dc3-s01 (dc3) to dc1-s01") || mv.Moved != "" || mv.After.Leader != "dc3-s01" {
		t.Errorf("refused move: moved %q, after %+v, err %v", mv.Moved, mv.After, err)
	}
}

// A drill of production ends with the leader back there; a drill of a
// DR center leaves it where it was (at home).
func TestDrillBringsTheLeaderHome(t *testing.T) {
	c, p := drillFixture(t)
	for _, tc := range []struct {
		center, from, moves string
	}{
		{center: "dc1", from: "dc2-s01 (dc2)", moves: "dc2-s01→dc1-s01"},
		{center: "dc2"},
		{center: "dc3"},
	} {
		t.Run(tc.center, func(t *testing.T) {
			cl := newFakeCluster(p)
			o := drillOpts(c, p, &fakePower{cl: cl})
			o.Center = tc.center
			rep, err := drill(context.Background(), o, cl)
			if err != nil {
				t.Fatalf("drill: %v", err)
			}
			if rep.LeaderBefore != "dc1-s01" || rep.LeaderHome == nil || !rep.LeaderHome.Home || rep.LeaderHome.Leader != "dc1-s01" {
				t.Fatalf("leader before %s, after the restore %+v", rep.LeaderBefore, rep.LeaderHome)
			}
			if rep.LeaderMovedFrom != tc.from || strings.Join(cl.moves, ",") != tc.moves || (tc.from != "") != (rep.LeaderMoveTook > 0) {
				t.Errorf("moved from %q (took %v), calls %v; want from %q, calls %q", rep.LeaderMovedFrom, rep.LeaderMoveTook, cl.moves, tc.from, tc.moves)
			}
		})
	}
	// A move that fails fails the drill's restore, and says so.
	cl := newFakeCluster(p)
	cl.moveErr = errors.New("fake: refused")
	rep, err := drill(context.Background(), drillOpts(c, p, &fakePower{cl: cl}), cl)
	if err == nil || !strings.Contains(err.Error(), "did not come back into production") || !strings.Contains(rep.LeaderMoveError, "fake: refused") ||
		!rep.Healthy || rep.LeaderMovedFrom != "" {
		t.Errorf("refused move: err %v, report healthy %v, moved from %q, error %q", err, rep.Healthy, rep.LeaderMovedFrom, rep.LeaderMoveError)
	}
}
