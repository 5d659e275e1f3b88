package inventory

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Member is a server chosen for etcd or the control plane.
type Member struct {
	Name    string `json:"name"`
	Site    string `json:"site"`
	Center  string `json:"center"`
	Rack    string `json:"rack"`
	Address string `json:"address"`
}

// Timers are the etcd raft timers, identical on every member.
type Timers struct {
	HeartbeatMs       int     `json:"heartbeatMs"`
	ElectionTimeoutMs int     `json:"electionTimeoutMs"`
	MaxRTTMs          float64 `json:"maxRTTMs"`
	// Source is "derived" (from the centers' RTTs) or "override".
	Source string `json:"source"`
}

// FailureDomain says what happens to etcd when one center, site or rack is
// lost.
type FailureDomain struct {
	Kind       string   `json:"kind"` // center, site or rack
	Name       string   `json:"name"`
	Lost       []string `json:"lost"`
	Remaining  []string `json:"remaining"`
	QuorumKept bool     `json:"quorumKept"`
	Note       string   `json:"note,omitempty"`
}

// EtcdPlan is where etcd runs and how it survives failures.
type EtcdPlan struct {
	Count  int `json:"count"`
	Quorum int `json:"quorum"`
	// PerCenter counts members by center name.
	PerCenter map[string]int `json:"perCenter"`
	Members   []Member       `json:"members"`
	Timers    Timers         `json:"timers"`
	// SurvivesCenterLoss: losing any one center keeps quorum.
	SurvivesCenterLoss bool `json:"survivesCenterLoss"`
	// LocalSiteQuorum: the site with two centers holds a quorum on its
	// own, so commits never wait on the remote center.
	LocalSiteQuorum bool `json:"localSiteQuorum"`
	// Degraded is set when the placement breaks an invariant and the
	// inventory accepted that with allowDegradedPlacement.
	Degraded       bool            `json:"degraded"`
	FailureDomains []FailureDomain `json:"failureDomains"`
}

// Placement is the outcome of placing etcd members and control-plane
// servers.
type Placement struct {
	Etcd         EtcdPlan `json:"etcd"`
	ControlPlane []Member `json:"controlPlane"`
	// Stacked is true when no server has the control-plane role and the
	// etcd members run the control plane too.
	Stacked bool `json:"stacked"`
}

// IsEtcdMember reports whether the named server runs etcd.
func (p *Placement) IsEtcdMember(name string) bool {
	for _, m := range p.Etcd.Members {
		if m.Name == name {
			return true
		}
	}
	return false
}

// IsControlPlane reports whether the named server runs the control plane.
func (p *Placement) IsControlPlane(name string) bool {
	for _, m := range p.ControlPlane {
		if m.Name == name {
			return true
		}
	}
	return false
}

// ErrPlacement is wrapped by every placement error.
var ErrPlacement = errors.New("etcd placement")

// placementIssue is a placement problem tied to a field path.
type placementIssue struct {
	path, msg string
	warning   bool
}

// Place chooses the etcd members and the control-plane servers.
//
// Members are spread so that no center holds a quorum, the site with two
// centers holds one (commits never wait on the remote center) and losing any
// one center keeps quorum: 3 members go 1/1/1, 5 go 2/2/1 and 7 go 3/3/1,
// the single one in remote-dr. Inside a center, members go to different
// racks when possible, and servers with the etcd role come before
// control-plane servers. Members recorded in prior stay where they are as
// long as the placement stays valid.
//
// The cluster must have passed Validate; Place fails if the topology
// cannot survive the loss of a center, unless the inventory allows a
// degraded placement.
func Place(c *Cluster, prior *Prior) (*Placement, error) {
	p, issues := place(c, prior)
	var msgs []string
	for _, is := range issues {
		if !is.warning {
			msgs = append(msgs, is.path+": "+is.msg)
		}
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrPlacement, strings.Join(msgs, "; "))
	}
	return p, nil
}

type candidate struct {
	Host
	index     int // file order
	preferred bool
}

// distribution is members per center role: production, local-dr, remote-dr.
type distribution [3]int

func roleIndex(r CenterRole) int {
	switch r {
	case RoleProduction:
		return 0
	case RoleLocalDR:
		return 1
	case RoleRemoteDR:
		return 2
	}
	return -1
}

