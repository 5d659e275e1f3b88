package upgrade

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Components of a step.
const (
	CompEtcd         = "etcd"
	CompControlPlane = "control-plane"
	CompNode         = "node"
)

// Actions of a step (Actions describes each).
const (
	// ActionFollower replaces etcd on a member that does not lead.
	ActionFollower = "upgrade-follower"
	// ActionLeader first moves leadership to an upgraded member.
	ActionLeader = "upgrade-leader"
	// ActionServer upgrades a control-plane server behind a held API VIP.
	ActionServer = "upgrade-server"
	// ActionNode drains a node and upgrades its kubelet and kube-proxy.
	ActionNode = "drain-upgrade"
)

// Actions describes each action, in plan order.
var Actions = []struct{ Name, Description string }{
	{ActionFollower, "replace etcd on the member and restart it; every member healthy before and after"},
	{ActionLeader, "move etcd leadership to an upgraded member, then as upgrade-follower"},
	{ActionServer, "hold the API VIP (withdrawn over BGP), replace and restart kube-apiserver, kube-controller-manager and kube-scheduler, wait for /readyz, release the VIP"},
	{ActionNode, "cordon and drain the node, replace and restart kubelet and kube-proxy, wait until the Node is Ready with the new version, uncordon"},
}

// Step is one unit of work of a plan: one component of one server from a
// version to the next.
type Step struct {
	// ID is stable: "COMPONENT/SERVER/TO".
	ID string `json:"id"`
	// Number is the step's position in the plan, from 1.
	Number int `json:"number"`
	// Batch groups the steps that run together (workers of one center);
	// batches run in order, each after the one before it is done.
	Batch     int    `json:"batch"`
	Component string `json:"component"`
	Action    string `json:"action"`
	Host      string `json:"host"`
	Center    string `json:"center"`
	Rack      string `json:"rack"`
	From      string `json:"from"`
	To        string `json:"to"`
	// Target is where the component ends: To, or the release after To
	// when To is etcd's bridge (EtcdBridge).
	Target string `json:"target"`
}

// Plan is an upgrade's ordered steps.
type Plan struct {
	Cluster               string `json:"cluster"`
	Kubernetes            string `json:"kubernetes"`
	Etcd                  string `json:"etcd"`
	MaxUnavailablePerRack int    `json:"maxUnavailablePerRack"`
	Steps                 []Step `json:"steps"`
}

// Digest identifies the plan: the first 16 hex digits of the sha256 of its
// JSON encoding.
func (p *Plan) Digest() string {
	b, err := json.Marshal(p)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:16]
}

// Batches are the steps grouped by batch, in order.
func (p *Plan) Batches() [][]Step {
	var out [][]Step
	for _, s := range p.Steps {
		if n := len(out); n > 0 && out[n-1][0].Batch == s.Batch {
			out[n-1] = append(out[n-1], s)
			continue
		}
		out = append(out, []Step{s})
	}
	return out
}

// Step finds a step by ID.
func (p *Plan) Step(id string) (Step, bool) {
	for _, s := range p.Steps {
		if s.ID == id {
			return s, true
		}
	}
	return Step{}, false
}

// hostInfo is where a server is and its place in the order.
type hostInfo struct {
	center, rack string
	rank, index  int
}

// centerRank orders centers remote-dr, local-dr, production, then the
// others.
func centerRank(c *inventory.Cluster, name string) int {
	ctr := c.Center(name)
	if ctr == nil {
		return 3
	}
	switch ctr.Role {
	case inventory.RoleRemoteDR:
		return 0
	case inventory.RoleLocalDR:
		return 1
	case inventory.RoleProduction:
		return 2
	}
	return 3
}

func hostInfos(c *inventory.Cluster) map[string]hostInfo {
	out := map[string]hostInfo{}
	for i, h := range c.Hosts() {
		hi := hostInfo{index: i, rank: 3}
		if h.Center != nil {
			hi.center, hi.rank = h.Center.Name, centerRank(c, h.Center.Name)
		}
		if h.Rack != nil {
			hi.rack = h.Rack.Name
		}
		out[h.Name] = hi
	}
	return out
}

// inOrder sorts server names centers first (remote-dr, local-dr,
// production), then in inventory order.
func inOrder(info map[string]hostInfo, names []string) []string {
	out := slices.Clone(names)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := info[out[i]], info[out[j]]
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return a.index < b.index
	})
	return out
}

// LeaderPreference orders the named etcd members as leadership should go
// to them: production first, then local-dr, then remote-dr (commits never
// wait on the remote center), in inventory order within a center.
func LeaderPreference(c *inventory.Cluster, names []string) []string {
	info := hostInfos(c)
	out := slices.Clone(names)
	// production (rank 2), local-dr (1), remote-dr (0), others (3).
	pref := func(rank int) int {
		if rank < 3 {
			return 2 - rank
		}
		return rank
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := info[out[i]], info[out[j]]
		if pa, pb := pref(a.rank), pref(b.rank); pa != pb {
			return pa < pb
		}
		return a.index < b.index
	})
	return out
}

