package etcd

import (
	"errors"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// StepKind is one membership change.
type StepKind string

// Membership changes, applied one at a time.
const (
	// StepRemoveDead removes a member that is down and no longer planned
	// (or is being replaced): removed first, then its replacement added,
	// as etcd's FAQ asks.
	StepRemoveDead StepKind = "remove-dead"
	// StepAdd adds a planned server as a learner, starts it and promotes
	// it once it has caught up.
	StepAdd StepKind = "add"
	// StepRemove removes a healthy member that is no longer planned
	// through the API, then stops it.
	StepRemove StepKind = "remove"
)

// Step is a membership change.
type Step struct {
	Kind StepKind
	// Member is the planned server (StepAdd) or the server the removed
	// member ran on, when known.
	Member inventory.Member
	// ID of the member to remove, or of an added-but-never-started member
	// to continue with.
	ID uint64
	// Name etcd knows the removed member by.
	Name string
}

func (s Step) String() string {
	switch s.Kind {
	case StepAdd:
		if s.ID != 0 {
			return fmt.Sprintf("start and promote learner %s (%s, %s)", s.Member.Name, s.Member.Center, s.Member.Address)
		}
		return fmt.Sprintf("add %s (%s, %s) as a learner, start it, promote it when caught up", s.Member.Name, s.Member.Center, s.Member.Address)
	case StepRemoveDead:
		return fmt.Sprintf("remove unreachable member %s (%x), then stop it", orUnnamed(s.Name), s.ID)
	default:
		return fmt.Sprintf("remove member %s (%x) through the API, then stop it", orUnnamed(s.Name), s.ID)
	}
}

func orUnnamed(n string) string {
	if n == "" {
		return "(never started)"
	}
	return n
}

// ErrQuorumRisk is wrapped when a change would leave fewer healthy voting
// members than a quorum.
var ErrQuorumRisk = errors.New("membership change would lose quorum")

// PlanMembership orders the changes that take the cluster from its
// current members to the planned ones: dead unplanned members are removed
// first, then planned servers are added (as learners) one by one, then the
// remaining unplanned members are removed. healthy tells which member IDs
// answered. Every step is checked to keep a healthy quorum at each point.
func PlanMembership(current []Member, healthy map[uint64]bool, plan []inventory.Member) ([]Step, error) {
	planned := map[string]inventory.Member{}
	for _, p := range plan {
		planned[PeerURL(p.Address)] = p
	}
	have := map[string]Member{}
	var deadExtra, liveExtra []Step
	for _, m := range current {
		ok := false
		for _, u := range m.PeerURLs {
			if _, ok = planned[u]; ok {
				have[u] = m
				break
			}
		}
		if ok {
			continue
		}
		s := Step{Kind: StepRemove, ID: m.ID, Name: m.Name}
		if !healthy[m.ID] {
			s.Kind = StepRemoveDead
			deadExtra = append(deadExtra, s)
		} else {
			liveExtra = append(liveExtra, s)
		}
	}
	var adds []Step
	for _, p := range plan {
		m, ok := have[PeerURL(p.Address)]
		switch {
		case !ok:
			adds = append(adds, Step{Kind: StepAdd, Member: p})
		case !m.Started() || m.IsLearner:
			adds = append(adds, Step{Kind: StepAdd, Member: p, ID: m.ID})
		}
	}
	steps := append(append(deadExtra, adds...), liveExtra...)
	// Simulate: voters and their health after each step.
	voters := map[uint64]bool{}
	for _, m := range current {
		if !m.IsLearner && m.Started() {
			voters[m.ID] = healthy[m.ID]
		}
	}
	next := uint64(1 << 63)
	for _, s := range steps {
		switch s.Kind {
		case StepAdd:
			id := s.ID
			if id == 0 {
				id, next = next, next+1
			}
			voters[id] = true // promoted only once caught up, i.e. healthy
		default:
			delete(voters, s.ID)
		}
		if err := quorumOK(voters); err != nil {
			return steps, fmt.Errorf("%w: after %q: %w", ErrQuorumRisk, s, err)
		}
	}
	return steps, nil
}

// quorumOK checks healthy voters reach a quorum of all voters.
func quorumOK(voters map[uint64]bool) error {
	if len(voters) == 0 {
		return nil
	}
	up := 0
	for _, h := range voters {
		if h {
			up++
		}
	}
	if q := len(voters)/2 + 1; up < q {
		return fmt.Errorf("%d of %d voting members healthy, %d needed", up, len(voters), q)
	}
	return nil
}

// CheckRemove verifies removing id keeps a healthy quorum among the other
// voting members.
func CheckRemove(current []Member, healthy map[uint64]bool, id uint64) error {
	voters := map[uint64]bool{}
	for _, m := range current {
		if !m.IsLearner && m.Started() && m.ID != id {
			voters[m.ID] = healthy[m.ID]
		}
	}
	if err := quorumOK(voters); err != nil {
		return fmt.Errorf("%w: %w", ErrQuorumRisk, err)
	}
	return nil
}