func place(c *Cluster, prior *Prior) (*Placement, []placementIssue) {
	var issues []placementIssue
	fail := func(path, format string, a ...any) {
		issues = append(issues, placementIssue{path: path, msg: fmt.Sprintf(format, a...)})
	}
	warn := func(path, format string, a ...any) {
		issues = append(issues, placementIssue{path: path, msg: fmt.Sprintf(format, a...), warning: true})
	}
	degradedOK := c.Spec.Etcd.AllowDegradedPlacement != nil
	// Centers declared lost hold no member: etcd goes on what is left,
	// and the placement says what that costs.
	lost := c.LostCenters()

	// Centers by role; a role missing means a topology that cannot survive
	// a center loss.
	var byRole [3]*Center
	for i := range c.Spec.Centers {
		ctr := &c.Spec.Centers[i]
		if k := roleIndex(ctr.Role); k >= 0 && byRole[k] == nil {
			byRole[k] = ctr
		}
	}

	hosts := c.Hosts()
	anyEtcd := false
	for _, h := range hosts {
		if h.HasRole(RoleEtcd) {
			anyEtcd = true
			break
		}
	}
	var cands [3][]candidate
	total := 0
	for i, h := range hosts {
		if h.Center == nil || !(h.HasRole(RoleEtcd) || h.HasRole(RoleControlPlane)) {
			continue
		}
		k := roleIndex(h.Center.Role)
		if k < 0 || byRole[k] != h.Center {
			continue
		}
		cands[k] = append(cands[k], candidate{Host: h, index: i, preferred: h.HasRole(RoleEtcd) || !anyEtcd})
		total++
	}
	if total == 0 {
		fail("spec.racks", "no server can run etcd: give at least three servers, one per center, the etcd or control-plane role")
		return nil, issues
	}
	caps := distribution{len(cands[0]), len(cands[1]), len(cands[2])}

	n := int(c.Spec.Etcd.Members)
	if n == 0 {
		switch {
		case caps[0] >= 2 && caps[1] >= 2 && caps[2] >= 1:
			n = 5
		case total >= 3:
			n = 3
		default:
			n = total
			if n%2 == 0 {
				n--
			}
		}
	}
	q := n/2 + 1
	if n > total && len(lost) > 0 {
		was := n
		if n = total; n%2 == 0 {
			n--
		}
		q = n/2 + 1
		warn("spec.centers", "centers %s are lost: %d etcd members instead of %d, on the servers that are left", strings.Join(lost, ", "), n, was)
	}
	if n > total {
		fail("spec.etcd.members", "%d members need %d servers with the etcd or control-plane role, the inventory has %d: add the etcd role to more servers or lower members", n, n, total)
		return nil, issues
	}

	var prev map[string]bool
	var prevDist *distribution
	if prior != nil && len(prior.EtcdMembers) > 0 {
		prev = map[string]bool{}
		for _, m := range prior.EtcdMembers {
			prev[m] = true
		}
		var d distribution
		for k := range cands {
			for _, cd := range cands[k] {
				if prev[cd.Name] {
					d[k]++
				}
			}
		}
		prevDist = &d
	}
	dist, ok := chooseDistribution(n, caps, byRole, prevDist)
	if !ok {
		ideal := idealDistribution(n)
		why := describeShortfall(ideal, caps, byRole)
		switch {
		case len(lost) > 0:
			dist = bestEffort(n, caps)
			warn("spec.centers", "centers %s are lost: etcd placed on what is left (%s); clear lost once their servers are back to spread it again", strings.Join(lost, ", "), why)
		case !degradedOK:
			fail("spec.etcd", "%d members cannot be placed so that the loss of any one center keeps quorum (%s); fix the inventory, or set spec.etcd.allowDegradedPlacement.reason to accept it", n, why)
			return nil, issues
		default:
			dist = bestEffort(n, caps)
			warn("spec.etcd.allowDegradedPlacement", "degraded etcd placement accepted (%s): %s", why, c.Spec.Etcd.AllowDegradedPlacement.Reason)
		}
	}

	p := &Placement{}
	p.Etcd.Count, p.Etcd.Quorum = n, q
	p.Etcd.PerCenter = map[string]int{}
	var chosen []candidate
	for k := 0; k < 3; k++ {
		if dist[k] == 0 {
			continue
		}
		chosen = append(chosen, pickInCenter(cands[k], dist[k], prev)...)
		p.Etcd.PerCenter[byRole[k].Name] = dist[k]
	}
	sort.Slice(chosen, func(i, j int) bool { return chosen[i].index < chosen[j].index })
	for _, cd := range chosen {
		p.Etcd.Members = append(p.Etcd.Members, memberOf(cd.Host))
	}
	p.Etcd.SurvivesCenterLoss, p.Etcd.LocalSiteQuorum = invariants(dist, q)
	p.Etcd.Degraded = !(p.Etcd.SurvivesCenterLoss && p.Etcd.LocalSiteQuorum && maxOf(dist) < q)
	p.Etcd.Timers = deriveTimers(c)
	p.Etcd.FailureDomains = failureDomains(c, p.Etcd.Members, q)

	for _, h := range hosts {
		if h.HasRole(RoleControlPlane) {
			p.ControlPlane = append(p.ControlPlane, memberOf(h))
		}
	}
	if len(p.ControlPlane) == 0 {
		p.Stacked = true
		p.ControlPlane = append(p.ControlPlane, p.Etcd.Members...)
	}
	centers := map[string]bool{}
	for _, m := range p.ControlPlane {
		centers[m.Center] = true
	}
	if len(centers) < 2 {
		warn("spec.racks", "every control-plane server is in one center: losing it stops the Kubernetes API; give servers in another center the control-plane role")
	}
	return p, issues
}

