package etcd

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The planning fixture: servers a1…a4 in dc1 and b1…b4 in dc2 (site-a),
// c1…c2 in dc3 (site-b). x8, x9 are on no inventory server.
var fixtureCenters = map[byte]*inventory.Center{
	'a': {Name: "dc1", Site: "site-a", Role: inventory.RoleProduction},
	'b': {Name: "dc2", Site: "site-a", Role: inventory.RoleLocalDR},
	'c': {Name: "dc3", Site: "site-b", Role: inventory.RoleRemoteDR},
}

func fixtureAddr(name string) string {
	return fmt.Sprintf("198.18.201.%d", int(name[0]-'a')*10+int(name[1]-'0'))
}

func fixtureHosts() []inventory.Host {
	var out []inventory.Host
	for _, l := range []byte("abc") {
		for i := 1; i <= 4; i++ {
			n := fmt.Sprintf("%c%d", l, i)
			out = append(out, inventory.Host{Server: &inventory.Server{Name: n, SSH: inventory.SSH{Address: fixtureAddr(n)}},
				Center: fixtureCenters[l]})
		}
	}
	return out
}

func fixturePlan(names ...string) []inventory.Member {
	var out []inventory.Member
	for _, n := range names {
		out = append(out, inventory.Member{Name: n, Center: fixtureCenters[n[0]].Name, Address: fixtureAddr(n)})
	}
	return out
}

// fixtureCurrent builds the member list etcd would report: "a1" a healthy
// voting member, "a1!" one that is down, "a1?" a started learner, "a1~" a
// learner added but never started.
func fixtureCurrent(specs ...string) ([]Member, map[uint64]bool) {
	var ms []Member
	healthy := map[uint64]bool{}
	for i, s := range specs {
		n := s[:2]
		m := Member{ID: uint64(i + 1), Name: n, PeerURLs: []string{PeerURL(fixtureAddr(n))}, ClientURLs: []string{ClientURL(fixtureAddr(n))}}
		switch s[2:] {
		case "!":
		case "?":
			m.IsLearner = true
			healthy[m.ID] = true
		case "~":
			m.IsLearner, m.Name, m.ClientURLs = true, "", nil
		default:
			healthy[m.ID] = true
		}
		ms = append(ms, m)
	}
	return ms, healthy
}

func stepsString(steps []Step) string {
	var out []string
	for _, s := range steps {
		n := s.Member.Name
		if n == "" {
			n = s.Name
		}
		out = append(out, string(s.Kind)+":"+n)
	}
	return strings.Join(out, " ")
}

// pointString is "dc1/dc2/dc3[/unknown] counts:exposed centers".
func pointString(v Voting) string {
	var counts []string
	for _, c := range slices.Sorted(maps.Keys(v.PerCenter)) {
		counts = append(counts, fmt.Sprint(v.PerCenter[c]))
	}
	ex := strings.Join(v.Exposed(), "+")
	if ex == "" {
		ex = "-"
	}
	return strings.Join(counts, "/") + ":" + ex
}

