package etcd

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// StepKind is one membership change.
type StepKind string

// Membership changes, applied one at a time.
const (
	// StepRemoveDead removes a member that is down and no longer planned
	// (or is being replaced): removed first, then its replacement added,
	// as etcd's FAQ asks. Unplanned learners (they vote for nothing but
	// hold etcd's only learner slot) go first too.
	StepRemoveDead StepKind = "remove-dead"
	// StepAddLearner adds a planned server as a learner (no vote: no
	// effect on quorum), starts it and waits until it has caught up.
	StepAddLearner StepKind = "add-learner"
	// StepPromote makes a caught-up learner a voting member.
	StepPromote StepKind = "promote"
	// StepRemove removes a healthy member that is no longer planned
	// through the API, then stops it.
	StepRemove StepKind = "remove"
)

// UnknownCenter is the center of a member that runs on no inventory
// server. It counts as a center of its own: its loss is checked like any
// other center's.
const UnknownCenter = "unknown"

// MaxLearners is how many learners etcd accepts at once. etcd 3.5 (the
// pinned server) refuses a second one with "too many learner members in
// cluster" (a constant there; etcd 3.6 makes it --max-learners), so each
// learner is promoted before the next is added.
const MaxLearners = 1

// removeStopTimeout bounds stopping etcd on a removed member's server.
const removeStopTimeout = 20 * time.Second

// Step is a membership change.
type Step struct {
	Kind StepKind `json:"kind"`
	// Member is the planned server (add-learner, promote) or the server
	// the removed member ran on, when known (otherwise only its Center is
	// set, to UnknownCenter).
	Member inventory.Member `json:"member"`
	// ID of the member to remove, or of an added-but-not-promoted learner
	// to continue with.
	ID uint64 `json:"id,omitempty"`
	// Name etcd knows the removed member by.
	Name string `json:"name,omitempty"`
	// After is the voting membership once the step is done.
	After Voting `json:"after"`
}

func (s Step) String() string {
	switch s.Kind {
	case StepAddLearner:
		if s.ID != 0 {
			return fmt.Sprintf("start learner %s (%s, %s), wait until it has caught up", s.Member.Name, s.Member.Center, s.Member.Address)
		}
		return fmt.Sprintf("add %s (%s, %s) as a learner, start it, wait until it has caught up", s.Member.Name, s.Member.Center, s.Member.Address)
	case StepPromote:
		return fmt.Sprintf("promote learner %s (%s) to a voting member", s.Member.Name, s.Member.Center)
	case StepRemoveDead:
		return fmt.Sprintf("remove unreachable member %s (%x, %s), then stop it", orUnnamed(s.Name), s.ID, s.Member.Center)
	default:
		return fmt.Sprintf("remove member %s (%x, %s) through the API, then stop it", orUnnamed(s.Name), s.ID, s.Member.Center)
	}
}

// doing names the step as an action in progress ("promoting X").
func (s Step) doing() string {
	switch s.Kind {
	case StepAddLearner:
		return "adding learner " + s.Member.Name
	case StepPromote:
		return "promoting " + s.Member.Name
	default:
		n := s.Member.Name
		if n == "" {
			n = orUnnamed(s.Name)
		}
		return "removing " + n
	}
}

func orUnnamed(n string) string {
	if n == "" {
		return "(never started)"
	}
	return n
}

// Voting is the voting membership at one point of a plan: learners do not
// vote, members that are down vote but do not answer.
type Voting struct {
	// PerCenter counts voting members per center (every center of the
	// plan, zero included).
	PerCenter map[string]int `json:"perCenter"`
	Voters    int            `json:"voters"`
	Healthy   int            `json:"healthy"`
	Quorum    int            `json:"quorum"`
	// KeepsQuorum tells per center whether its loss leaves a quorum of
	// healthy voting members.
	KeepsQuorum map[string]bool `json:"centerLossKeepsQuorum"`
	// Left is, per center, how many healthy voting members its loss
	// leaves.
	Left map[string]int `json:"leftAfterCenterLoss"`
}

// Exposed lists the centers whose loss would lose quorum, sorted.
func (v Voting) Exposed() []string {
	var out []string
	for _, c := range slices.Sorted(maps.Keys(v.KeepsQuorum)) {
		if !v.KeepsQuorum[c] {
			out = append(out, c)
		}
	}
	return out
}