func memberOf(h Host) Member {
	m := Member{Name: h.Name, Address: h.SSH.Address}
	if h.Rack != nil {
		m.Rack = h.Rack.Name
	}
	if h.Center != nil {
		m.Center = h.Center.Name
		m.Site = h.Center.Site
	}
	return m
}

// idealDistribution is (n-1)/2 in production and local-dr, one in remote-dr.
func idealDistribution(n int) distribution {
	if n == 1 {
		return distribution{1, 0, 0}
	}
	return distribution{(n - 1) / 2, (n - 1) / 2, 1}
}

// invariants reports whether losing any one center keeps quorum and whether
// the local site (production + local-dr) holds a quorum on its own.
func invariants(d distribution, q int) (survives, localQuorum bool) {
	n := d[0] + d[1] + d[2]
	survives = true
	for _, x := range d {
		if n-x < q {
			survives = false
		}
	}
	return survives, d[0]+d[1] >= q
}

func maxOf(d distribution) int {
	m := 0
	for _, x := range d {
		if x > m {
			m = x
		}
	}
	return m
}

// chooseDistribution returns the valid split that moves the fewest prior
// members (when there was a prior placement), then the one closest to the
// ideal split.
func chooseDistribution(n int, caps distribution, byRole [3]*Center, prev *distribution) (distribution, bool) {
	for k := range byRole {
		if byRole[k] == nil {
			caps[k] = 0
		}
	}
	q := n/2 + 1
	ideal := idealDistribution(n)
	best, bestScore, found := distribution{}, math.MaxInt, false
	for a := 0; a <= n; a++ {
		for b := 0; a+b <= n; b++ {
			d := distribution{a, b, n - a - b}
			if d[0] > caps[0] || d[1] > caps[1] || d[2] > caps[2] {
				continue
			}
			surv, local := invariants(d, q)
			if !surv || !local || maxOf(d) >= q {
				continue
			}
			score := 0
			for k := range d {
				diff := d[k] - ideal[k]
				score += diff * diff
				if prev != nil {
					// Moving a member costs more than any distance to the ideal.
					score += 1000 * max(0, prev[k]-d[k])
				}
			}
			if score < bestScore {
				best, bestScore, found = d, score, true
			}
		}
	}
	return best, found
}

// bestEffort spreads n members as evenly as the centers allow, for an
// accepted degraded placement.
func bestEffort(n int, caps distribution) distribution {
	var d distribution
	for left := n; left > 0; {
		progressed := false
		for _, k := range []int{0, 1, 2} {
			if left > 0 && d[k] < caps[k] {
				d[k]++
				left--
				progressed = true
			}
		}
		if !progressed {
			break
		}
	}
	return d
}

