package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The membership phases against real etcd: the pinned server
// (.cache/artifacts/etcd), one process per server of
// testdata/membership-inventory.yaml in its own network namespace, mutual
// TLS, the etcd API through Client. Only the host side of a change (write
// the bootstrap file and start the systemd unit over SSH; stop and wipe)
// is done by memberProcs, which starts and stops the processes itself.

// memberProcs runs the etcd processes of the test's servers; it is the
// run's hostOps.
type memberProcs struct {
	bin string
	dir string
	pki *pki.Etcd
	set Settings
	ns  map[string]*labnet.NS

	mu    sync.Mutex
	procs map[string]*memberProc
	// joins records, per joining member, how many voting members the
	// cluster had when it started.
	joins []string
	wipes []string
	cli   *Client
}

type memberProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

func (mp *memberProcs) start(m inventory.Member, initial []InitialMember, existing bool) error {
	md := filepath.Join(mp.dir, m.Name)
	if err := os.MkdirAll(md, 0o700); err != nil {
		return err
	}
	// The TLS files and settings as install writes them, PKIDir moved
	// into md.
	files, err := PKIFiles(mp.pki, m.Name)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(md, filepath.Base(f.Path)), f.Data, f.Mode); err != nil {
			return err
		}
	}
	var tlsEnv []string
	for _, l := range strings.Split(string(RenderEnv(mp.set, m)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		if strings.HasPrefix(k, "ETCD_") && (strings.Contains(k, "CERT") || strings.Contains(k, "KEY") || strings.Contains(k, "CA_FILE")) {
			tlsEnv = append(tlsEnv, k+"="+strings.ReplaceAll(v, PKIDir, md))
		}
	}
	var ic []string
	for _, x := range initial {
		ic = append(ic, x.Name+"="+x.PeerURL)
	}
	state := "new"
	if existing {
		state = "existing"
	}
	args := []string{
		"--name", m.Name, "--data-dir", filepath.Join(md, "data"),
		"--listen-client-urls", ClientURL(m.Address), "--advertise-client-urls", ClientURL(m.Address),
		"--listen-peer-urls", PeerURL(m.Address), "--initial-advertise-peer-urls", PeerURL(m.Address),
		"--initial-cluster", strings.Join(ic, ","), "--initial-cluster-state", state, "--initial-cluster-token", mp.set.Token(),
		"--heartbeat-interval", fmt.Sprint(mp.set.Timers.HeartbeatMs), "--election-timeout", fmt.Sprint(mp.set.Timers.ElectionTimeoutMs),
		"--strict-reconfig-check", "--log-level", "warn",
	}
	p := &memberProc{done: make(chan struct{}), log: &bytes.Buffer{}}
	p.cmd = mp.ns[m.Name].Command(context.Background(), mp.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = append(os.Environ(), tlsEnv...)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd %s: %w", m.Name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	mp.mu.Lock()
	mp.procs[m.Name] = p
	mp.mu.Unlock()
	return nil
}

func (mp *memberProcs) stop(name string) {
	mp.mu.Lock()
	p := mp.procs[name]
	delete(mp.procs, name)
	mp.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (mp *memberProcs) join(ctx context.Context, h *phase.Host, m inventory.Member, initial []InitialMember) error {
	if h.DryRun() {
		return nil // sshOps' writes and unit actions record themselves
	}
	ms, err := mp.cli.Members(ctx)
	if err != nil {
		return err
	}
	voting := 0
	for _, x := range ms {
		if !x.IsLearner {
			voting++
		}
	}
	mp.mu.Lock()
	mp.joins = append(mp.joins, fmt.Sprintf("%s@%d", m.Name, voting))
	mp.mu.Unlock()
	return mp.start(m, initial, true)
}

func (mp *memberProcs) wipe(ctx context.Context, h *phase.Host) error {
	if h.DryRun() {
		return nil
	}
	mp.stop(h.Name)
	mp.mu.Lock()
	mp.wipes = append(mp.wipes, h.Name)
	mp.mu.Unlock()
	return os.RemoveAll(filepath.Join(mp.dir, h.Name, "data"))
}

func TestMembershipPhasesAgainstEtcd(t *testing.T) {
	testenv.Need(t, labnet.Available())
	bin, err := filepath.Abs("../../.cache/artifacts/" + artifacts.DefaultName("etcd"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.RequireFile(t, "run make artifacts (builds the pinned etcd)", bin)
	c, lines, err := inventory.Load("testdata/membership-inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	three := []string{"dc1-s01", "dc2-s01", "dc3-s01"}
	five, err := inventory.Place(c, &inventory.Prior{EtcdMembers: three})
	if err != nil {
		t.Fatal(err)
	}
	var all []pki.EtcdMember
	for _, m := range five.Etcd.Members {
		all = append(all, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	dir := t.TempDir()
	certs, err := (&pki.Store{Dir: filepath.Join(dir, "pki")}).EnsureEtcd(all)
	if err != nil {
		t.Fatal(err)
	}
	n, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("removing the test network: %v", err)
		}
	})
	br, err := n.Bridge(netip.MustParsePrefix("198.19.244.254/24"))
	if err != nil {
		t.Fatal(err)
	}
	mp := &memberProcs{bin: bin, dir: dir, pki: certs,
		set: Settings{ClusterName: c.Metadata.Name, Timers: five.Etcd.Timers, SharedPeerCA: certs.SharedPeerCA}, ns: map[string]*labnet.NS{}, procs: map[string]*memberProc{}}
	for _, m := range five.Etcd.Members {
		ns, err := n.Namespace("etcd")
		if err != nil {
			t.Fatal(err)
		}
		if err := ns.Attach(br, "eth0", netip.PrefixFrom(netip.MustParseAddr(m.Address), 24)); err != nil {
			t.Fatal(err)
		}
		mp.ns[m.Name] = ns
	}
	t.Cleanup(func() {
		for _, m := range five.Etcd.Members {
			mp.mu.Lock()
			p := mp.procs[m.Name]
			mp.mu.Unlock()
			if p != nil && t.Failed() {
				t.Logf("etcd %s log (tail):\n%s", m.Name, tailOf(p.log.String(), 1500))
			}
			mp.stop(m.Name)
		}
	})
	var initial []InitialMember
	for _, m := range five.Etcd.Members {
		if slices.Contains(three, m.Name) {
			initial = append(initial, InitialMember{m.Name, PeerURL(m.Address)})
		}
	}
	for _, m := range five.Etcd.Members {
		if slices.Contains(three, m.Name) {
			if err := mp.start(m, initial, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	tc, err := TLSConfig(certs)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, m := range five.Etcd.Members {
		eps = append(eps, ClientURL(m.Address))
	}
	mp.cli, err = NewClient(eps, tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var startPlan []inventory.Member
	for _, m := range five.Etcd.Members {
		if slices.Contains(three, m.Name) {
			startPlan = append(startPlan, m)
		}
	}
	if _, err := mp.cli.WaitHealthy(ctx, startPlan, 30*time.Second); err != nil {
		t.Fatalf("the test's three members did not become healthy: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// etcd takes one learner at a time: what MaxLearners says. (Addresses
	// no plan uses: etcd derives a member's ID from its peer URL and the
	// second it was added, so re-adding a removed URL at once collides.)
	l, _, err := mp.cli.AddLearner(ctx, PeerURL("198.19.244.200"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := mp.cli.AddLearner(ctx, PeerURL("198.19.244.201")); err == nil || !strings.Contains(err.Error(), "too many learner members") {
		t.Fatalf("a second learner: err = %v, want etcd's refusal (MaxLearners = %d)", err, MaxLearners)
	}
	if err := mp.cli.Remove(ctx, l.ID); err != nil {
		t.Fatal(err)
	}

	// newRun is what Apply sets up, with the processes as the host side
	// and the three members' facts as preflight would find them.
	newRun := func(pl *inventory.Placement, accept bool) (*run, *phase.Manager) {
		m := &phase.Manager{Cluster: c, Logger: log}
		t.Cleanup(func() { m.Close() })
		r := &run{o: Options{Cluster: c, Placement: pl, PKI: certs, Manager: m, Logger: log, HealthTimeout: 30 * time.Second,
			AcceptTransientRisk: accept},
			log: log, set: mp.set, plan: pl.Etcd.Members, byName: map[string]inventory.Member{}, cli: mp.cli,
			facts: map[string]*Facts{}, changed: map[string]bool{}, res: &Result{}, healthy: map[uint64]bool{}, ops: mp}
		for _, x := range pl.Etcd.Members {
			r.byName[x.Name] = x
		}
		mp.mu.Lock()
		for name := range mp.procs {
			r.facts[name] = &Facts{HasData: true, Active: true, Enabled: true, HasDirs: true}
		}
		mp.mu.Unlock()
		return r, m
	}
	members := func() []string {
		t.Helper()
		ms, err := mp.cli.Members(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range ms {
			s := x.Name
			if x.IsLearner {
				s += "(learner)"
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return out
	}

	// A plan (dry run) of 3 → 5 succeeds without acceptance and shows
	// the window.
	r, m := newRun(five, false)
	m.DryRun = true
	if err := m.Run(ctx, &discover{r: r}, &membershipPhase{r: r}); err != nil {
		t.Fatalf("dry run of 3 to 5: %v", err)
	}
	if got := risksString(r.res.Risks); got != "dc1 2-4!" {
		t.Errorf("dry run of 3 to 5: risks %q", got)
	}
	if ch := m.Changes()["dc1-s02"]; len(ch) == 0 || !strings.HasPrefix(ch[0], "would add etcd member dc1-s02 as a learner") {
		t.Errorf("dry run of 3 to 5: changes on dc1-s02 %q", ch)
	}
	if got := members(); !slices.Equal(got, three) || len(mp.joins) != 0 {
		t.Fatalf("the dry run changed the members: %v, started %v", got, mp.joins)
	}

	// 3 → 5 without acceptance: refused before any membership change.
	r, m = newRun(five, false)
	start := time.Now()
	err = m.Run(ctx, &discover{r: r}, &membershipPhase{r: r})
	if !errors.Is(err, ErrTransientRisk) {
		t.Fatalf("3 to 5 without AcceptTransientRisk: err = %v, want ErrTransientRisk", err)
	}
	for _, s := range []string{"step 2 (promote learner dc1-s02", "center dc1", "--accept-transient-risk"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not say %q", err, s)
		}
	}
	if got := members(); !slices.Equal(got, three) {
		t.Fatalf("after the refusal the members are %v, want %v", got, three)
	}
	if ch := m.Changes(); len(ch) != 0 || len(mp.joins) != 0 {
		t.Fatalf("the refused apply changed %v, started %v", ch, mp.joins)
	}
	t.Logf("3 to 5 refused in %v: %v", time.Since(start).Round(time.Millisecond), err)

	// With acceptance: learners added, caught up, promoted; the plan's
	// window is reported, and measured here between the promotions.
	r, m = newRun(five, true)
	promoted := &promotionTimes{at: map[string]time.Time{}}
	r.log = slog.New(promoted)
	start = time.Now()
	if err := m.Run(ctx, &discover{r: r}, &membershipPhase{r: r}, &healthPhase{r: r}); err != nil {
		t.Fatalf("3 to 5 with AcceptTransientRisk: %v", err)
	}
	t.Logf("3 to 5 applied in %v", time.Since(start).Round(time.Millisecond))
	if got := stepsString(r.res.Steps); got != "add-learner:dc1-s02 promote:dc1-s02 add-learner:dc2-s02 promote:dc2-s02" {
		t.Errorf("3 to 5 steps: %s", got)
	}
	if got := risksString(r.res.Risks); got != "dc1 2-4!" {
		t.Fatalf("3 to 5 risks: %s", got)
	}
	window := promoted.get("dc2-s02").Sub(promoted.get("dc1-s02"))
	t.Logf("dc1 could not be lost for %v (from promoting dc1-s02 until promoting dc2-s02; reported bound %v)", window.Round(time.Millisecond), r.res.Risks[0].AtMost)
	if window <= 0 || window > r.res.Risks[0].AtMost {
		t.Errorf("measured window %v, reported at most %v", window, r.res.Risks[0].AtMost)
	}
	// dc2-s02 joined once dc1-s02 was voting: one learner at a time.
	if want := []string{"dc1-s02@3", "dc2-s02@4"}; !slices.Equal(mp.joins, want) {
		t.Errorf("joins (member@voting members then) = %v, want %v", mp.joins, want)
	}
	if got, want := members(), []string{"dc1-s01", "dc1-s02", "dc2-s01", "dc2-s02", "dc3-s01"}; !slices.Equal(got, want) {
		t.Errorf("members after 3 to 5: %v, want %v", got, want)
	}
	if pc := r.res.Health.PerCenter; pc["dc1"] != 2 || pc["dc2"] != 2 || pc["dc3"] != 1 {
		t.Errorf("healthy voting members per center: %v", pc)
	}

	// 5 → 3, accepted: removals through the API, then the servers stopped.
	back := *five
	back.Etcd.Members, back.Etcd.PerCenter = startPlan, map[string]int{"dc1": 1, "dc2": 1, "dc3": 1}
	r, m = newRun(&back, true)
	start = time.Now()
	if err := m.Run(ctx, &discover{r: r}, &membershipPhase{r: r}, &healthPhase{r: r}); err != nil {
		t.Fatalf("5 to 3: %v", err)
	}
	t.Logf("5 to 3 applied in %v", time.Since(start).Round(time.Millisecond))
	if len(r.res.Steps) != 2 || r.res.Steps[0].Kind != StepRemove || r.res.Steps[1].Kind != StepRemove {
		t.Fatalf("5 to 3 steps: %s", stepsString(r.res.Steps))
	}
	first := r.res.Steps[0].Member.Center
	if len(r.res.Risks) != 1 || !r.res.Risks[0].Transient || r.res.Risks[0].FromStep != 1 || r.res.Risks[0].UntilStep != 2 || r.res.Risks[0].Center == first {
		t.Errorf("5 to 3 risks (first removal in %s): %s", first, risksString(r.res.Risks))
	}
	slices.Sort(mp.wipes)
	if want := []string{"dc1-s02", "dc2-s02"}; !slices.Equal(mp.wipes, want) || len(r.res.Retired) != 2 {
		t.Errorf("stopped %v (retired %v), want %v", mp.wipes, r.res.Retired, want)
	}
	if got := members(); !slices.Equal(got, three) {
		t.Errorf("members after 5 to 3: %v, want %v", got, three)
	}

	// The leader comes home: forced onto the remote-dr member, then the
	// local-dr one, the health gate moves it to the production member,
	// reports the move and records no change on any host.
	for _, away := range []inventory.Member{startPlan[2], startPlan[1]} {
		h, err := mp.cli.WaitHealthy(ctx, startPlan, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var leaderURL string
		var awayID uint64
		for i, x := range startPlan {
			if h.Endpoints[i].MemberID == h.Leader {
				leaderURL = ClientURL(x.Address)
			}
			if x.Name == away.Name {
				awayID = h.Endpoints[i].MemberID
			}
		}
		if h.Leader != awayID {
			if err := mp.cli.MoveLeader(ctx, leaderURL, awayID); err != nil {
				t.Fatalf("forcing the leader onto %s: %v", away.Name, err)
			}
		}
		if h, err = mp.cli.WaitHealthy(ctx, startPlan, 30*time.Second); err != nil || h.Leader != awayID {
			t.Fatalf("leader %x after forcing it onto %s (%x): %v", h.Leader, away.Name, awayID, err)
		}
		r, m = newRun(&back, true)
		start = time.Now()
		if err := m.Run(ctx, &discover{r: r}, &healthPhase{r: r}); err != nil {
			t.Fatalf("health gate with the leader on %s: %v", away.Name, err)
		}
		t.Logf("leader moved home from %s in %v", away.Name, time.Since(start).Round(time.Millisecond))
		if want := away.Name + " (" + away.Center + ") → dc1-s01 (dc1)"; r.res.LeaderMoved != want {
			t.Errorf("LeaderMoved %q, want %q", r.res.LeaderMoved, want)
		}
		if r.res.Leader != "dc1-s01" || r.res.LeaderCenter != "dc1" || !r.res.Converged() || len(m.Changes()) != 0 {
			t.Errorf("after the gate: leader %s in %s, converged %v, changes %v", r.res.Leader, r.res.LeaderCenter, r.res.Converged(), m.Changes())
		}
		if p := LeaderHome(c, startPlan, mp.cli.Health(ctx, startPlan)); !p.Home || p.Leader != "dc1-s01" {
			t.Errorf("observed after the gate: leader %s, home %v (%s)", p.At(), p.Home, p.Reason)
		}
	}
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// promotionTimes is a log handler that notes when each learner was
// promoted ("Learner promoted").
type promotionTimes struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (p *promotionTimes) Enabled(context.Context, slog.Level) bool { return true }

func (p *promotionTimes) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "Learner promoted" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "member" {
			p.mu.Lock()
			p.at[a.Value.String()] = rec.Time
			p.mu.Unlock()
		}
		return true
	})
	return nil
}

func (p *promotionTimes) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *promotionTimes) WithGroup(string) slog.Handler      { return p }

func (p *promotionTimes) get(member string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at[member]
}