// planner builds a plan.
type planner struct {
	c    *inventory.Cluster
	info map[string]hostInfo
	obs  *Observation
	o    Options
	plan *Plan
}

func (pl *planner) add(batch int, comp, action, host string, from, to, target inventory.Version) {
	hi := pl.info[host]
	pl.plan.Steps = append(pl.plan.Steps, Step{
		ID: comp + "/" + host + "/" + to.String(), Number: len(pl.plan.Steps) + 1, Batch: batch,
		Component: comp, Action: action, Host: host, Center: hi.center, Rack: hi.rack,
		From: from.String(), To: to.String(), Target: target.String()})
}

func (pl *planner) nextBatch() int {
	if n := len(pl.plan.Steps); n > 0 {
		return pl.plan.Steps[n-1].Batch + 1
	}
	return 1
}

// BuildPlan validates the observed cluster against the targets (Validate)
// and orders the work: etcd members, control-plane servers, then nodes
// (see the package documentation). Components already on their target are
// left out. Warnings are Validate's and the observation's problems.
func BuildPlan(c *inventory.Cluster, p *inventory.Placement, obs *Observation, o Options) (*Plan, []string, error) {
	warns, err := Validate(obs, o)
	if err != nil {
		return nil, warns, err
	}
	warns = append(warns, obs.Problems...)
	pl := &planner{c: c, info: hostInfos(c), obs: obs, o: o, plan: &Plan{Cluster: c.Metadata.Name,
		Kubernetes: o.Kubernetes.String(), Etcd: o.Etcd.String(), MaxUnavailablePerRack: o.maxPerRack()}}
	if err := pl.etcd(p); err != nil {
		return nil, warns, err
	}
	if err := pl.controlPlane(p); err != nil {
		return nil, warns, err
	}
	if err := pl.nodes(p); err != nil {
		return nil, warns, err
	}
	return pl.plan, warns, nil
}

// etcd plans the members one at a time, in one or two rounds (the bridge
// to the newest patch of the current minor first), followers first and
// the leader last in each.
func (pl *planner) etcd(p *inventory.Placement) error {
	type hop struct{ from, to inventory.Version }
	rounds := [2]map[string]hop{{}, {}}
	var names []string
	for _, m := range p.Etcd.Members {
		names = append(names, m.Name)
		v, ok := pl.obs.Etcd[m.Name]
		if !ok {
			return fmt.Errorf("etcd on %s was not observed: it must answer before an upgrade", m.Name)
		}
		t := pl.o.Etcd
		switch classify(v, t) {
		case unchanged:
		case minorUp:
			if b, ok := EtcdBridge(v); ok && v.Compare(b) < 0 {
				rounds[0][m.Name] = hop{v, b}
				rounds[1][m.Name] = hop{b, t}
				continue
			}
			rounds[1][m.Name] = hop{v, t}
		default:
			rounds[1][m.Name] = hop{v, t}
		}
	}
	leader := pl.obs.EtcdLeader
	for _, round := range rounds {
		var order []string
		for _, n := range inOrder(pl.info, names) {
			if _, ok := round[n]; ok && n != leader {
				order = append(order, n)
			}
		}
		_, leaderMoves := round[leader]
		if leaderMoves {
			order = append(order, leader)
		}
		for _, n := range order {
			action := ActionFollower
			if n == leader {
				action = ActionLeader
			}
			h := round[n]
			pl.add(pl.nextBatch(), CompEtcd, action, n, h.from, h.to, pl.o.Etcd)
		}
		if leaderMoves && len(names) > 1 {
			// Leadership went to the preferred other member.
			others := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == leader })
			leader = LeaderPreference(pl.c, others)[0]
		}
	}
	return nil
}

// runsAt says whether a probed binary runs target on host (true when the
// host was not asked: the plan then goes by the APIs alone).
func (pl *planner) runsAt(host, bin string, target inventory.Version) bool {
	hp, ok := pl.obs.Hosts[host]
	if !ok {
		return true
	}
	v, ok := hp[bin].Runs()
	return ok && v == target
}

// controlPlane plans the control-plane servers one at a time.
func (pl *planner) controlPlane(p *inventory.Placement) error {
	var names []string
	for _, m := range p.ControlPlane {
		names = append(names, m.Name)
	}
	t := pl.o.Kubernetes
	for _, n := range inOrder(pl.info, names) {
		v, ok := pl.obs.APIServer[n]
		if !ok {
			return fmt.Errorf("kube-apiserver on %s was not observed: it must answer before an upgrade", n)
		}
		if v == t && pl.runsAt(n, BinControllerManager, t) && pl.runsAt(n, BinScheduler, t) {
			continue
		}
		pl.add(pl.nextBatch(), CompControlPlane, ActionServer, n, v, t, t)
	}
	return nil
}