func risksString(rs []Risk) string {
	var out []string
	for _, k := range rs {
		s := fmt.Sprintf("%s %d-%d", k.Center, k.FromStep, k.UntilStep)
		if k.Transient {
			s += "!"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestPlanMembership(t *testing.T) {
	tests := []struct {
		name        string
		current     []string
		plan        []string
		maxLearners int
		steps       string
		// points: before the first step, then after each step.
		points []string
		// risks: "center from-until", "!" when transient (an apply
		// needs AcceptTransientRisk).
		risks string
		err   error
	}{
		{name: "converged", current: []string{"a1", "b1", "c1"}, plan: []string{"a1", "b1", "c1"},
			points: []string{"1/1/1:-"}},
		{name: "3 to 5: the first promotion exposes dc1 until the second",
			current: []string{"a1", "b1", "c1"}, plan: []string{"a1", "a2", "b1", "b2", "c1"},
			steps:  "add-learner:a2 promote:a2 add-learner:b2 promote:b2",
			points: []string{"1/1/1:-", "1/1/1:-", "2/1/1:dc1", "2/1/1:dc1", "2/2/1:-"},
			risks:  "dc1 2-4!"},
		{name: "3 to 5 with two learners at once: promotions back to back",
			current: []string{"a1", "b1", "c1"}, plan: []string{"a1", "a2", "b1", "b2", "c1"}, maxLearners: 2,
			steps:  "add-learner:a2 add-learner:b2 promote:a2 promote:b2",
			points: []string{"1/1/1:-", "1/1/1:-", "1/1/1:-", "2/1/1:dc1", "2/2/1:-"},
			risks:  "dc1 3-4!"},
		{name: "5 to 7", current: []string{"a1", "a2", "b1", "b2", "c1"}, plan: []string{"a1", "a2", "a3", "b1", "b2", "b3", "c1"},
			steps:  "add-learner:a3 promote:a3 add-learner:b3 promote:b3",
			points: []string{"2/2/1:-", "2/2/1:-", "3/2/1:dc1", "3/2/1:dc1", "3/3/1:-"},
			risks:  "dc1 2-4!"},
		{name: "7 to 5", current: []string{"a1", "a2", "a3", "b1", "b2", "b3", "c1"}, plan: []string{"a1", "a2", "b1", "b2", "c1"},
			steps:  "remove:a3 remove:b3",
			points: []string{"3/3/1:-", "2/3/1:dc2", "2/2/1:-"},
			risks:  "dc2 1-2!"},
		{name: "5 to 3", current: []string{"a1", "a2", "b1", "b2", "c1"}, plan: []string{"a1", "b1", "c1"},
			steps:  "remove:a2 remove:b2",
			points: []string{"2/2/1:-", "1/2/1:dc2", "1/1/1:-"},
			risks:  "dc2 1-2!"},
		{name: "3 to 7 alternates centers: two short windows, not one long",
			current: []string{"a1", "b1", "c1"}, plan: []string{"a1", "a2", "a3", "b1", "b2", "b3", "c1"},
			steps: "add-learner:a2 promote:a2 add-learner:b2 promote:b2 add-learner:a3 promote:a3 add-learner:b3 promote:b3",
			points: []string{"1/1/1:-", "1/1/1:-", "2/1/1:dc1", "2/1/1:dc1", "2/2/1:-",
				"2/2/1:-", "3/2/1:dc1", "3/2/1:dc1", "3/3/1:-"},
			risks: "dc1 2-4! dc1 6-8!"},
		{name: "3 to 3, a member moved to another server of dc1",
			current: []string{"a1", "b1", "c1"}, plan: []string{"a2", "b1", "c1"},
			steps:  "add-learner:a2 promote:a2 remove:a1",
			points: []string{"1/1/1:-", "1/1/1:-", "2/1/1:dc1", "1/1/1:-"},
			risks:  "dc1 2-3!"},
		{name: "3 to 3, a member moved from dc3 to dc1 (a degraded placement): the window stays open",
			current: []string{"a1", "b1", "c1"}, plan: []string{"a1", "a2", "b1"},
			steps:  "add-learner:a2 promote:a2 remove:c1",
			points: []string{"1/1/1:-", "1/1/1:-", "2/1/1:dc1", "2/1/0:dc1"},
			risks:  "dc1 2-0"},
		{name: "3 to 3, a member moved from dc1 to dc3 repairs a degraded cluster",
			current: []string{"a1", "a2", "b1"}, plan: []string{"a1", "b1", "c1"},
			steps:  "add-learner:c1 promote:c1 remove:a2",
			points: []string{"2/1/0:dc1", "2/1/0:dc1", "2/1/1:dc1", "1/1/1:-"},
			risks:  "dc1 0-3"},
		{name: "5 to 5, a member of dc1 and one of dc2 moved",
			current: []string{"a1", "a2", "b1", "b2", "c1"}, plan: []string{"a1", "a3", "b1", "b3", "c1"},
			steps:  "add-learner:a3 promote:a3 add-learner:b3 promote:b3 remove:a2 remove:b2",
			points: []string{"2/2/1:-", "2/2/1:-", "3/2/1:dc1", "3/2/1:dc1", "3/3/1:-", "2/3/1:dc2", "2/2/1:-"},
			risks:  "dc1 2-4! dc2 5-6!"},
		{name: "dead member of dc1 replaced: removed first; dc1 (the dead one's) can be lost meanwhile",
			current: []string{"a1!", "b1", "c1"}, plan: []string{"a2", "b1", "c1"},
			steps:  "remove-dead:a1 add-learner:a2 promote:a2",
			points: []string{"1/1/1:dc2+dc3", "0/1/1:dc2+dc3", "0/1/1:dc2+dc3", "1/1/1:-"},
			risks:  "dc2 0-3 dc3 0-3"},
		{name: "dead member of dc3 replaced in 5",
			current: []string{"a1", "a2", "b1", "b2", "c1!"}, plan: []string{"a1", "a2", "b1", "b2", "c2"},
			steps:  "remove-dead:c1 add-learner:c2 promote:c2",
			points: []string{"2/2/1:dc1+dc2", "2/2/0:dc1+dc2", "2/2/0:dc1+dc2", "2/2/1:-"},
			risks:  "dc1 0-3 dc2 0-3"},
		{name: "5 to 3 with a dead member in dc1: removing it first exposes nothing new",
			current: []string{"a1", "a2!", "b1", "b2", "c1"}, plan: []string{"a1", "b1", "c1"},
			steps:  "remove-dead:a2 remove:b2",
			points: []string{"2/2/1:dc2", "1/2/1:dc2", "1/1/1:-"},
			risks:  "dc2 0-2"},
		{name: "removing healthy members while two are down loses quorum",
			current: []string{"a1!", "a2", "b1!", "b2", "c1"}, plan: []string{"a1", "b1", "b2"},
			err: ErrQuorumRisk},
		{name: "an added learner that never started is continued first",
			current: []string{"a1", "b1", "c1", "a2~"}, plan: []string{"a1", "a2", "b1", "b2", "c1"},
			steps:  "add-learner:a2 promote:a2 add-learner:b2 promote:b2",
			points: []string{"1/1/1:-", "1/1/1:-", "2/1/1:dc1", "2/1/1:dc1", "2/2/1:-"},
			risks:  "dc1 2-4!"},
		{name: "an unplanned learner is removed first: it holds etcd's learner slot",
			current: []string{"a1", "b1", "c1", "a3?"}, plan: []string{"a1", "a2", "b1", "b2", "c1"},
			steps:  "remove:a3 add-learner:a2 promote:a2 add-learner:b2 promote:b2",
			points: []string{"1/1/1:-", "1/1/1:-", "1/1/1:-", "2/1/1:dc1", "2/1/1:dc1", "2/2/1:-"},
			risks:  "dc1 3-5!"},
		{name: "a member on no inventory server is a center of its own",
			current: []string{"a1", "b1", "x9"}, plan: []string{"a1", "b1", "c1"},
			steps:  "add-learner:c1 promote:c1 remove:x9",
			points: []string{"1/1/0/1:-", "1/1/0/1:-", "1/1/1/1:-", "1/1/1/0:-"}},
		{name: "two members on no inventory server: losing that center loses quorum",
			current: []string{"a1", "x8", "x9"}, plan: []string{"a1", "b1", "c1"},
			steps:  "add-learner:b1 promote:b1 add-learner:c1 promote:c1 remove:x8 remove:x9",
			points: []string{"1/0/0/2:unknown", "1/0/0/2:unknown", "1/1/0/2:unknown", "1/1/0/2:unknown", "1/1/1/2:-", "1/1/1/1:-", "1/1/1/0:-"},
			risks:  "unknown 0-4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur, healthy := fixtureCurrent(tc.current...)
			mp, err := PlanMembership(cur, healthy, fixturePlan(tc.plan...), PlanOptions{Hosts: fixtureHosts(), MaxLearners: tc.maxLearners})
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				return
			}
			if got := stepsString(mp.Steps); got != tc.steps {
				t.Errorf("steps = %q\nwant    %q", got, tc.steps)
			}
			points := []string{pointString(mp.Before)}
			for _, s := range mp.Steps {
				points = append(points, pointString(s.After))
			}
			if !slices.Equal(points, tc.points) {
				t.Errorf("voting before and after each step = %q\nwant %q", points, tc.points)
			}
			if got := risksString(mp.Risks); got != tc.risks {
				t.Errorf("risks = %q, want %q", got, tc.risks)
			}
			for _, k := range mp.Risks {
				if k.Lasts == "" || k.Voters == 0 || k.Left >= k.Quorum {
					t.Errorf("risk %+v: no description, or its numbers do not lose quorum", k)
				}
			}
		})
	}
}

// Removing a member that is down never turns a center whose loss keeps
// quorum into one whose loss does not, so dead members go first.
func TestRemovingDeadMembersNeverExposesACenter(t *testing.T) {
	for _, all := range [][]string{
		{"a1", "b1", "c1"}, {"a1", "a2", "b1", "b2", "c1"}, {"a1", "a2", "a3", "b1", "b2", "b3", "c1"},
		{"a1", "a2", "b1", "b2", "c1", "c2"},
	} {
		for mask := 1; mask < 1<<len(all); mask++ {
			var specs, alive []string
			for i, n := range all {
				if mask&(1<<i) != 0 {
					specs = append(specs, n+"!")
				} else {
					specs = append(specs, n)
					alive = append(alive, n)
				}
			}
			if len(alive) == 0 {
				continue
			}
			cur, healthy := fixtureCurrent(specs...)
			mp, _ := PlanMembership(cur, healthy, fixturePlan(alive...), PlanOptions{Hosts: fixtureHosts()})
			prev := mp.Before
			for i, s := range mp.Steps {
				if s.Kind != StepRemoveDead {
					t.Fatalf("%v: step %d is %s, want only remove-dead", specs, i+1, s.Kind)
				}
				for c, ok := range prev.KeepsQuorum {
					if ok && !s.After.KeepsQuorum[c] {
						t.Fatalf("%v: removing %s exposes %s", specs, s.Name, c)
					}
				}
				if s.After.Healthy != prev.Healthy || s.After.Quorum > prev.Quorum {
					t.Fatalf("%v: removing %s changed the healthy voters or raised the quorum: %s → %s", specs, s.Name, prev, s.After)
				}
				prev = s.After
			}
			for _, k := range mp.Risks {
				if k.Transient {
					t.Fatalf("%v: removing dead members opens a window: %s", specs, k)
				}
			}
		}
	}
}

func TestRiskWindowBounds(t *testing.T) {
	plan := func(cur, next []string, maxLearners int) *MembershipPlan {
		t.Helper()
		ms, h := fixtureCurrent(cur...)
		mp, err := PlanMembership(ms, h, fixturePlan(next...), PlanOptions{Hosts: fixtureHosts(), MaxLearners: maxLearners})
		if err != nil {
			t.Fatal(err)
		}
		if len(mp.Risks) != 1 {
			t.Fatalf("risks = %v, want one", mp.Risks)
		}
		return mp
	}
	three, five := []string{"a1", "b1", "c1"}, []string{"a1", "a2", "b1", "b2", "c1"}

	// One learner at a time: b2 is added, started and caught up inside the window.
	k := plan(three, five, 0).Risks[0]
	t.Logf("3 to 5: %s", k)
	if want := RefusedRetry + 2*DefaultPromoteTimeout + 2*DefaultHealthTimeout; k.AtMost != want {
		t.Errorf("3 to 5: at most %v, want %v", k.AtMost, want)
	}
	for _, s := range []string{"from promoting a2 until promoting b2", "until b2 has caught up", "DefaultPromoteTimeout", "RefusedRetry"} {
		if !strings.Contains(k.Lasts, s) {
			t.Errorf("3 to 5: lasts %q, want it to say %q", k.Lasts, s)
		}
	}
	if !strings.HasPrefix(k.Opens, "promote learner a2") || !strings.HasPrefix(k.Closes, "promote learner b2") || k.Left != 2 || k.Voters != 4 || k.Quorum != 3 {
		t.Errorf("3 to 5: %+v", k)
	}

	// Two learners at once: the promotions follow each other.
	k = plan(three, five, 2).Risks[0]
	t.Logf("3 to 5, two learners: %s", k)
	if want := DefaultPromoteTimeout + DefaultHealthTimeout; k.AtMost != want {
		t.Errorf("3 to 5, back to back: at most %v, want %v", k.AtMost, want)
	}
	if !strings.Contains(k.Lasts, "seconds") || strings.Contains(k.Lasts, "caught up") {
		t.Errorf("3 to 5, back to back: lasts %q", k.Lasts)
	}

	// Removals: the second follows the first.
	k = plan(five, three, 0).Risks[0]
	t.Logf("5 to 3: %s", k)
	if want := RefusedRetry + removeStopTimeout + DefaultHealthTimeout; k.AtMost != want {
		t.Errorf("5 to 3: at most %v, want %v", k.AtMost, want)
	}
	if !strings.Contains(k.Lasts, "from removing a2 until removing b2") {
		t.Errorf("5 to 3: lasts %q", k.Lasts)
	}
}

func TestCheckRisks(t *testing.T) {
	ms, h := fixtureCurrent("a1", "b1", "c1")
	mp, err := PlanMembership(ms, h, fixturePlan("a1", "a2", "b1", "b2", "c1"), PlanOptions{Hosts: fixtureHosts()})
	if err != nil {
		t.Fatal(err)
	}
	err = CheckRisks(mp.Risks, false)
	if !errors.Is(err, ErrTransientRisk) {
		t.Fatalf("err = %v, want ErrTransientRisk", err)
	}
	for _, s := range []string{"step 2 (promote learner a2", "step 4 (promote learner b2", "center dc1", "2 of 4", "3 needed",
		"--accept-transient-risk", "accept_transient_risk"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if err := CheckRisks(mp.Risks, true); err != nil {
		t.Errorf("accepted: %v", err)
	}
	// Windows that are not the plan's doing need no acceptance.
	ms, h = fixtureCurrent("a1!", "b1", "c1")
	mp, err = PlanMembership(ms, h, fixturePlan("a2", "b1", "c1"), PlanOptions{Hosts: fixtureHosts()})
	if err != nil || len(mp.Risks) == 0 {
		t.Fatalf("replacing a dead member: risks %v, err %v", mp.Risks, err)
	}
	if err := CheckRisks(mp.Risks, false); err != nil {
		t.Errorf("replacing a dead member: %v", err)
	}
}

func TestResultJSONCarriesRisks(t *testing.T) {
	ms, h := fixtureCurrent("a1", "b1", "c1")
	mp, err := PlanMembership(ms, h, fixturePlan("a2", "b1", "c1"), PlanOptions{Hosts: fixtureHosts()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&Result{Membership: &mp.Before, Steps: mp.Steps, Risks: mp.Risks})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Steps []struct {
			Kind  string `json:"kind"`
			After struct {
				PerCenter   map[string]int  `json:"perCenter"`
				KeepsQuorum map[string]bool `json:"centerLossKeepsQuorum"`
			} `json:"after"`
		} `json:"steps"`
		Risks []struct {
			Center    string `json:"center"`
			FromStep  int    `json:"fromStep"`
			UntilStep int    `json:"untilStep"`
			Transient bool   `json:"transient"`
			AtMost    int64  `json:"atMost"`
		} `json:"risks"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) != 3 || got.Steps[1].Kind != "promote" || got.Steps[1].After.PerCenter["dc1"] != 2 || got.Steps[1].After.KeepsQuorum["dc1"] {
		t.Errorf("steps: %s", b)
	}
	if len(got.Risks) != 1 || got.Risks[0].Center != "dc1" || got.Risks[0].FromStep != 2 || got.Risks[0].UntilStep != 3 || !got.Risks[0].Transient || got.Risks[0].AtMost <= 0 {
		t.Errorf("risks: %s", b)
	}
}

func TestPlanFromRecord(t *testing.T) {
	c, p := drillFixture(t)
	mp, err := PlanFromRecord(c, []string{"dc1-s01", "dc2-s01", "dc3-s01"}, p.Etcd.Members)
	if err != nil || len(mp.Steps) != 0 || len(mp.Risks) != 0 {
		t.Fatalf("as recorded: steps %v, risks %v, err %v", mp.Steps, mp.Risks, err)
	}
	mp, err = PlanFromRecord(c, []string{"dc1-s02", "dc2-s01", "dc3-s01"}, p.Etcd.Members)
	if err != nil {
		t.Fatal(err)
	}
	if got := stepsString(mp.Steps); got != "add-learner:dc1-s01 promote:dc1-s01 remove:dc1-s02" {
		t.Errorf("moved within dc1: steps %q", got)
	}
	if got := risksString(mp.Risks); got != "dc1 2-3!" {
		t.Errorf("moved within dc1: risks %q", got)
	}
	mp, err = PlanFromRecord(c, []string{"dc1-s01", "dc2-s01", "dc3-s01", "gone"}, p.Etcd.Members)
	if err != nil {
		t.Fatal(err)
	}
	if len(mp.Steps) != 1 || mp.Steps[0].Member.Center != UnknownCenter || mp.Before.PerCenter[UnknownCenter] != 1 {
		t.Errorf("a recorded member the inventory lost: %+v", mp.Steps)
	}
}

func TestCheckRemove(t *testing.T) {
	ms, h := fixtureCurrent("a1", "b1", "c1")
	if err := CheckRemove(ms, h, 1); err != nil {
		t.Fatalf("removing one of three healthy: %v", err)
	}
	h[2] = false
	if err := CheckRemove(ms, h, 1); !errors.Is(err, ErrQuorumRisk) {
		t.Fatalf("removing a healthy member with another down: err = %v, want ErrQuorumRisk", err)
	}
}
