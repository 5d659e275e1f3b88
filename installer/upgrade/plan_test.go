package upgrade

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// loadExample reads an example inventory and its placement.
func loadExample(t *testing.T, name string) (*inventory.Cluster, *inventory.Placement) {
	t.Helper()
	c, lines, err := inventory.Load(filepath.Join("..", "..", "examples", "inventory", name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := inventory.BuildPlan(c, lines, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, p.Placement()
}

// uniform observes every server on one Kubernetes and one etcd release,
// every Node Ready, leader leading etcd, every server probed.
func uniform(c *inventory.Cluster, p *inventory.Placement, kube, etcd, leader string) *Observation {
	o := NewObservation()
	for _, m := range p.Etcd.Members {
		o.Etcd[m.Name] = v(etcd)
	}
	o.EtcdLeader = leader
	for _, m := range p.ControlPlane {
		o.APIServer[m.Name] = v(kube)
	}
	for _, h := range c.Hosts() {
		o.Kubelet[h.Name] = v(kube)
		o.Nodes[h.Name] = NodeState{Ready: true}
		hp := HostProbe{BinKubelet: {Installed: v(kube), Running: true}, BinKubeProxy: {Installed: v(kube), Running: true}}
		if p.IsControlPlane(h.Name) {
			for _, b := range []string{BinAPIServer, BinControllerManager, BinScheduler} {
				hp[b] = Binary{Installed: v(kube), Running: true}
			}
		}
		if p.IsEtcdMember(h.Name) {
			hp[BinEtcd] = Binary{Installed: v(etcd), Running: true}
		}
		o.Hosts[h.Name] = hp
	}
	return o
}

// checkGolden compares got with testdata/name; UPDATE_GOLDEN=1 rewrites it.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (UPDATE_GOLDEN=1 writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (UPDATE_GOLDEN=1 rewrites it); got:\n%s", path, got)
	}
}

func TestPlanGolden(t *testing.T) {
	for _, tc := range []struct {
		golden, inventory    string
		kube, etcd, leader   string
		toKube, toEtcd       string
		maxPerRack           int
		wantSteps, wantBatch int
	}{
		// 5 etcd members in two rounds (v3.5.21 → v3.5.35 → v3.6.16), 7
		// control-plane servers, their 7 kubelets one at a time, then 41
		// workers: dc3 (racks of 5 and 6) in 6 batches, dc2 and dc1 (3
		// racks of 5 each) in 5 batches each.
		{"three-center.golden", "three-center.yaml", "v1.36.3", "v3.5.21", "dc1-r01-s01", "v1.37.2", "v3.6.16", 0, 10 + 7 + 48, 10 + 7 + 7 + 6 + 5 + 5},
		// etcd on its target; two workers per rack: 3 + 3 + 3 batches.
		{"three-center-max2.golden", "three-center.yaml", "v1.36.3", "v3.6.16", "dc1-r02-s01", "v1.37.2", "v3.6.16", 2, 7 + 48, 7 + 7 + 3 + 3 + 3},
		// One etcd round; dc2 has no worker, dc3 one, dc1 two in two racks.
		{"lab.golden", "lab.yaml", "v1.36.3", "v3.5.35", "dc1-r01-s01", "v1.37.2", "v3.6.16", 0, 5 + 5 + 8, 5 + 5 + 5 + 1 + 1},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			c, p := loadExample(t, tc.inventory)
			obs := uniform(c, p, tc.kube, tc.etcd, tc.leader)
			plan, warns, err := BuildPlan(c, p, obs, Options{Kubernetes: v(tc.toKube), Etcd: v(tc.toEtcd), MaxUnavailablePerRack: tc.maxPerRack})
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
			if len(plan.Steps) != tc.wantSteps || len(plan.Batches()) != tc.wantBatch {
				t.Errorf("%d steps in %d batches, want %d in %d", len(plan.Steps), len(plan.Batches()), tc.wantSteps, tc.wantBatch)
			}
			checkPlanRules(t, c, p, plan, obs)
			var b bytes.Buffer
			if err := plan.Render(&b, nil); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.golden, b.Bytes())
			// The same inputs give the same plan, byte for byte.
			again, _, _ := BuildPlan(c, p, obs, Options{Kubernetes: v(tc.toKube), Etcd: v(tc.toEtcd), MaxUnavailablePerRack: tc.maxPerRack})
			if again.Digest() != plan.Digest() {
				t.Errorf("digest %s, then %s", plan.Digest(), again.Digest())
			}
		})
	}
}

