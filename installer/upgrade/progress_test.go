package upgrade

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// memStore is where a fake run saves its journal: the bytes a real run
// writes to the state directory.
type memStore struct {
	mu    sync.Mutex
	b     []byte
	saves int
}

func (s *memStore) save(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = slices.Clone(b)
	s.saves++
	return nil
}

func (s *memStore) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.b)
}

// fakeCluster is a fake of the cluster for Execute (no server, no API):
// versions and Node states in memory. Run does what the engine's steps do
// to them (an etcd member or a control-plane server takes the step's
// version; a node is cordoned, takes it, is Ready and uncordoned), and can
// be told to fail a step or to be "killed" at a point of one: the journal
// bytes saved until then are kept as a kill -9 would leave them.
type fakeCluster struct {
	mu  sync.Mutex
	obs *Observation
	// ran are the steps Run was given, in order.
	ran []string
	// fail makes Run return this error for a step, changing nothing.
	fail map[string]error
	// lie makes Run report success for a step without doing it.
	lie map[string]bool
	// kill stops the run at a step: "before" (nothing done), "cordoned"
	// (a node cordoned, not upgraded) or "after" (done, not recorded).
	kill   map[string]string
	cancel context.CancelFunc
	store  *memStore
	// killed is the journal as the kill left it.
	killed []byte
}

func newFakeCluster(obs *Observation, store *memStore) *fakeCluster {
	return &fakeCluster{obs: obs, fail: map[string]error{}, lie: map[string]bool{}, kill: map[string]string{}, store: store}
}

func (f *fakeCluster) Observe(_ context.Context, hosts []string) (*Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := NewObservation()
	maps.Copy(o.Etcd, f.obs.Etcd)
	maps.Copy(o.APIServer, f.obs.APIServer)
	maps.Copy(o.Kubelet, f.obs.Kubelet)
	maps.Copy(o.Nodes, f.obs.Nodes)
	o.EtcdLeader = f.obs.EtcdLeader
	for _, h := range hosts {
		o.Hosts[h] = maps.Clone(f.obs.Hosts[h])
	}
	return o, nil
}

func (f *fakeCluster) setBin(host, bin, to string) {
	hp := f.obs.Hosts[host]
	if hp == nil {
		hp = HostProbe{}
		f.obs.Hosts[host] = hp
	}
	hp[bin] = Binary{Installed: v(to), Running: true}
}

func (f *fakeCluster) stop() {
	f.killed = f.store.bytes()
	f.cancel()
}