// nodes plans the control-plane and etcd servers' kubelets one at a time,
// then the workers: per center, batches of at most MaxUnavailablePerRack
// servers of each of its racks.
func (pl *planner) nodes(p *inventory.Placement) error {
	t := pl.o.Kubernetes
	core := map[string]bool{}
	for _, m := range p.ControlPlane {
		core[m.Name] = true
	}
	for _, m := range p.Etcd.Members {
		core[m.Name] = true
	}
	var first, rest []string
	for _, h := range pl.c.Hosts() {
		v, ok := pl.obs.Kubelet[h.Name]
		if !ok {
			return fmt.Errorf("kubelet on %s was not observed: its Node must be registered before an upgrade", h.Name)
		}
		if v == t && pl.runsAt(h.Name, BinKubeProxy, t) {
			continue
		}
		if core[h.Name] {
			first = append(first, h.Name)
		} else {
			rest = append(rest, h.Name)
		}
	}
	for _, n := range inOrder(pl.info, first) {
		pl.add(pl.nextBatch(), CompNode, ActionNode, n, pl.obs.Kubelet[n], t, t)
	}
	// Workers: one center at a time, each batch taking up to N servers
	// from each of the center's racks.
	type rackQueue struct {
		name  string
		hosts []string
	}
	var centers []string
	queues := map[string][]*rackQueue{}
	for _, n := range inOrder(pl.info, rest) {
		hi := pl.info[n]
		if _, ok := queues[hi.center]; !ok {
			centers = append(centers, hi.center)
		}
		qs := queues[hi.center]
		i := slices.IndexFunc(qs, func(q *rackQueue) bool { return q.name == hi.rack })
		if i < 0 {
			qs = append(qs, &rackQueue{name: hi.rack})
			i = len(qs) - 1
		}
		qs[i].hosts = append(qs[i].hosts, n)
		queues[hi.center] = qs
	}
	per := pl.o.maxPerRack()
	for _, ctr := range centers {
		for {
			batch, any := pl.nextBatch(), false
			for _, q := range queues[ctr] {
				k := min(per, len(q.hosts))
				for _, n := range q.hosts[:k] {
					pl.add(batch, CompNode, ActionNode, n, pl.obs.Kubelet[n], t, t)
					any = true
				}
				q.hosts = q.hosts[k:]
			}
			if !any {
				break
			}
		}
	}
	return nil
}

// Render writes the plan as text: a header, one line per step with its
// status (status by step ID; "pending" when absent) and what each action
// does. The text is stable: the same plan and statuses always give the same
// bytes.
func (p *Plan) Render(w io.Writer, status map[string]string) error {
	batches := p.Batches()
	fmt.Fprintf(w, "Upgrade plan %s for cluster %s: etcd → %s, Kubernetes → %s\n", p.Digest(), p.Cluster, p.Etcd, p.Kubernetes)
	if len(p.Steps) == 0 {
		_, err := fmt.Fprintln(w, "Nothing to upgrade: every component runs its target")
		return err
	}
	fmt.Fprintf(w, "%d steps in %d batches; workers: at most %d per rack at once, one center at a time\n",
		len(p.Steps), len(batches), p.MaxUnavailablePerRack)
	if from := p.from(); from != "" {
		fmt.Fprintf(w, "From: %s\n", from)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tBATCH\tCOMPONENT\tHOST\tCENTER\tRACK\tACTION\tFROM\tTO\tSTATUS")
	for _, s := range p.Steps {
		st := status[s.ID]
		if st == "" {
			st = "pending"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Number, s.Batch, s.Component, s.Host, s.Center, s.Rack,
			s.Action, s.From, s.To, st)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Actions:")
	for _, a := range Actions {
		if slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Action == a.Name }) {
			fmt.Fprintf(w, "  %-17s %s\n", a.Name, a.Description)
		}
	}
	return nil
}

// from summarises where the plan starts: per component and version, how
// many servers.
func (p *Plan) from() string {
	type key struct{ comp, from string }
	seen := map[string]bool{}
	count := map[key]int{}
	var keys []key
	for _, s := range p.Steps {
		if seen[s.Component+"/"+s.Host] {
			continue
		}
		seen[s.Component+"/"+s.Host] = true
		k := key{s.Component, s.From}
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	names := map[string]string{CompEtcd: "etcd", CompControlPlane: "kube-apiserver", CompNode: "kubelet"}
	var parts []string
	for _, k := range keys {
		servers := "servers"
		if count[k] == 1 {
			servers = "server"
		}
		parts = append(parts, fmt.Sprintf("%s %s on %d %s", names[k.comp], k.from, count[k], servers))
	}
	return strings.Join(parts, ", ")
}