// checkPlanRules checks the order rules on any plan: etcd, then the
// control plane, then nodes; etcd and control-plane servers one per batch,
// the etcd leader last of its round; core servers' kubelets before any
// worker; worker batches within one center and at most N per rack; every
// step of a server's component chained from → to; IDs unique.
func checkPlanRules(t *testing.T, c *inventory.Cluster, p *inventory.Placement, plan *Plan, obs *Observation) {
	t.Helper()
	order := map[string]int{CompEtcd: 0, CompControlPlane: 1, CompNode: 2}
	last, lastBatch := 0, 0
	ids := map[string]bool{}
	workerSeen := false
	for i, s := range plan.Steps {
		if s.Number != i+1 {
			t.Errorf("step %s numbered %d at %d", s.ID, s.Number, i+1)
		}
		if ids[s.ID] {
			t.Errorf("step ID %s twice", s.ID)
		}
		ids[s.ID] = true
		if order[s.Component] < last {
			t.Errorf("step %d (%s) after a later component", s.Number, s.ID)
		}
		last = order[s.Component]
		if s.Batch < lastBatch || s.Batch > lastBatch+1 {
			t.Errorf("step %d: batch %d after batch %d", s.Number, s.Batch, lastBatch)
		}
		lastBatch = s.Batch
		core := p.IsControlPlane(s.Host) || p.IsEtcdMember(s.Host)
		if s.Component == CompNode && !core {
			workerSeen = true
		}
		if s.Component == CompNode && core && workerSeen {
			t.Errorf("core server %s's kubelet after a worker's", s.Host)
		}
	}
	for _, b := range plan.Batches() {
		if b[0].Component != CompNode || p.IsControlPlane(b[0].Host) || p.IsEtcdMember(b[0].Host) {
			if len(b) != 1 {
				t.Errorf("batch %d has %d steps, want one", b[0].Batch, len(b))
			}
			continue
		}
		perRack := map[string]int{}
		for _, s := range b {
			if s.Center != b[0].Center {
				t.Errorf("batch %d mixes centers %s and %s", s.Batch, b[0].Center, s.Center)
			}
			perRack[s.Rack]++
			if perRack[s.Rack] > plan.MaxUnavailablePerRack {
				t.Errorf("batch %d takes %d servers of rack %s, at most %d", s.Batch, perRack[s.Rack], s.Rack, plan.MaxUnavailablePerRack)
			}
		}
	}
	// etcd: the leader of each round goes last in it, after the others.
	leader := obs.EtcdLeader
	var round []Step
	flush := func() {
		for i, s := range round {
			if (s.Host == leader) != (s.Action == ActionLeader) || (s.Action == ActionLeader && i != len(round)-1) {
				t.Errorf("etcd round %v: the leader %s is not last alone", round, leader)
			}
		}
		if len(round) > 0 && round[len(round)-1].Host == leader {
			var others []string
			for _, m := range p.Etcd.Members {
				if m.Name != leader {
					others = append(others, m.Name)
				}
			}
			leader = LeaderPreference(c, others)[0]
		}
		round = nil
	}
	for _, s := range plan.Steps {
		if s.Component != CompEtcd {
			continue
		}
		if len(round) > 0 && s.From != round[0].From && slices.ContainsFunc(round, func(r Step) bool { return r.Host == s.Host }) {
			flush()
		}
		round = append(round, s)
	}
	flush()
	// Chains: each server's steps of one component go from → to in turn.
	at := map[string]string{}
	for _, s := range plan.Steps {
		k := s.Component + "/" + s.Host
		if prev, ok := at[k]; ok && prev != s.From {
			t.Errorf("step %s starts at %s, the previous one ended at %s", s.ID, s.From, prev)
		}
		at[k] = s.To
	}
}

