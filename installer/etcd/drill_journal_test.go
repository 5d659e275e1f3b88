package etcd

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The drill journal (a real state directory in t.TempDir) and the drill's
// keys, against fakeCluster and fakePower.

func journalDir(t *testing.T) *state.Dir {
	t.Helper()
	d, err := state.Open(t.TempDir(), "drill")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// journalWatchPower reads the journal at every Off, as a killed drill
// would have left it.
type journalWatchPower struct {
	*fakePower
	dir *state.Dir

	mu    sync.Mutex
	atOff []*state.DrillJournal
}

func (p *journalWatchPower) Off(ctx context.Context, h inventory.Host) error {
	j, err := p.dir.DrillJournal()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.atOff = append(p.atOff, j)
	p.mu.Unlock()
	return p.fakePower.Off(ctx, h)
}

func TestDrillJournalWrittenBeforeTheFirstPowerOffAndRemovedAtTheEnd(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	dir := journalDir(t)
	pw := &journalWatchPower{fakePower: &fakePower{cl: cl}, dir: dir}
	o := drillOpts(c, p, pw)
	o.Journal = dir
	start := time.Now()
	rep, err := drill(context.Background(), o, cl)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if len(pw.atOff) != len(dc1All) {
		t.Fatalf("%d power-offs seen, want %d", len(pw.atOff), len(dc1All))
	}
	for _, j := range pw.atOff {
		if j == nil {
			t.Fatal("a server was powered off before the journal was written")
		}
		if j.Center != "dc1" || j.Method != MethodBMC || !slices.Equal(j.Servers, dc1All) || len(j.Restored) != 0 ||
			j.PID != os.Getpid() || j.Host == "" || j.Started.Before(start.Add(-time.Second)) || j.Keys != rep.Keys {
			t.Errorf("journal at power-off: %+v (keys of the drill %q)", j, rep.Keys)
		}
	}
	if _, err := os.Stat(dir.DrillJournalPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal still there after a drill that restored every server: %v", err)
	}
	if rep.Journal != dir.DrillJournalPath() || rep.JournalKept {
		t.Errorf("report: journal %q kept %v", rep.Journal, rep.JournalKept)
	}
}

func TestDrillRecordsEtcdOnlyMethod(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	dir := journalDir(t)
	var seen *state.DrillJournal
	pw := &fakePower{cl: cl, afterOff: func() { seen, _ = dir.DrillJournal() }}
	o := drillOpts(c, p, fakeEtcdOnlyPower{pw})
	o.Journal = dir
	if _, err := drill(context.Background(), o, cl); err != nil {
		t.Fatalf("drill: %v", err)
	}
	if seen == nil || seen.Method != MethodSSH || !slices.Equal(seen.Servers, []string{"dc1-s01"}) {
		t.Errorf("journal of an etcd-only drill: %+v", seen)
	}
}

// oneBlockedPower brings every server back except block, whose On waits
// until its context ends.
type oneBlockedPower struct {
	*fakePower
	block  string
	called chan string
}

func (p *oneBlockedPower) On(ctx context.Context, h inventory.Host) error {
	if h.Name == p.block {
		p.called <- h.Name
		<-ctx.Done()
		return ctx.Err()
	}
	if err := p.fakePower.On(ctx, h); err != nil {
		return err
	}
	p.called <- h.Name
	return nil
}

// A drill whose restore is abandoned keeps its journal with what came
// back; drill resume brings back the rest and removes it.
func TestDrillJournalKeptUntilResume(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	dir := journalDir(t)
	pw := &oneBlockedPower{fakePower: &fakePower{cl: cl}, block: "dc1-s02", called: make(chan string, 8)}
	abandon := make(chan struct{})
	go func() {
		<-pw.called
		<-pw.called
		close(abandon)
	}()
	o := drillOpts(c, p, pw)
	o.Journal, o.Abandon, o.RestoreTimeout = dir, abandon, time.Minute
	rep, err := drill(context.Background(), o, cl)
	if !errors.Is(err, ErrRestoreAbandoned) {
		t.Fatalf("drill error %v, want ErrRestoreAbandoned", err)
	}
	if !rep.JournalKept || !slices.Equal(rep.StillOff, []string{"dc1-s02"}) {
		t.Fatalf("journal kept %v, still off %v", rep.JournalKept, rep.StillOff)
	}
	j, err := dir.DrillJournal()
	if err != nil || j == nil {
		t.Fatalf("journal after an abandoned restore: %v, %v", j, err)
	}
	if !slices.Equal(j.Restored, []string{"dc1-s01"}) || !slices.Equal(j.Pending(), []string{"dc1-s02"}) {
		t.Errorf("journal restored %v pending %v, want dc1-s01 back and dc1-s02 pending", j.Restored, j.Pending())
	}

	// A new drill is refused while the journal is there.
	pw2 := &fakePower{cl: cl}
	o2 := drillOpts(c, p, pw2)
	o2.Journal = dir
	if _, err := drill(context.Background(), o2, cl); !errors.Is(err, ErrDrillJournal) ||
		!strings.Contains(err.Error(), dir.DrillJournalPath()) || !strings.Contains(err.Error(), "drill resume") ||
		!strings.Contains(err.Error(), "dc1-s02") {
		t.Errorf("a drill with a journal present: %v", err)
	}
	if offs, ons := pw2.calls(); len(offs)+len(ons) != 0 {
		t.Errorf("the refused drill powered off %v and on %v", offs, ons)
	}

	// Resume powers on only what the journal does not confirm.
	var methods []string
	rr, err := resume(context.Background(), resumeOpts(c, p, dir, pw2, &methods), cl)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if _, ons := pw2.calls(); !slices.Equal(ons, []string{"dc1-s02"}) {
		t.Errorf("resume powered on %v, want dc1-s02 only", ons)
	}
	if !slices.Equal(methods, []string{MethodBMC}) || !rr.JournalRemoved || !rr.Healthy {
		t.Errorf("methods %v, journal removed %v, healthy %v", methods, rr.JournalRemoved, rr.Healthy)
	}
	if j, err := dir.DrillJournal(); j != nil || err != nil {
		t.Errorf("journal after resume: %+v, %v", j, err)
	}
}

func resumeOpts(c *inventory.Cluster, p *inventory.Placement, dir *state.Dir, pw Power, methods *[]string) ResumeOptions {
	return ResumeOptions{Cluster: c, Placement: p, Journal: dir, RestoreTimeout: 3 * time.Second, HealthTimeout: 2 * time.Second,
		PowerFor: func(m string) (Power, error) {
			*methods = append(*methods, m)
			return pw, nil
		}}
}

// A drill killed (kill -9) after its power-off left the center down, its
// journal and its keys: resume powers the servers on through the journal's
// method, waits for health, deletes the keys and removes the journal.
func TestResumeAfterAKilledDrill(t *testing.T) {
	for _, method := range []string{MethodBMC, MethodSSH} {
		t.Run(method, func(t *testing.T) {
			c, p := drillFixture(t)
			cl := newFakeCluster(p)
			dir := journalDir(t)
			const keys = "/tricenter/drill/dc1/42/"
			for _, n := range dc1All {
				cl.setDown(n, true)
			}
			cl.kv[keys+"0000000001"] = "1"
			cl.kv["/other/key"] = "kept"
			killed := &state.DrillJournal{Center: "dc1", Method: method, Servers: dc1All, Restored: []string{},
				Keys: keys, PID: 999999, Host: "jump-1", Started: time.Now().Add(-time.Minute)}
			if err := dir.WriteDrillJournal(killed); err != nil {
				t.Fatal(err)
			}
			pw := &fakePower{cl: cl}
			var methods []string
			rr, err := resume(context.Background(), resumeOpts(c, p, dir, pw, &methods), cl)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if _, ons := pw.calls(); !slices.Equal(ons, dc1All) {
				t.Errorf("resume powered on %v, want %v", ons, dc1All)
			}
			if !slices.Equal(methods, []string{method}) {
				t.Errorf("power asked for %v, want the journal's %s", methods, method)
			}
			if rr.Journal == nil || !rr.Healthy || !rr.JournalRemoved || !rr.KeysDeleted || !slices.Equal(rr.PoweredBackOn, dc1All) {
				t.Errorf("report %+v", rr)
			}
			if j, err := dir.DrillJournal(); j != nil || err != nil {
				t.Errorf("journal after resume: %+v, %v", j, err)
			}
			if cl.keysUnder(keys) != 0 || cl.keysUnder("/other/") != 1 {
				t.Errorf("keys after resume: %v", cl.kv)
			}
		})
	}
}

func TestResumeWithNoJournalDoesNothing(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	pw := &fakePower{cl: cl}
	var methods []string
	rr, err := resume(context.Background(), resumeOpts(c, p, journalDir(t), pw, &methods), cl)
	if err != nil || rr == nil || rr.Journal != nil {
		t.Fatalf("resume without a journal: %+v, %v", rr, err)
	}
	if offs, ons := pw.calls(); len(offs)+len(ons)+len(methods) != 0 {
		t.Errorf("power used without a journal: off %v on %v methods %v", offs, ons, methods)
	}
}

// A resume whose power-on fails keeps the journal for the next try.
func TestResumeKeepsTheJournalWhenAServerStaysOff(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	dir := journalDir(t)
	if err := dir.WriteDrillJournal(&state.DrillJournal{Center: "dc1", Method: MethodBMC, Servers: dc1All}); err != nil {
		t.Fatal(err)
	}
	pw := &fakePower{cl: cl, onFailures: 1000}
	o := resumeOpts(c, p, dir, pw, new([]string))
	o.RestoreTimeout = 300 * time.Millisecond
	rr, err := resume(context.Background(), o, cl)
	if err == nil || !strings.Contains(err.Error(), "powering dc1-s01 back on") {
		t.Fatalf("resume error %v", err)
	}
	if rr.JournalRemoved || !slices.Equal(rr.StillOff, dc1All) {
		t.Errorf("journal removed %v, still off %v", rr.JournalRemoved, rr.StillOff)
	}
	if j, err := dir.DrillJournal(); j == nil || err != nil {
		t.Errorf("journal gone after a failed resume: %v", err)
	}
}

// One drill at a time per state directory: a second one (or a resume)
// is refused while the first holds the lock.
func TestDrillRefusedWhileAnotherRuns(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	dir := journalDir(t)
	unlock, err := dir.LockDrill()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	pw := &fakePower{cl: cl}
	o := drillOpts(c, p, pw)
	o.Journal = dir
	if _, err := drill(context.Background(), o, cl); !errors.Is(err, state.ErrDrillRunning) {
		t.Errorf("drill while another holds the lock: %v", err)
	}
	if _, err := resume(context.Background(), resumeOpts(c, p, dir, pw, new([]string)), cl); !errors.Is(err, state.ErrDrillRunning) {
		t.Errorf("resume while a drill holds the lock: %v", err)
	}
	// A running drill has a journal: the check says it runs, not that it
	// was left behind.
	if err := dir.WriteDrillJournal(&state.DrillJournal{Center: "dc1", Method: MethodBMC, Servers: dc1All}); err != nil {
		t.Fatal(err)
	}
	if err := CheckDrillJournal(dir); !errors.Is(err, state.ErrDrillRunning) || errors.Is(err, ErrDrillJournal) {
		t.Errorf("check while a drill runs: %v", err)
	}
	unlock()
	if err := CheckDrillJournal(dir); !errors.Is(err, ErrDrillJournal) {
		t.Errorf("check once it ended, leaving its journal: %v", err)
	}
	if offs, ons := pw.calls(); len(offs)+len(ons) != 0 {
		t.Errorf("power calls: off %v on %v", offs, ons)
	}
}

// putHookCluster calls onPut before the n-th write (from 1).
type putHookCluster struct {
	*fakeCluster
	mu    sync.Mutex
	n     int
	onPut func(n int) error
}

func (c *putHookCluster) Put(ctx context.Context, via inventory.Member, key, value string) error {
	c.mu.Lock()
	c.n++
	err := c.onPut(c.n)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.fakeCluster.Put(ctx, via, key, value)
}

// The journal cannot be written (a directory appeared where it goes once
// the writes started): nothing is powered off, and the keys written so
// far are deleted.
func TestDrillWithoutAJournalTouchesNothing(t *testing.T) {
	c, p := drillFixture(t)
	dir := journalDir(t)
	cl := &putHookCluster{fakeCluster: newFakeCluster(p), onPut: func(n int) error {
		if n == 5 {
			return os.Mkdir(dir.DrillJournalPath(), 0o700)
		}
		return nil
	}}
	pw := &fakePower{cl: cl.fakeCluster}
	o := drillOpts(c, p, pw)
	o.Journal = dir
	_, err := drill(context.Background(), o, cl)
	if err == nil || !strings.Contains(err.Error(), "nothing was taken down") {
		t.Fatalf("drill with an unwritable journal: %v", err)
	}
	if offs, _ := pw.calls(); len(offs) != 0 {
		t.Errorf("powered off %v without a journal", offs)
	}
	if n := cl.keysUnder("/tricenter/drill/"); n != 0 || len(cl.deleted) != 1 {
		t.Errorf("%d drill keys left, deletes %v", n, cl.deleted)
	}
}

// Interrupted before the power-off (the writes never got going): the
// keys written so far are deleted too.
func TestDrillKeysDeletedWhenInterruptedBeforeThePowerOff(t *testing.T) {
	c, p := drillFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := &putHookCluster{fakeCluster: newFakeCluster(p), onPut: func(n int) error {
		if n >= 5 {
			cancel()
			return errFakeNoLeader
		}
		return nil
	}}
	pw := &fakePower{cl: cl.fakeCluster}
	_, err := drill(ctx, drillOpts(c, p, pw), cl)
	if err == nil || !strings.Contains(err.Error(), "writes did not start") {
		t.Fatalf("drill interrupted before the power-off: %v", err)
	}
	if offs, ons := pw.calls(); len(offs)+len(ons) != 0 {
		t.Errorf("power calls: off %v on %v", offs, ons)
	}
	if len(cl.deleted) != 1 || cl.keysUnder("/tricenter/drill/") != 0 {
		t.Errorf("keys left: %v (deletes %v)", cl.kv, cl.deleted)
	}
}

// A failed delete is reported, not a failed drill.
func TestDrillKeysNotDeletedIsReported(t *testing.T) {
	c, p := drillFixture(t)
	cl := newFakeCluster(p)
	cl.delErr = errors.New("fake: etcdserver: request timed out")
	rep, err := drill(context.Background(), drillOpts(c, p, &fakePower{cl: cl}), cl)
	if err != nil {
		t.Fatalf("drill: %v", err)
	}
	if rep.KeysDeleted || !strings.Contains(rep.KeysError, "request timed out") || !strings.Contains(rep.KeysError, rep.Keys) {
		t.Errorf("keys deleted %v, error %q (prefix %q)", rep.KeysDeleted, rep.KeysError, rep.Keys)
	}
}