func (v Voting) String() string {
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(v.PerCenter)) {
		parts = append(parts, fmt.Sprintf("%s %d", c, v.PerCenter[c]))
	}
	s := fmt.Sprintf("%s: %d voting", strings.Join(parts, ", "), v.Voters)
	if v.Healthy != v.Voters {
		s += fmt.Sprintf(" (%d healthy)", v.Healthy)
	}
	s += fmt.Sprintf(", quorum %d; ", v.Quorum)
	if ex := v.Exposed(); len(ex) > 0 {
		return s + "losing " + strings.Join(ex, " or ") + " loses quorum"
	}
	return s + "any one center can be lost"
}

// Risk is a window of a membership plan during which the loss of one
// center would lose quorum.
type Risk struct {
	Center string `json:"center"`
	// FromStep is the number (from 1) of the step after which the window
	// opens; 0 when it is open before the first step (a member is down).
	FromStep int `json:"fromStep"`
	// UntilStep is the number of the step that closes it; 0 when it lasts
	// after the plan (the planned membership itself, or a planned member
	// that is down, does not survive the loss).
	UntilStep int `json:"untilStep"`
	// Opens and Closes describe those steps.
	Opens  string `json:"opens,omitempty"`
	Closes string `json:"closes,omitempty"`
	// Left healthy voting members of Voters if Center is lost where the
	// window opens, Quorum needed.
	Left   int `json:"left"`
	Voters int `json:"voters"`
	Quorum int `json:"quorum"`
	// Lasts says what the window spans and what bounds it.
	Lasts string `json:"lasts"`
	// AtMost bounds the window's length when it closes within the plan
	// (the sum of the time limits of the steps inside it).
	AtMost time.Duration `json:"atMost,omitempty"`
	// Transient: the plan opens the window and closes it. An apply needs
	// Options.AcceptTransientRisk for such a plan. Windows open before the
	// plan or after it are shown, not the plan's doing.
	Transient bool `json:"transient"`
}

func (k Risk) String() string {
	var when string
	switch {
	case k.FromStep == 0 && k.UntilStep == 0:
		when = "before, during and after the plan"
	case k.FromStep == 0:
		when = fmt.Sprintf("from now until step %d", k.UntilStep)
	case k.UntilStep == 0:
		when = fmt.Sprintf("from step %d on, after the plan too", k.FromStep)
	default:
		when = fmt.Sprintf("from step %d until step %d", k.FromStep, k.UntilStep)
	}
	return fmt.Sprintf("losing %s %s leaves %d of %d voting members, %d needed: %s", k.Center, when, k.Left, k.Voters, k.Quorum, k.Lasts)
}

// ErrQuorumRisk is wrapped when a change would leave fewer healthy voting
// members than a quorum.
var ErrQuorumRisk = errors.New("membership change would lose quorum")

// ErrTransientRisk is wrapped when an apply's membership plan passes
// through a state that does not survive the loss of a center and that was
// not accepted.
var ErrTransientRisk = errors.New("membership plan passes through a state where the loss of one center loses quorum")