func (f *fakeCluster) Run(ctx context.Context, steps []Step, j *Journal) error {
	var errs []error
	for _, s := range steps {
		f.mu.Lock()
		f.ran = append(f.ran, s.ID)
		kill := f.kill[s.ID]
		err, lie := f.fail[s.ID], f.lie[s.ID]
		f.mu.Unlock()
		if kill == "before" {
			f.stop()
			return ctx.Err()
		}
		if err != nil {
			errs = append(errs, &StepError{Step: s, Err: err})
			continue
		}
		if lie {
			continue
		}
		f.mu.Lock()
		switch s.Component {
		case CompEtcd:
			f.obs.Etcd[s.Host] = v(s.To)
			f.setBin(s.Host, BinEtcd, s.To)
		case CompControlPlane:
			f.obs.APIServer[s.Host] = v(s.To)
			for _, b := range []string{BinAPIServer, BinControllerManager, BinScheduler} {
				f.setBin(s.Host, b, s.To)
			}
		case CompNode:
			n := f.obs.Nodes[s.Host]
			if !n.Unschedulable {
				f.mu.Unlock()
				if err := j.Cordoning(s.Host); err != nil {
					return err
				}
				f.mu.Lock()
			}
			n.Unschedulable = true
			f.obs.Nodes[s.Host] = n
			if kill == "cordoned" {
				f.mu.Unlock()
				f.stop()
				return ctx.Err()
			}
			f.obs.Kubelet[s.Host] = v(s.To)
			f.setBin(s.Host, BinKubelet, s.To)
			f.setBin(s.Host, BinKubeProxy, s.To)
			n.Ready = true
			if j.CordonedByUpgrade(s.Host) {
				n.Unschedulable = false
				f.obs.Nodes[s.Host] = n
				f.mu.Unlock()
				if err := j.Uncordoned(s.Host); err != nil {
					return err
				}
				f.mu.Lock()
			}
			f.obs.Nodes[s.Host] = n
		}
		f.mu.Unlock()
		if kill == "after" {
			f.stop()
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// labPlan is the lab's plan from v3.5.35 / v1.36.3 and the fake cluster
// running it.
func labPlan(t *testing.T) (*Plan, *fakeCluster, *memStore) {
	t.Helper()
	c, p := loadExample(t, "lab.yaml")
	obs := uniform(c, p, "v1.36.3", "v3.5.35", "dc1-r01-s01")
	plan, _, err := BuildPlan(c, p, obs, Options{Kubernetes: v("v1.37.2"), Etcd: v("v3.6.16")})
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{}
	return plan, newFakeCluster(obs, store), store
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func clock() func() time.Time { return func() time.Time { return t0 } }

func ids(p *Plan) []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, s.ID)
	}
	return out
}

func TestExecuteRunsThePlanInOrder(t *testing.T) {
	plan, f, store := labPlan(t)
	f.cancel = func() {}
	j := NewJournal(NewRecord(plan, t0), store.save, clock())
	out, err := Execute(context.Background(), plan, j, f)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.ran, ids(plan)) || !slices.Equal(out.Ran, ids(plan)) || len(out.AlreadyDone) != 0 {
		t.Errorf("ran %v (outcome %v, already done %v), want the plan's steps in order", f.ran, out.Ran, out.AlreadyDone)
	}
	rec, err := DecodeRecord(store.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec.Completed, ids(plan)) || len(rec.Cordoned) != 0 || rec.Paused != nil {
		t.Errorf("record: completed %v, cordoned %v, paused %v", rec.Completed, rec.Cordoned, rec.Paused)
	}
	obs, _ := f.Observe(context.Background(), nil)
	for h, n := range obs.Nodes {
		if n.Unschedulable || obs.Kubelet[h] != v("v1.37.2") {
			t.Errorf("node %s after the upgrade: %+v, kubelet %v", h, n, obs.Kubelet[h])
		}
	}
	// Running it again finds everything done and runs nothing.
	f.ran = nil
	out, err = Execute(context.Background(), plan, j, f)
	if err != nil || len(f.ran) != 0 || len(out.AlreadyDone) != len(plan.Steps) {
		t.Errorf("second run: %v, ran %v, already done %d of %d", err, f.ran, len(out.AlreadyDone), len(plan.Steps))
	}
}

// resume runs Execute from the journal bytes a kill left behind, against
// the same (fake) cluster.
func resume(t *testing.T, plan *Plan, f *fakeCluster, store *memStore) (*Outcome, *Record, error) {
	t.Helper()
	rec, err := DecodeRecord(f.killed)
	if err != nil {
		t.Fatalf("the journal a kill left: %v", err)
	}
	if rec.Digest != plan.Digest() {
		t.Fatalf("recorded plan %s, planned %s", rec.Digest, plan.Digest())
	}
	f.ran, f.kill = nil, map[string]string{}
	j := NewJournal(rec, store.save, clock())
	out, err := Execute(context.Background(), &rec.Plan, j, f)
	r := j.Record()
	return out, &r, err
}

func TestExecuteResumesAfterAKill(t *testing.T) {
	for _, tc := range []struct {
		name, step, where string
		// rerun says whether the killed step runs again on resume.
		rerun bool
	}{
		{"kill before an etcd member", "etcd/dc2-r01-s02/v3.6.16", "before", true},
		{"kill after an etcd member, before the record", "etcd/dc2-r01-s02/v3.6.16", "after", false},
		{"kill after a control-plane server, before the record", "control-plane/dc1-r01-s01/v1.37.2", "after", false},
		{"kill with a node cordoned", "node/dc2-r01-s01/v1.37.2", "cordoned", true},
		{"kill in a worker batch", "node/dc1-r02-s02/v1.37.2", "cordoned", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, f, store := labPlan(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f.cancel = cancel
			f.kill[tc.step] = tc.where
			j := NewJournal(NewRecord(plan, t0), store.save, clock())
			if _, err := Execute(ctx, plan, j, f); err == nil {
				t.Fatal("the killed run ended without an error")
			}
			killedAt := slices.Index(ids(plan), tc.step)
			out, rec, err := resume(t, plan, f, store)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			// Nothing before the killed step runs again; the killed step
			// does when it was not done; everything after it runs once.
			want := slices.Clone(ids(plan)[killedAt+1:])
			step, _ := plan.Step(tc.step)
			batch := plan.Batches()[step.Batch-1]
			var before []string
			for _, s := range batch {
				if s.Number < step.Number {
					before = append(before, s.ID)
				}
			}
			if tc.rerun {
				want = append([]string{tc.step}, want...)
			}
			if !slices.Equal(f.ran, want) {
				t.Errorf("resume ran %v\nwant %v", f.ran, want)
			}
			if !tc.rerun && !slices.Contains(out.AlreadyDone, tc.step) {
				t.Errorf("%s was done by the killed run but not seen done: %v", tc.step, out.AlreadyDone)
			}
			for _, id := range before {
				if slices.Contains(f.ran, id) {
					t.Errorf("%s (done before the kill, same batch) ran again", id)
				}
			}
			if !slices.Equal(rec.Completed, ids(plan)) || len(rec.Cordoned) != 0 || rec.Paused != nil {
				t.Errorf("record after resume: completed %d of %d, cordoned %v, paused %v", len(rec.Completed), len(plan.Steps), rec.Cordoned, rec.Paused)
			}
			obs, _ := f.Observe(context.Background(), nil)
			for h, n := range obs.Nodes {
				if n.Unschedulable {
					t.Errorf("node %s left cordoned", h)
				}
			}
		})
	}
}

