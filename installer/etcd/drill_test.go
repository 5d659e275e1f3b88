package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The drill's logic against fakes: fakeCluster stands in for etcd (an
// in-memory key space whose writes stall while a member is being lost)
// and fakePower for the BMCs. Real peers: drill_bmc_test.go, the SSH path
// and the drill command in cmd/tricenter.

func drillFixture(t *testing.T) (*inventory.Cluster, *inventory.Placement) {
	t.Helper()
	c, _, err := inventory.Load("testdata/drill-inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

var errFakeNoLeader = errors.New("fake: etcdserver: no leader")

type fakeCluster struct {
	plan []inventory.Member

	mu   sync.Mutex
	kv   map[string]string
	down map[string]bool
	// Writes fail until stallUntil. Losing a member stalls them for
	// stallOnLoss; powering one back on for stallOnRejoin.
	stallUntil    time.Time
	stallOnLoss   time.Duration
	stallOnRejoin time.Duration
	// stallForever: writes never succeed once a member is lost.
	stallForever bool
	lostOnce     bool
	getErr       error
	neverHealthy bool
	dropKeys     int // acknowledged writes silently dropped
	// writesVia counts the writes each member received.
	writesVia map[string]int
	// delErr fails DeletePrefix; deleted lists the prefixes deleted.
	delErr  error
	deleted []string
	// leader is the leading member's ID (index in plan + 1): it stays
	// until it goes down, then the first member up leads. moves lists the
	// MoveLeader calls ("from→to"); moveErr fails them.
	leader  uint64
	moves   []string
	moveErr error
}

func newFakeCluster(p *inventory.Placement) *fakeCluster {
	return &fakeCluster{plan: p.Etcd.Members, kv: map[string]string{}, down: map[string]bool{}, writesVia: map[string]int{}}
}

func (f *fakeCluster) isMember(name string) bool {
	return slices.ContainsFunc(f.plan, func(m inventory.Member) bool { return m.Name == name })
}

func (f *fakeCluster) setDown(name string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[name] = down
	if !f.isMember(name) {
		return
	}
	if down {
		f.lostOnce = true
		f.stallUntil = time.Now().Add(f.stallOnLoss)
	} else {
		f.stallUntil = time.Now().Add(f.stallOnRejoin)
	}
}

func (f *fakeCluster) Put(ctx context.Context, via inventory.Member, key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writesVia[via.Name]++
	if f.down[via.Name] {
		return fmt.Errorf("fake: %s is down", via.Name)
	}
	if time.Now().Before(f.stallUntil) || (f.stallForever && f.lostOnce) {
		return errFakeNoLeader
	}
	if f.dropKeys > 0 && f.lostOnce {
		f.dropKeys--
		return nil
	}
	f.kv[key] = value
	return nil
}

func (f *fakeCluster) GetPrefix(ctx context.Context, prefix string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	out := map[string]string{}
	for k, v := range f.kv {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}

func (f *fakeCluster) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.delErr != nil {
		return 0, f.delErr
	}
	var n int64
	for k := range f.kv {
		if strings.HasPrefix(k, prefix) {
			delete(f.kv, k)
			n++
		}
	}
	f.deleted = append(f.deleted, prefix)
	return n, nil
}

// keysUnder counts the keys under prefix.
func (f *fakeCluster) keysUnder(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k := range f.kv {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeCluster) health() *ClusterHealth {
	h := &ClusterHealth{PerCenter: map[string]int{}}
	if f.leader == 0 || f.down[f.plan[f.leader-1].Name] {
		f.leader = 0
		for i, m := range f.plan {
			if !f.down[m.Name] {
				f.leader = uint64(i + 1)
				break
			}
		}
	}
	h.Leader = f.leader
	for i, m := range f.plan {
		h.Members = append(h.Members, Member{ID: uint64(i + 1), Name: m.Name})
		if f.down[m.Name] {
			h.Problems = append(h.Problems, m.Name+" is unhealthy: fake: down")
			h.Endpoints = append(h.Endpoints, EndpointStatus{Endpoint: ClientURL(m.Address), Error: "fake: down"})
			continue
		}
		h.Endpoints = append(h.Endpoints, EndpointStatus{Endpoint: ClientURL(m.Address), Healthy: true, MemberID: uint64(i + 1), Leader: f.leader})
	}
	if f.neverHealthy {
		h.Problems = append(h.Problems, "fake: never healthy")
	}
	return h
}

func (f *fakeCluster) Health(ctx context.Context, plan []inventory.Member) *ClusterHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health()
}

func (f *fakeCluster) WaitHealthy(ctx context.Context, plan []inventory.Member, timeout time.Duration) (*ClusterHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		f.mu.Lock()
		h := f.health()
		f.mu.Unlock()
		if h.OK() {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("%w: %v", ErrUnhealthy, h.Problems)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// MoveLeader hands leadership to member to, through the leader only.
func (f *fakeCluster) MoveLeader(ctx context.Context, leaderEndpoint string, to uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.moveErr != nil {
		return f.moveErr
	}
	if f.leader == 0 || leaderEndpoint != ClientURL(f.plan[f.leader-1].Address) {
		return fmt.Errorf("fake: %s is not the leader", leaderEndpoint)
	}
	if to == 0 || int(to) > len(f.plan) || f.down[f.plan[to-1].Name] {
		return fmt.Errorf("fake: member %x cannot lead", to)
	}
	f.moves = append(f.moves, f.plan[f.leader-1].Name+"→"+f.plan[to-1].Name)
	f.leader = to
	return nil
}

// fakePower records the calls and tells fakeCluster which servers are down.
type fakePower struct {
	cl       *fakeCluster
	offErr   map[string]error
	offDelay map[string]time.Duration
	// onFailures makes the first n On calls of each server fail.
	onFailures int
	// onBlock makes On wait until its context ends.
	onBlock  bool
	afterOff func()
	onCalled chan string

	mu       sync.Mutex
	offs     []string
	ons      []string
	onCtxErr []error
	onFailed map[string]int
}

func (p *fakePower) Describe() string { return "fake power" }

func (p *fakePower) Off(ctx context.Context, h inventory.Host) error {
	time.Sleep(p.offDelay[h.Name])
	p.mu.Lock()
	p.offs = append(p.offs, h.Name)
	p.mu.Unlock()
	if p.afterOff != nil {
		defer p.afterOff()
	}
	if err := p.offErr[h.Name]; err != nil {
		return err
	}
	p.cl.setDown(h.Name, true)
	return nil
}

func (p *fakePower) On(ctx context.Context, h inventory.Host) error {
	p.mu.Lock()
	p.ons = append(p.ons, h.Name)
	p.onCtxErr = append(p.onCtxErr, ctx.Err())
	if p.onFailed == nil {
		p.onFailed = map[string]int{}
	}
	fail := p.onFailed[h.Name] < p.onFailures
	p.onFailed[h.Name]++
	p.mu.Unlock()
	if p.onCalled != nil {
		p.onCalled <- h.Name
	}
	if p.onBlock {
		<-ctx.Done()
		return ctx.Err()
	}
	if fail {
		return errors.New("fake: BMC busy")
	}
	p.cl.setDown(h.Name, false)
	return nil
}

func (p *fakePower) calls() (offs, ons []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	offs, ons = slices.Clone(p.offs), slices.Clone(p.ons)
	slices.Sort(offs)
	slices.Sort(ons)
	return offs, ons
}

// fakeEtcdOnlyPower is fakePower claiming, like SSHPower, that it only
// stops etcd.
type fakeEtcdOnlyPower struct{ *fakePower }

func (fakeEtcdOnlyPower) StopsOnlyEtcd() bool { return true }

func drillOpts(c *inventory.Cluster, p *inventory.Placement, pw Power) DrillOptions {
	return DrillOptions{Cluster: c, Placement: p, Center: "dc1", Power: pw, Hold: 20 * time.Millisecond,
		WriteTimeout: 100 * time.Millisecond, ResumeTimeout: 2 * time.Second, RestoreTimeout: 3 * time.Second,
		HealthTimeout: 2 * time.Second, ProbeInterval: 10 * time.Millisecond}
}

var dc1All = []string{"dc1-s01", "dc1-s02"}

func TestDrillPowersOffEveryServerOfTheCenter(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	cl.stallOnLoss = 50 * time.Millisecond
	pw := &fakePower{cl: cl}
	rep, err := drill(context.Background(), drillOpts(c, p, pw), cl)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	offs, ons := pw.calls()
	if !slices.Equal(offs, dc1All) || !slices.Equal(ons, dc1All) {
		t.Errorf("powered off %v and on %v, want every server of dc1 %v", offs, ons, dc1All)
	}
	if !rep.PowerCut || rep.Note != "" {
		t.Errorf("a power cut reported PowerCut=%v note %q", rep.PowerCut, rep.Note)
	}
	if !rep.Restored || !rep.Healthy || !slices.Equal(rep.PoweredBackOn, dc1All) || len(rep.StillOff) != 0 {
		t.Errorf("restore: restored=%v healthy=%v poweredBackOn=%v stillOff=%v", rep.Restored, rep.Healthy, rep.PoweredBackOn, rep.StillOff)
	}
	if !rep.Verified || rep.Lost != 0 || rep.NotVerified != "" || rep.Acknowledged < 20 {
		t.Errorf("verification: verified=%v lost=%d notVerified=%q acked=%d", rep.Verified, rep.Lost, rep.NotVerified, rep.Acknowledged)
	}
	for _, s := range rep.Servers {
		if s.OffAt.IsZero() || !s.PoweredOn || s.EtcdMember != (s.Name == "dc1-s01") {
			t.Errorf("server record %+v", s)
		}
	}
}

// Writers keep to the members outside the center, Writers of them each,
// so a powered-off member never holds up the measured write gap.
func TestDrillWritesThroughEverySurvivor(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	o := drillOpts(c, p, &fakePower{cl: cl})
	o.Writers = 2
	if _, err := drill(context.Background(), o, cl); err != nil {
		t.Fatalf("drill: %v", err)
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, m := range p.Etcd.Members {
		n := cl.writesVia[m.Name]
		switch {
		case m.Center == o.Center && n != 0:
			t.Errorf("%d writes went through %s, a member of the lost center %s", n, m.Name, o.Center)
		case m.Center != o.Center && n == 0:
			t.Errorf("no write went through %s (center %s)", m.Name, m.Center)
		}
	}
}

func TestDrillEtcdOnlyPowerSaysItIsNoPowerCut(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	pw := &fakePower{cl: cl}
	rep, err := drill(context.Background(), drillOpts(c, p, fakeEtcdOnlyPower{pw}), cl)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	offs, _ := pw.calls()
	if !slices.Equal(offs, []string{"dc1-s01"}) {
		t.Errorf("an etcd-only power stopped %v, want only the member dc1-s01", offs)
	}
	if rep.PowerCut || !strings.Contains(rep.Note, "not a power cut") {
		t.Errorf("PowerCut=%v note %q", rep.PowerCut, rep.Note)
	}
}

// The restore must run on every path once something was powered off.
func TestDrillRestoresOnEveryPath(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(cl *fakeCluster, pw *fakePower, cancel context.CancelFunc)
		wantErr string
	}{
		{"a power-off fails", func(cl *fakeCluster, pw *fakePower, _ context.CancelFunc) {
			pw.offErr = map[string]error{"dc1-s02": errors.New("fake: BMC timeout")}
		}, "taking dc1-s02 down: fake: BMC timeout"},
		{"writes never resume", func(cl *fakeCluster, pw *fakePower, _ context.CancelFunc) {
			cl.stallForever = true
		}, "writes did not resume"},
		{"cancelled during the outage (Ctrl-C)", func(cl *fakeCluster, pw *fakePower, cancel context.CancelFunc) {
			pw.afterOff = cancel
		}, "context canceled"},
		{"power-on fails once (BMC busy)", func(cl *fakeCluster, pw *fakePower, _ context.CancelFunc) {
			pw.onFailures = 1
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p := drillFixture(t)
			cl := newFakeCluster(p)
			pw := &fakePower{cl: cl}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tc.setup(cl, pw, cancel)
			if tc.name == "writes never resume" {
				// Writes resume only once the center is back.
				cl.stallForever = false
				cl.stallOnLoss = time.Hour
			}
			o := drillOpts(c, p, pw)
			o.ResumeTimeout = 300 * time.Millisecond
			rep, err := drill(ctx, o, cl)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("drill: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("drill error %v, want one containing %q", err, tc.wantErr)
			}
			_, ons := pw.calls()
			ons = slices.Compact(ons)
			if !slices.Equal(ons, dc1All) {
				t.Errorf("powered back on %v, want every server of dc1 %v", ons, dc1All)
			}
			pw.mu.Lock()
			for i, e := range pw.onCtxErr {
				if e != nil {
					t.Errorf("power-on %s ran with a dead context: %v", pw.ons[i], e)
				}
			}
			pw.mu.Unlock()
			if rep == nil || !rep.Restored || !rep.Healthy || !slices.Equal(rep.PoweredBackOn, dc1All) || len(rep.StillOff) != 0 {
				t.Fatalf("report after restore: %+v", rep)
			}
			if !rep.Verified {
				t.Errorf("writes not verified: %s", rep.NotVerified)
			}
			if n := cl.keysUnder("/tricenter/drill/"); n != 0 || !rep.KeysDeleted || !strings.HasPrefix(rep.Keys, "/tricenter/drill/dc1/") {
				t.Errorf("%d drill keys left under /tricenter/drill/ (keys %q, deleted %v: %s)", n, rep.Keys, rep.KeysDeleted, rep.KeysError)
			}
		})
	}
}

// Writes that stall until the center is back: the drill fails, restores
// and then writes resume. With stallForever they never do, and the
// read-back still happens.
func TestDrillWritesNeverResumeStillRestoresAndVerifies(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	cl.stallForever = true
	pw := &fakePower{cl: cl}
	o := drillOpts(c, p, pw)
	o.ResumeTimeout = 200 * time.Millisecond
	rep, err := drill(context.Background(), o, cl)
	if !errors.Is(err, ErrDrillFailed) || !strings.Contains(err.Error(), "writes did not resume") {
		t.Fatalf("drill error %v", err)
	}
	if !rep.Restored || !slices.Equal(rep.PoweredBackOn, dc1All) {
		t.Errorf("not restored: %+v", rep)
	}
	if !rep.Verified || rep.Lost != 0 {
		t.Errorf("verified=%v lost=%d (%s)", rep.Verified, rep.Lost, rep.NotVerified)
	}
}

func TestDrillAbandonedRestoreListsServersStillOff(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	pw := &fakePower{cl: cl, onBlock: true, onCalled: make(chan string, 8)}
	abandon := make(chan struct{})
	o := drillOpts(c, p, pw)
	o.RestoreTimeout = time.Minute
	o.Abandon = abandon
	go func() {
		<-pw.onCalled
		<-pw.onCalled
		close(abandon)
	}()
	start := time.Now()
	rep, err := drill(context.Background(), o, cl)
	if !errors.Is(err, ErrRestoreAbandoned) {
		t.Fatalf("drill error %v, want ErrRestoreAbandoned", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("abandoning took %v", took)
	}
	if !rep.RestoreAbandoned || !slices.Equal(rep.StillOff, dc1All) || len(rep.PoweredBackOn) != 0 || rep.Healthy {
		t.Errorf("abandoned=%v stillOff=%v poweredBackOn=%v healthy=%v", rep.RestoreAbandoned, rep.StillOff, rep.PoweredBackOn, rep.Healthy)
	}
	if rep.Verified || rep.NotVerified == "" {
		t.Errorf("verified=%v notVerified=%q after an abandoned restore", rep.Verified, rep.NotVerified)
	}
}

func TestDrillNeverReportsWhatItDidNotCheck(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	pw := &fakePower{cl: cl}
	// Writes succeed until the loss; the read-back fails.
	cl.getErr = errors.New("fake: read-back timed out")
	rep, err := drill(context.Background(), drillOpts(c, p, pw), cl)
	if !errors.Is(err, ErrDrillFailed) || !strings.Contains(err.Error(), "not verified") {
		t.Fatalf("drill error %v, want a failure naming the missing verification", err)
	}
	if rep.Verified || !strings.Contains(rep.NotVerified, "fake: read-back timed out") {
		t.Errorf("verified=%v notVerified=%q", rep.Verified, rep.NotVerified)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["lost"] != nil || m["verified"] != false || !strings.Contains(fmt.Sprint(m["notVerified"]), "read-back timed out") {
		t.Errorf("json says lost=%v verified=%v notVerified=%v", m["lost"], m["verified"], m["notVerified"])
	}

	// And lost writes are counted when the read-back works.
	cl2 := newFakeCluster(p)
	cl2.dropKeys = 3
	rep, err = drill(context.Background(), drillOpts(c, p, &fakePower{cl: cl2}), cl2)
	if !errors.Is(err, ErrDrillFailed) || !rep.Verified || rep.Lost != 3 {
		t.Fatalf("dropped writes: err %v verified=%v lost=%d", err, rep.Verified, rep.Lost)
	}
	b, _ = json.Marshal(rep)
	if !strings.Contains(string(b), `"lost":3`) {
		t.Errorf("json does not say lost 3: %s", b)
	}
}

// ResumedAfter is measured from the first server confirmed down, not from
// the end of the slowest power-off.
func TestDrillTimesFromTheLoss(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	cl.stallOnLoss = 300 * time.Millisecond
	cl.stallOnRejoin = 400 * time.Millisecond
	pw := &fakePower{cl: cl, offDelay: map[string]time.Duration{"dc1-s02": 500 * time.Millisecond}}
	o := drillOpts(c, p, pw)
	o.Hold = 500 * time.Millisecond
	rep, err := drill(context.Background(), o, cl)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if rep.ResumedAfter < 250*time.Millisecond {
		t.Errorf("resumed after %v, the writes stalled 300 ms from the loss", rep.ResumedAfter)
	}
	if rep.PowerOffTook < 500*time.Millisecond {
		t.Errorf("power-off took %v, the slowest took 500 ms", rep.PowerOffTook)
	}
	var first time.Time
	for _, s := range rep.Servers {
		if s.Name == "dc1-s01" {
			first = s.OffAt
		}
	}
	if !rep.LossAt.Equal(first) {
		t.Errorf("loss at %v, want dc1-s01's off time %v", rep.LossAt, first)
	}
	if rep.WriteGap < 250*time.Millisecond {
		t.Errorf("write gap %v during a 300 ms stall", rep.WriteGap)
	}
	if rep.RejoinWriteGap < 350*time.Millisecond {
		t.Errorf("rejoin write gap %v, the writes stalled 400 ms after power-on", rep.RejoinWriteGap)
	}
}

type fakeProbe struct {
	cl    *fakeCluster
	mu    sync.Mutex
	calls int
}

func (p *fakeProbe) Name() string { return "fake apiserver" }
func (p *fakeProbe) Check(ctx context.Context) error {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	p.cl.mu.Lock()
	defer p.cl.mu.Unlock()
	if time.Now().Before(p.cl.stallUntil) {
		return errors.New("fake: apiserver unavailable")
	}
	return nil
}

func TestDrillProbesReportTheirDisturbance(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	cl.stallOnLoss = 200 * time.Millisecond
	probe := &fakeProbe{cl: cl}
	o := drillOpts(c, p, &fakePower{cl: cl})
	o.Probes = []Probe{probe}
	rep, err := drill(context.Background(), o, cl)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if len(rep.Probes) != 1 {
		t.Fatalf("probes %+v", rep.Probes)
	}
	pr := rep.Probes[0]
	probe.mu.Lock()
	calls := probe.calls
	probe.mu.Unlock()
	if pr.Name != "fake apiserver" || pr.Attempts < 5 || pr.Failures < 1 || pr.Failures >= pr.Attempts || pr.Attempts > calls {
		t.Errorf("probe report %+v (%d calls)", pr, calls)
	}
	if pr.MaxGap < 150*time.Millisecond || !strings.Contains(pr.LastError, "unavailable") {
		t.Errorf("probe max gap %v last error %q during a 200 ms outage", pr.MaxGap, pr.LastError)
	}
	if len(pr.Errors) != 1 || pr.Errors[0].Count != pr.Failures || pr.Errors[0].Error != pr.LastError ||
		pr.Errors[0].First.Before(rep.LossAt) || pr.Errors[0].Last.Before(pr.Errors[0].First) {
		t.Errorf("probe errors %+v (failures %d, loss at %v)", pr.Errors, pr.Failures, rep.LossAt)
	}
	probe.mu.Lock()
	after := probe.calls
	probe.mu.Unlock()
	time.Sleep(50 * time.Millisecond) // checking that nothing runs any more, not waiting for something
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if probe.calls != after {
		t.Errorf("probe still called after the drill returned")
	}
}

// A /readyz answer is shortened to its failing checks, any other error to
// its first line.
func TestProbeErrorKinds(t *testing.T) {
	var r ProbeReport
	at := time.Unix(100, 0)
	ready := errors.New("HTTP 500: [+]ping ok\n[+]etcd ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nreadyz check failed")
	r.record(ready, at)
	r.record(errors.New("Get \"https://vip/readyz\": context deadline exceeded\nmore"), at.Add(time.Second))
	r.record(ready, at.Add(2*time.Second))
	want := []ProbeError{
		{Error: "HTTP 500: [-]poststarthook/rbac/bootstrap-roles failed: reason withheld", Count: 2, First: at, Last: at.Add(2 * time.Second)},
		{Error: `Get "https://vip/readyz": context deadline exceeded`, Count: 1, First: at.Add(time.Second), Last: at.Add(time.Second)},
	}
	if !slices.Equal(r.Errors, want) {
		t.Errorf("errors %+v, want %+v", r.Errors, want)
	}
}

func TestDrillNoRestoreWhenNothingWasTouched(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	cl.neverHealthy = true
	pw := &fakePower{cl: cl}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rep, err := drill(ctx, drillOpts(c, p, pw), cl)
	if err == nil || rep != nil {
		t.Fatalf("drill on an unhealthy cluster: %v, %+v", err, rep)
	}
	if offs, ons := pw.calls(); len(offs)+len(ons) != 0 {
		t.Errorf("power calls on an unhealthy cluster: off %v on %v", offs, ons)
	}
}

func TestMaxGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name     string
		ts       []int
		from, to int
		want     time.Duration
	}{
		{"none", nil, 0, 100, 100 * time.Millisecond},
		{"middle", []int{10, 20, 90}, 0, 100, 70 * time.Millisecond},
		{"edges", []int{50}, 0, 100, 50 * time.Millisecond},
		{"outside ignored", []int{-50, 40, 150}, 0, 100, 60 * time.Millisecond},
		{"unsorted", []int{90, 10, 30}, 0, 100, 60 * time.Millisecond},
	} {
		var ts []time.Time
		for _, x := range tc.ts {
			ts = append(ts, at(x))
		}
		if got := maxGap(ts, at(tc.from), at(tc.to)); got != tc.want {
			t.Errorf("%s: maxGap = %v, want %v", tc.name, got, tc.want)
		}
	}
}