// TestPlanLeavesOutWhatIsDone: a half-upgraded cluster plans only the
// rest; a stale kube-proxy (replaced, not restarted) is a step although
// the kubelet is on the target.
func TestPlanLeavesOutWhatIsDone(t *testing.T) {
	c, p := loadExample(t, "lab.yaml")
	obs := uniform(c, p, "v1.36.3", "v3.6.16", "dc1-r02-s01")
	obs.APIServer["dc3-r01-s01"] = v("v1.37.2")
	obs.Hosts["dc3-r01-s01"][BinControllerManager] = Binary{Installed: v("v1.37.2"), Running: true}
	obs.Hosts["dc3-r01-s01"][BinScheduler] = Binary{Installed: v("v1.37.2"), Running: true}
	plan, _, err := BuildPlan(c, p, obs, Options{Kubernetes: v("v1.37.2"), Etcd: v("v3.6.16")})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range plan.Steps {
		if s.Component == CompEtcd || s.Component == CompControlPlane && s.Host == "dc3-r01-s01" {
			t.Errorf("planned %s, already done", s.ID)
		}
	}
	// Everything on the target but one kube-proxy that was not restarted.
	obs = uniform(c, p, "v1.37.2", "v3.6.16", "dc1-r02-s01")
	obs.Hosts["dc1-r02-s02"][BinKubeProxy] = Binary{Installed: v("v1.37.2"), Running: true, Stale: true}
	plan, _, err = BuildPlan(c, p, obs, Options{Kubernetes: v("v1.37.2"), Etcd: v("v3.6.16")})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Steps) != 1 || plan.Steps[0].ID != "node/dc1-r02-s02/v1.37.2" || plan.Steps[0].From != "v1.37.2" {
		t.Fatalf("steps %+v, want the one stale kube-proxy's node", plan.Steps)
	}
	obs.Hosts["dc1-r02-s02"][BinKubeProxy] = Binary{Installed: v("v1.37.2"), Running: true}
	plan, _, _ = BuildPlan(c, p, obs, Options{Kubernetes: v("v1.37.2"), Etcd: v("v3.6.16")})
	var b bytes.Buffer
	if err := plan.Render(&b, nil); err != nil || len(plan.Steps) != 0 || !strings.Contains(b.String(), "Nothing to upgrade") {
		t.Errorf("converged cluster: %d steps, %v:\n%s", len(plan.Steps), err, b.String())
	}
}

// TestPlanRefusesUnobserved: a member, API server or Node not observed
// stops the plan naming it.
func TestPlanRefusesUnobserved(t *testing.T) {
	c, p := loadExample(t, "lab.yaml")
	for comp, drop := range map[string]func(o *Observation){
		"etcd on dc2-r01-s02":           func(o *Observation) { delete(o.Etcd, "dc2-r01-s02") },
		"kube-apiserver on dc2-r01-s01": func(o *Observation) { delete(o.APIServer, "dc2-r01-s01") },
		"kubelet on dc3-r01-s02":        func(o *Observation) { delete(o.Kubelet, "dc3-r01-s02") },
	} {
		obs := uniform(c, p, "v1.36.3", "v3.6.16", "dc1-r01-s01")
		drop(obs)
		_, _, err := BuildPlan(c, p, obs, Options{Kubernetes: v("v1.37.2"), Etcd: v("v3.6.16")})
		if err == nil || !strings.Contains(err.Error(), comp+" was not observed") {
			t.Errorf("%s dropped: %v", comp, err)
		}
	}
}

func TestLeaderPreference(t *testing.T) {
	c, _ := loadExample(t, "three-center.yaml")
	got := LeaderPreference(c, []string{"dc3-r01-s01", "dc2-r01-s01", "dc1-r02-s01", "dc2-r02-s01", "dc1-r01-s01"})
	want := []string{"dc1-r01-s01", "dc1-r02-s01", "dc2-r01-s01", "dc2-r02-s01", "dc3-r01-s01"}
	if !slices.Equal(got, want) {
		t.Errorf("LeaderPreference = %v, want %v", got, want)
	}
}