// CheckRisks refuses a plan with a transient risk window unless accepted.
// The error names each window's steps and center, and how to accept it.
func CheckRisks(risks []Risk, accepted bool) error {
	if accepted {
		return nil
	}
	var parts []string
	for _, k := range risks {
		if k.Transient {
			parts = append(parts, fmt.Sprintf("from step %d (%s) until step %d (%s) losing center %s leaves %d of %d voting members, %d needed",
				k.FromStep, k.Opens, k.UntilStep, k.Closes, k.Center, k.Left, k.Voters, k.Quorum))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; accept the window with --accept-transient-risk (tricenter apply) or accept_transient_risk = true (tricenter_cluster), or plan a change without it",
		ErrTransientRisk, strings.Join(parts, "; "))
}

// MembershipPlan is the ordered membership changes with the voting
// membership before and after each, and the windows of risk.
type MembershipPlan struct {
	Before Voting `json:"before"`
	Steps  []Step `json:"steps"`
	Risks  []Risk `json:"risks,omitempty"`
}

// PlanOptions tune PlanMembership.
type PlanOptions struct {
	// Hosts are the inventory's servers: a current member runs in the
	// center of the server its peer URL points at (UnknownCenter when
	// none).
	Hosts []inventory.Host
	// MaxLearners etcd accepts at once (default MaxLearners).
	MaxLearners int
	// HealthTimeout bounds the wait for a stable cluster after each step
	// (default DefaultHealthTimeout); part of a window's bound.
	HealthTimeout time.Duration
}

// PlanMembership orders the changes that take the cluster from its
// current members to the planned ones, healthy telling which member IDs
// answered:
//
//  1. members that are down and unplanned, and unplanned learners, are
//     removed first (etcd's FAQ: remove a failed member before adding its
//     replacement). Removing a member that is down never lowers the healthy
//     voting members and never raises the quorum, so it never makes a
//     center's loss worse;
//  2. planned servers are added as learners (no vote, no quorum effect),
//     each started and caught up, then promoted: as many learners at once
//     as etcd accepts (MaxLearners), so with several the promotions run
//     back to back;
//  3. the remaining unplanned members are removed.
//
// Inside 2 and 3 the next member is the one that leaves the fewest centers
// whose loss would lose quorum (then plan order). Every step is checked to
// keep a healthy quorum (ErrQuorumRisk), and the windows during which the
// loss of one center would lose quorum are reported as Risks.
func PlanMembership(current []Member, healthy map[uint64]bool, plan []inventory.Member, o PlanOptions) (*MembershipPlan, error) {
	if o.MaxLearners <= 0 {
		o.MaxLearners = MaxLearners
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	planned := map[string]inventory.Member{}
	for _, p := range plan {
		planned[PeerURL(p.Address)] = p
	}
	hosts := map[string]inventory.Host{}
	for _, h := range o.Hosts {
		hosts[PeerURL(h.SSH.Address)] = h
	}
	have := map[string]Member{}
	now := voters{}
	centerSet := map[string]bool{}
	var first, last []Step
	for _, m := range current {
		srv, isPlanned := inventory.Member{Center: UnknownCenter}, false
		for _, u := range m.PeerURLs {
			if p, ok := planned[u]; ok {
				srv, isPlanned = p, true
				have[u] = m
				break
			}
			if h, ok := hosts[u]; ok {
				srv = serverMember(h)
			}
		}
		centerSet[srv.Center] = true
		if !m.IsLearner {
			now[idKey(m.ID)] = voter{center: srv.Center, healthy: healthy[m.ID]}
		}
		if isPlanned {
			continue
		}
		s := Step{Kind: StepRemove, ID: m.ID, Name: m.Name, Member: srv}
		switch {
		case !healthy[m.ID]:
			s.Kind = StepRemoveDead
			first = append(first, s)
		case m.IsLearner:
			first = append(first, s)
		default:
			last = append(last, s)
		}
	}
	var learners, fresh []Step
	for _, p := range plan {
		centerSet[p.Center] = true
		m, ok := have[PeerURL(p.Address)]
		switch {
		case !ok:
			fresh = append(fresh, Step{Kind: StepAddLearner, Member: p})
		case m.IsLearner || !m.Started():
			learners = append(learners, Step{Kind: StepAddLearner, Member: p, ID: m.ID})
		}
	}
	centers := slices.Sorted(maps.Keys(centerSet))

	// Choose the orders on a simulation.
	sim := now.clone()
	for _, s := range first {
		sim.apply(s)
	}
	for _, s := range learners {
		sim.apply(promoteOf(s))
	}
	adds := append(learners, greedy(fresh, sim, centers, promoteOf)...)
	last = greedy(last, sim, centers, func(s Step) Step { return s })

	steps := append([]Step(nil), first...)
	for len(adds) > 0 {
		n := min(o.MaxLearners, len(adds))
		steps = append(steps, adds[:n]...)
		for _, s := range adds[:n] {
			steps = append(steps, promoteOf(s))
		}
		adds = adds[n:]
	}
	steps = append(steps, last...)

	mp := &MembershipPlan{Before: now.voting(centers), Steps: steps}
	var qerr error
	for i := range steps {
		now.apply(steps[i])
		steps[i].After = now.voting(centers)
		if err := quorumOK(now); err != nil && qerr == nil {
			qerr = fmt.Errorf("%w: after step %d (%s): %w", ErrQuorumRisk, i+1, steps[i], err)
		}
	}
	if len(steps) > 0 {
		mp.Risks = risks(mp.Before, steps, centers, o)
	}
	return mp, qerr
}

// promoteOf is the promotion that follows an add-learner step.
func promoteOf(s Step) Step {
	if s.Kind != StepAddLearner {
		return s
	}
	s.Kind = StepPromote
	return s
}

// greedy orders steps so that each leaves the fewest centers whose loss
// would lose quorum (ties: the given order). sim is advanced past them.
// as maps a step to the one whose effect counts (an add to its promotion).
func greedy(steps []Step, sim voters, centers []string, as func(Step) Step) []Step {
	left := slices.Clone(steps)
	var out []Step
	for len(left) > 0 {
		best, score := 0, -1
		for i, s := range left {
			n := sim.clone()
			n.apply(as(s))
			if x := len(n.voting(centers).Exposed()); score < 0 || x < score {
				best, score = i, x
			}
		}
		sim.apply(as(left[best]))
		out = append(out, left[best])
		left = slices.Delete(left, best, best+1)
	}
	return out
}

type voter struct {
	center  string
	healthy bool
}

// voters are the voting members of a simulation, keyed by member ID or,
// for members not added yet, by peer URL.
type voters map[string]voter

func idKey(id uint64) string { return "id:" + strconv.FormatUint(id, 16) }

func stepKey(s Step) string {
	if s.ID != 0 {
		return idKey(s.ID)
	}
	return "peer:" + PeerURL(s.Member.Address)
}

func (v voters) clone() voters { return maps.Clone(v) }

func (v voters) apply(s Step) {
	switch s.Kind {
	case StepAddLearner:
		// A learner does not vote.
	case StepPromote:
		v[stepKey(s)] = voter{center: s.Member.Center, healthy: true} // promoted once caught up
	default:
		delete(v, stepKey(s))
	}
}

func (v voters) voting(centers []string) Voting {
	out := Voting{PerCenter: map[string]int{}, KeepsQuorum: map[string]bool{}, Left: map[string]int{}}
	for _, c := range centers {
		out.PerCenter[c] = 0
	}
	for _, x := range v {
		out.Voters++
		out.PerCenter[x.center]++
		if x.healthy {
			out.Healthy++
		}
	}
	out.Quorum = out.Voters/2 + 1
	for _, c := range centers {
		left := 0
		for _, x := range v {
			if x.healthy && x.center != c {
				left++
			}
		}
		out.Left[c] = left
		out.KeepsQuorum[c] = out.Voters == 0 || left >= out.Quorum
	}
	return out
}

// quorumOK checks healthy voters reach a quorum of all voters.
func quorumOK(v voters) error {
	if len(v) == 0 {
		return nil
	}
	up := 0
	for _, x := range v {
		if x.healthy {
			up++
		}
	}
	if q := len(v)/2 + 1; up < q {
		return fmt.Errorf("%d of %d voting members healthy, %d needed", up, len(v), q)
	}
	return nil
}

// risks finds, per center, the runs of points (0 before the plan, i after
// step i) at which its loss would lose quorum.
func risks(before Voting, steps []Step, centers []string, o PlanOptions) []Risk {
	at := func(i int) Voting {
		if i == 0 {
			return before
		}
		return steps[i-1].After
	}
	var out []Risk
	for _, c := range centers {
		open := -1
		for i := 0; i <= len(steps); i++ {
			exposed := !at(i).KeepsQuorum[c]
			switch {
			case exposed && open < 0:
				open = i
			case !exposed && open >= 0:
				out = append(out, newRisk(c, open, i, at(open), steps, o))
				open = -1
			}
		}
		if open >= 0 {
			out = append(out, newRisk(c, open, 0, at(open), steps, o))
		}
	}
	slices.SortStableFunc(out, func(a, b Risk) int { return a.FromStep - b.FromStep })
	return out
}

// newRisk describes the window of center c from point from to step until
// (0: after the plan).
func newRisk(c string, from, until int, v Voting, steps []Step, o PlanOptions) Risk {
	k := Risk{Center: c, FromStep: from, UntilStep: until, Left: v.Left[c], Voters: v.Voters, Quorum: v.Quorum,
		Transient: from > 0 && until > 0}
	if from > 0 {
		k.Opens = steps[from-1].String()
	}
	if until == 0 {
		if from == 0 {
			k.Lasts = "the cluster is exposed already (a voting member is down) and stays so after the plan: bring the member back or replace it"
		} else {
			k.Lasts = "from " + steps[from-1].doing() + " on: the planned membership does not survive the loss of " + c + " (see the placement)"
		}
		return k
	}
	k.Closes = steps[until-1].String()
	start := "from now (a voting member is down)"
	if from > 0 {
		start = "from " + steps[from-1].doing()
	}
	// Inside the window: the steps after the opening one up to the closing
	// one, and the health wait after each step but the closing one.
	inside := steps[from:until]
	waits := until - max(from, 1)
	var catchUp []string
	var refusals, promotes, catchUps, stops int
	for _, s := range inside {
		switch s.Kind {
		case StepAddLearner:
			catchUp = append(catchUp, s.Member.Name)
			refusals++
			catchUps++
		case StepPromote:
			promotes++
		default:
			refusals++
			stops++
		}
	}
	k.AtMost = time.Duration(refusals)*RefusedRetry + time.Duration(catchUps+promotes)*DefaultPromoteTimeout +
		time.Duration(stops)*removeStopTimeout + time.Duration(waits)*o.HealthTimeout
	var what string
	switch {
	case len(catchUp) > 0:
		what = fmt.Sprintf("lasts until %s has caught up and is promoted, as long as copying the database takes (etcd takes %d learner(s) at a time)",
			strings.Join(catchUp, " and "), o.MaxLearners)
	case len(inside) == 1:
		what = "the next step follows at once: seconds"
	default:
		what = "the steps in between follow at once: seconds"
	}
	var bounds []string
	if refusals > 0 {
		bounds = append(bounds, fmt.Sprintf("etcd's refusals of %d change(s) up to %v each (RefusedRetry)", refusals, RefusedRetry))
	}
	if catchUps > 0 {
		bounds = append(bounds, fmt.Sprintf("%d catch-up(s) up to %v each (DefaultPromoteTimeout)", catchUps, DefaultPromoteTimeout))
	}
	if promotes > 0 {
		bounds = append(bounds, fmt.Sprintf("%d promotion(s) up to %v each (DefaultPromoteTimeout)", promotes, DefaultPromoteTimeout))
	}
	if stops > 0 {
		bounds = append(bounds, fmt.Sprintf("%d stop(s) up to %v each", stops, removeStopTimeout))
	}
	if waits > 0 {
		bounds = append(bounds, fmt.Sprintf("%d health wait(s) up to %v each (health timeout)", waits, o.HealthTimeout))
	}
	k.Lasts = fmt.Sprintf("%s until %s; %s; at most %v: %s", start, steps[until-1].doing(), what, k.AtMost, strings.Join(bounds, ", "))
	return k
}

// serverMember is the inventory server h as a member (its center, site
// and rack).
func serverMember(h inventory.Host) inventory.Member {
	m := inventory.Member{Name: h.Name, Address: h.SSH.Address, Center: UnknownCenter}
	if h.Rack != nil {
		m.Rack = h.Rack.Name
	}
	if h.Center != nil {
		m.Center, m.Site = h.Center.Name, h.Center.Site
	}
	return m
}

// PlanFromRecord plans the change from the members a previous apply
// recorded (server names of the inventory, taken as healthy voting
// members) to the planned ones, without asking etcd: what a plan can show
// before any host is contacted (the Terraform plan). A recorded name the
// inventory no longer has is a member in UnknownCenter.
func PlanFromRecord(c *inventory.Cluster, recorded []string, plan []inventory.Member) (*MembershipPlan, error) {
	var current []Member
	healthy := map[uint64]bool{}
	for i, n := range recorded {
		id := uint64(i + 1)
		addr := "unknown-" + n
		if h, ok := c.Host(n); ok {
			addr = h.SSH.Address
		}
		current = append(current, Member{ID: id, Name: n, PeerURLs: []string{PeerURL(addr)}, ClientURLs: []string{ClientURL(addr)}})
		healthy[id] = true
	}
	return PlanMembership(current, healthy, plan, PlanOptions{Hosts: c.Hosts()})
}

// CheckRemove verifies removing id keeps a healthy quorum among the other
// voting members.
func CheckRemove(current []Member, healthy map[uint64]bool, id uint64) error {
	v := voters{}
	for _, m := range current {
		if !m.IsLearner && m.Started() && m.ID != id {
			v[idKey(m.ID)] = voter{healthy: healthy[m.ID]}
		}
	}
	if err := quorumOK(v); err != nil {
		return fmt.Errorf("%w: %w", ErrQuorumRisk, err)
	}
	return nil
}