// TestExecuteNeverTrustsTheRecordAlone: steps the record lists as
// completed run again when the cluster does not show them done (a member
// put back on the old release by hand).
func TestExecuteNeverTrustsTheRecordAlone(t *testing.T) {
	plan, f, store := labPlan(t)
	f.cancel = func() {}
	j := NewJournal(NewRecord(plan, t0), store.save, clock())
	if _, err := Execute(context.Background(), plan, j, f); err != nil {
		t.Fatal(err)
	}
	f.obs.Etcd["dc2-r01-s01"] = v("v3.5.35")
	f.obs.Hosts["dc2-r01-s01"][BinKubeProxy] = Binary{Installed: v("v1.37.2"), Running: true, Stale: true}
	f.ran = nil
	out, err := Execute(context.Background(), plan, j, f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etcd/dc2-r01-s01/v3.6.16", "node/dc2-r01-s01/v1.37.2"}
	if !slices.Equal(f.ran, want) || !slices.Equal(out.Ran, want) {
		t.Errorf("ran %v, want %v", f.ran, want)
	}
}

func TestExecutePausesWithHostAndReason(t *testing.T) {
	plan, f, store := labPlan(t)
	f.cancel = func() {}
	f.fail["node/dc1-r02-s02/v1.37.2"] = errors.New("draining dc1-r02-s02: pods still on the node after 5m0s: default/db-0 (PodDisruptionBudget)")
	j := NewJournal(NewRecord(plan, t0), store.save, clock())
	_, err := Execute(context.Background(), plan, j, f)
	var pe *PausedError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v, want a PausedError", err)
	}
	if pe.Pause.Host != "dc1-r02-s02" || pe.Pause.Step != "node/dc1-r02-s02/v1.37.2" || !strings.Contains(pe.Pause.Reason, "default/db-0") {
		t.Errorf("pause %+v", pe.Pause)
	}
	for _, want := range []string{"upgrade paused at step 18 (node/dc1-r02-s02/v1.37.2) on dc1-r02-s02: draining", "run tricenter upgrade again to resume"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	rec, err := DecodeRecord(store.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Paused == nil || rec.Paused.Host != "dc1-r02-s02" || !rec.Paused.At.Equal(t0) {
		t.Errorf("recorded pause %+v", rec.Paused)
	}
	// The other worker of the batch is done but its batch is not: the
	// record lists the steps of the batches before it.
	if want := ids(plan)[:16]; !slices.Equal(rec.Completed, want) {
		t.Errorf("completed %v, want %v", rec.Completed, want)
	}
	// Fixed: the rerun does the failed step only and clears the pause.
	delete(f.fail, "node/dc1-r02-s02/v1.37.2")
	f.ran = nil
	j = NewJournal(rec, store.save, clock())
	if _, err := Execute(context.Background(), &rec.Plan, j, f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.ran, []string{"node/dc1-r02-s02/v1.37.2"}) || j.Record().Paused != nil {
		t.Errorf("rerun ran %v, paused %v", f.ran, j.Record().Paused)
	}
}

// TestExecutePausesWhenAStepIsNotDone: a step that reports success but is
// not observed done pauses, saying what was seen.
func TestExecutePausesWhenAStepIsNotDone(t *testing.T) {
	plan, f, store := labPlan(t)
	f.cancel = func() {}
	f.lie["control-plane/dc2-r01-s01/v1.37.2"] = true
	j := NewJournal(NewRecord(plan, t0), store.save, clock())
	_, err := Execute(context.Background(), plan, j, f)
	var pe *PausedError
	if !errors.As(err, &pe) || pe.Pause.Host != "dc2-r01-s01" ||
		!strings.Contains(pe.Pause.Reason, "not done after the step: kube-apiserver on dc2-r01-s01 runs v1.36.3, not v1.37.2") {
		t.Fatalf("error %v", err)
	}
}

// TestExecuteKeepsAnOperatorsCordon: a node cordoned before the upgrade is
// upgraded and left cordoned; its step is done.
func TestExecuteKeepsAnOperatorsCordon(t *testing.T) {
	plan, f, store := labPlan(t)
	f.cancel = func() {}
	f.obs.Nodes["dc3-r01-s02"] = NodeState{Ready: true, Unschedulable: true}
	j := NewJournal(NewRecord(plan, t0), store.save, clock())
	if _, err := Execute(context.Background(), plan, j, f); err != nil {
		t.Fatal(err)
	}
	if n := f.obs.Nodes["dc3-r01-s02"]; !n.Unschedulable || f.obs.Kubelet["dc3-r01-s02"] != v("v1.37.2") {
		t.Errorf("operator-cordoned node after the upgrade: %+v, %v", n, f.obs.Kubelet["dc3-r01-s02"])
	}
}

func TestStatusesAndCheckProgress(t *testing.T) {
	plan, f, _ := labPlan(t)
	f.obs.Etcd["dc3-r01-s01"] = v("v3.6.16")
	obs, _ := f.Observe(context.Background(), nil)
	st := Statuses(plan, obs, nil)
	if st["etcd/dc3-r01-s01/v3.6.16"] != "done" || st["etcd/dc2-r01-s01/v3.6.16"] != "pending" {
		t.Errorf("statuses %v", st)
	}
	if err := CheckProgress(plan, obs); err != nil {
		t.Errorf("a cluster on the plan's way: %v", err)
	}
	obs.Etcd["dc2-r01-s01"] = v("v3.5.30")
	obs.Kubelet["dc1-r01-s02"] = v("v1.37.1")
	err := CheckProgress(plan, obs)
	for _, want := range []string{
		"etcd on dc2-r01-s01: runs v3.5.30, on no step of the upgrade in progress (v3.5.35 → v3.6.16): plan it anew with --replan",
		"kubelet on dc1-r01-s02: runs v1.37.1",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckProgress: %v, want %q", err, want)
		}
	}
}

func TestRecordRoundTripAndTampering(t *testing.T) {
	plan, _, _ := labPlan(t)
	rec := NewRecord(plan, t0)
	rec.Completed = []string{plan.Steps[0].ID}
	b, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeRecord(b)
	if err != nil || back.Digest != plan.Digest() || !slices.Equal(back.Completed, rec.Completed) || !back.Started.Equal(t0) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	edited := strings.Replace(string(b), `"to": "v3.6.16"`, `"to": "v3.6.15"`, 1)
	if _, err := DecodeRecord([]byte(edited)); err == nil || !strings.Contains(err.Error(), "changed by hand") {
		t.Errorf("edited plan: %v", err)
	}
	other := strings.Replace(string(b), `"format": 1`, `"format": 9`, 1)
	if _, err := DecodeRecord([]byte(other)); err == nil || !strings.Contains(err.Error(), "format 9") {
		t.Errorf("other format: %v", err)
	}
	if _, err := DecodeRecord([]byte("{")); err == nil {
		t.Error("broken JSON accepted")
	}
}

// reached: an upgrade step is done from To up to Target (a bridge hop is
// done once the member went past it); a downgrade only at To.
func TestReached(t *testing.T) {
	bridge := Step{From: "v3.5.21", To: "v3.5.35", Target: "v3.6.16"}
	down := Step{From: "v1.37.2", To: "v1.37.1", Target: "v1.37.1"}
	for _, tc := range []struct {
		s    Step
		v    string
		want bool
	}{
		{bridge, "v3.5.21", false}, {bridge, "v3.5.35", true}, {bridge, "v3.6.16", true}, {bridge, "v3.6.17", false},
		{down, "v1.37.2", false}, {down, "v1.37.1", true}, {down, "v1.37.0", false},
	} {
		if got := reached(inventory.MustVersion(tc.v), tc.s); got != tc.want {
			t.Errorf("reached(%s, %s → %s → %s) = %v", tc.v, tc.s.From, tc.s.To, tc.s.Target, got)
		}
	}
}