func describeShortfall(ideal, caps distribution, byRole [3]*Center) string {
	names := [3]string{"production", "local-dr", "remote-dr"}
	var parts []string
	for k := range ideal {
		switch {
		case byRole[k] == nil:
			parts = append(parts, "there is no "+names[k]+" center")
		case caps[k] < ideal[k]:
			parts = append(parts, fmt.Sprintf("%s center %s has %d eligible server(s), %d needed", names[k], byRole[k].Name, caps[k], ideal[k]))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("ideal split %d/%d/%d", ideal[0], ideal[1], ideal[2])
	}
	return strings.Join(parts, "; ")
}

// pickInCenter keeps prior members first, then spreads new ones over racks,
// etcd-role servers before control-plane ones, earlier servers first.
func pickInCenter(cands []candidate, want int, prev map[string]bool) []candidate {
	perRack := map[string]int{}
	taken := make([]bool, len(cands))
	var out []candidate
	take := func(i int) {
		taken[i] = true
		perRack[cands[i].Rack.Name]++
		out = append(out, cands[i])
	}
	// Prior members stay, best ones first when there are more than wanted
	// (a scale-down keeps the etcd-role servers and the rack spread).
	var kept []int
	for i, cd := range cands {
		if prev[cd.Name] {
			kept = append(kept, i)
		}
	}
	for len(out) < want && len(kept) > 0 {
		best := -1
		for j, i := range kept {
			if best < 0 || better(cands[i], cands[kept[best]], perRack) {
				best = j
			}
		}
		take(kept[best])
		kept = append(kept[:best], kept[best+1:]...)
	}
	for len(out) < want {
		best := -1
		for i := range cands {
			if taken[i] {
				continue
			}
			if best < 0 || better(cands[i], cands[best], perRack) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		take(best)
	}
	return out
}

// better orders candidates: fewer members already behind the same TOR,
// then the etcd role, then file order.
func better(a, b candidate, perRack map[string]int) bool {
	ra, rb := perRack[a.Rack.Name], perRack[b.Rack.Name]
	if ra != rb {
		return ra < rb
	}
	if a.preferred != b.preferred {
		return a.preferred
	}
	return a.index < b.index
}

// Timer bounds from etcd's tuning guide.
const (
	minHeartbeatMs   = 100
	electionFactor   = 10
	maxElectionMs    = 50000
	minElectionRatio = 5
)

// deriveTimers sets the heartbeat to the largest inter-center RTT (at least
// 100 ms, rounded up to 10 ms) and the election timeout to ten times that.
func deriveTimers(c *Cluster) Timers {
	var maxRTT float64
	for _, ctr := range c.Spec.Centers {
		for _, v := range ctr.RTTMs {
			if v > maxRTT {
				maxRTT = v
			}
		}
	}
	t := Timers{MaxRTTMs: maxRTT, Source: "derived"}
	t.HeartbeatMs = int(math.Ceil(maxRTT/10)) * 10
	if t.HeartbeatMs < minHeartbeatMs {
		t.HeartbeatMs = minHeartbeatMs
	}
	t.ElectionTimeoutMs = electionFactor * t.HeartbeatMs
	if e := c.Spec.Etcd; e.HeartbeatMs > 0 || e.ElectionTimeoutMs > 0 {
		t.Source = "override"
		if e.HeartbeatMs > 0 {
			t.HeartbeatMs = e.HeartbeatMs
			t.ElectionTimeoutMs = electionFactor * e.HeartbeatMs
		}
		if e.ElectionTimeoutMs > 0 {
			t.ElectionTimeoutMs = e.ElectionTimeoutMs
		}
	}
	if t.ElectionTimeoutMs > maxElectionMs {
		t.ElectionTimeoutMs = maxElectionMs
	}
	return t
}

// failureDomains reports, for every center, site and rack, which members a
// loss takes away and whether quorum survives it.
func failureDomains(c *Cluster, members []Member, q int) []FailureDomain {
	report := func(kind, name string, in func(Member) bool) FailureDomain {
		fd := FailureDomain{Kind: kind, Name: name, Lost: []string{}, Remaining: []string{}}
		for _, m := range members {
			if in(m) {
				fd.Lost = append(fd.Lost, m.Name)
			} else {
				fd.Remaining = append(fd.Remaining, m.Name)
			}
		}
		fd.QuorumKept = len(fd.Remaining) >= q
		return fd
	}
	var out []FailureDomain
	for _, ctr := range c.Spec.Centers {
		fd := report("center", ctr.Name, func(m Member) bool { return m.Center == ctr.Name })
		if !fd.QuorumKept {
			fd.Note = fmt.Sprintf("%d of %d members left, %d needed: etcd stops accepting writes until the center returns", len(fd.Remaining), len(members), q)
		}
		out = append(out, fd)
	}
	for _, s := range c.Spec.Sites {
		fd := report("site", s.Name, func(m Member) bool { return m.Site == s.Name })
		if !fd.QuorumKept {
			centers := 0
			for _, ctr := range c.Spec.Centers {
				if ctr.Site == s.Name {
					centers++
				}
			}
			if centers >= 2 {
				fd.Note = fmt.Sprintf("quorum is lost by construction: site %s holds the majority so that commits never wait on the remote center. Recovery: rebuild etcd from a snapshot in the remote center as a new cluster, then re-add members as sites return", s.Name)
			} else {
				fd.Note = fmt.Sprintf("%d of %d members left, %d needed", len(fd.Remaining), len(members), q)
			}
		}
		out = append(out, fd)
	}
	for _, r := range c.Spec.Racks {
		fd := report("rack", r.Name, func(m Member) bool { return m.Rack == r.Name })
		if !fd.QuorumKept {
			fd.Note = fmt.Sprintf("%d members behind TOR %s: move one to another rack", len(fd.Lost), r.TOR.Name)
		}
		out = append(out, fd)
	}
	return out
}
