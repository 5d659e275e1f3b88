package acceptance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// etcdLab is the running lab plus what the tests need to drive it.
type etcdLab struct {
	lab      *nspawn.Lab
	dir      string // temporary: inventories, state, CLI binary
	bin      string
	key, kh  string
	arts     string
	stateDir string
	log      *slog.Logger
}

func repoRoot(t testing.TB) string {
	t.Helper()
	cache, err := nspawn.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(cache)
}

func startEtcdLab(t testing.TB) *etcdLab {
	t.Helper()
	if err := nspawn.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab: %w", err))
	}
	// The drills measure write gaps against limits of a few seconds.
	testenv.Exclusive(t, "the etcd lab")
	root := repoRoot(t)
	cache := filepath.Join(root, ".cache")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := &etcdLab{dir: t.TempDir(), log: log, arts: filepath.Join(cache, "artifacts")}
	// etcd and etcdctl from the pinned build module (cached after the first build).
	build := exec.CommandContext(ctx, filepath.Join(root, "hack/artifacts/build.sh"), "etcd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building etcd artifacts: %v\n%s", err, out)
	}
	e.bin = filepath.Join(e.dir, "tricenter")
	gb := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/tricenter")
	gb.Dir = root
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("building tricenter: %v\n%s", err, out)
	}
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	e.key, e.kh = filepath.Join(e.dir, "id_ed25519"), filepath.Join(e.dir, "known_hosts")
	e.stateDir = filepath.Join(e.dir, "state")
	c := e.cluster(t, 5, true)
	start := time.Now()
	e.lab, err = nspawn.Up(ctx, nspawn.Config{Cluster: c, Rootfs: rootfs, Logger: log, NoFRR: true,
		Dir: filepath.Join(cache, "nspawn", "machines", "acc-"+filepath.Base(e.dir))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lab: %d machines up in %v", len(e.lab.Machines()), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := e.lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return e
}

// inventory writes an inventory variant and returns its path.
func (e *etcdLab) inventory(t testing.TB, members int, dc3Etcd bool) string {
	t.Helper()
	b, err := os.ReadFile("testdata/etcd-lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	role := "etcd, control-plane"
	if !dc3Etcd {
		role = "worker"
	}
	s := strings.NewReplacer("KEYFILE", e.key, "KNOWNHOSTS", e.kh, "ARTIFACTS", e.arts,
		"MEMBERS", fmt.Sprint(members), "DC3ROLE", role).Replace(string(b))
	p := filepath.Join(e.dir, fmt.Sprintf("inventory-%d-%v.yaml", members, dc3Etcd))
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *etcdLab) cluster(t testing.TB, members int, dc3Etcd bool) *inventory.Cluster {
	t.Helper()
	b, err := os.ReadFile(e.inventory(t, members, dc3Etcd))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nspawn.ParseInventory(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cli runs bin/tricenter with the lab's state directory.
func (e *etcdLab) cli(ctx context.Context, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, e.bin, append(args, "--state-dir", e.stateDir)...)
	cmd.Env = append(os.Environ(), "TRICENTER_STATE_DIR="+e.stateDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

type statusJSON struct {
	Healthy bool `json:"healthy"`
	Health  struct {
		PerCenter map[string]int `json:"perCenter"`
		Members   []etcd.Member  `json:"members"`
		Problems  []string       `json:"problems"`
	} `json:"health"`
	PlannedPerCenter map[string]int `json:"plannedPerCenter"`
}

func (e *etcdLab) status(t testing.TB, ctx context.Context, inv string) statusJSON {
	t.Helper()
	out, errOut, err := e.cli(ctx, "etcd", "status", "-f", inv, "-o", "json", "--log-level", "warn")
	var st statusJSON
	if jerr := json.Unmarshal([]byte(out), &st); jerr != nil {
		t.Fatalf("etcd status: %v / %v\nstdout: %s\nstderr: %s", err, jerr, out, errOut)
	}
	return st
}

func (e *etcdLab) apply(t testing.TB, ctx context.Context, inv string, extra ...string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	out, errOut, err := e.cli(ctx, append([]string{"apply", "--only", "etcd", "-f", inv, "--yes", "--log-level", "warn"}, extra...)...)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("apply %s: %v\nstdout: %s\nstderr: %s", filepath.Base(inv), err, out, tailLines(errOut, 30))
	}
	return out, took
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// client connects with the PKI the CLI keeps in the state directory.
func (e *etcdLab) client(t testing.TB, c *inventory.Cluster, p *inventory.Placement) *etcd.Client {
	t.Helper()
	st, err := state.Open(e.stateDir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	var ms []pki.EtcdMember
	var eps []string
	for _, m := range p.Etcd.Members {
		ms = append(ms, pki.EtcdMember{Name: m.Name, Address: m.Address})
		eps = append(eps, etcd.ClientURL(m.Address))
	}
	b, err := st.PKI().EnsureEtcd(ms)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := etcd.TLSConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := etcd.NewClient(eps, tc, e.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// ssh runs a command on a machine with OpenSSH and strict host keys.
// ssh runs cmd on a machine and returns its standard output. Standard
// error (which carries login banners such as pam_nologin's "System is booting
// up" right after a power cycle) only goes into the error.
func (e *etcdLab) ssh(ctx context.Context, m *nspawn.Machine, cmd string) (string, error) {
	var stderr strings.Builder
	c := exec.CommandContext(ctx, "ssh", "-i", e.key, "-o", "UserKnownHostsFile="+e.kh,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
		"root@"+m.Address.String(), cmd)
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), err
}

// fingerprint describes everything apply could change on every machine.
func (e *etcdLab) fingerprint(t testing.TB, ctx context.Context) string {
	t.Helper()
	var b strings.Builder
	for _, m := range e.lab.Machines() {
		out, err := e.ssh(ctx, m, "stat -c '%n %Y %s %a' /usr/local/bin/etcd* /etc/etcd/* /etc/etcd/pki/* /etc/systemd/system/etcd.service 2>&1; "+
			"systemctl show -p ActiveEnterTimestamp -p UnitFileState etcd.service")
		if err != nil {
			t.Fatalf("fingerprint of %s: %v: %s", m.Name, err, out)
		}
		fmt.Fprintf(&b, "== %s\n%s\n", m.Name, out)
	}
	return b.String()
}

// labPower cuts and restores a machine's power (the whole container dies
// at once, like a BMC power off).
type labPower struct{ lab *nspawn.Lab }

func (p labPower) Describe() string { return "nspawn machine power cut" }
func (p labPower) Off(ctx context.Context, h inventory.Host) error {
	return p.lab.Machine(h.Name).PowerOff(ctx)
}
func (p labPower) On(ctx context.Context, h inventory.Host) error {
	return p.lab.Machine(h.Name).Start(ctx)
}

// seqWriter writes numbered keys continuously and checks them back.
type seqWriter struct {
	kv     *clientv3.Client
	prefix string
	mu     sync.Mutex
	acked  []int
	ackAt  []time.Time
	fails  int
	cancel context.CancelFunc
	done   chan struct{}
}

func startWriter(kv *clientv3.Client, prefix string) *seqWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &seqWriter{kv: kv, prefix: prefix, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 1; ctx.Err() == nil; i++ {
			cctx, c := context.WithTimeout(ctx, 2*time.Second)
			_, err := kv.Put(cctx, fmt.Sprintf("%s%08d", prefix, i), fmt.Sprint(i))
			c()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, i)
				w.ackAt = append(w.ackAt, time.Now())
			} else if ctx.Err() == nil {
				w.fails++
			}
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// stop ends the writes and returns the longest gap between acknowledged
// writes and how many acknowledged writes are missing.
func (w *seqWriter) stop(t testing.TB) (gap time.Duration, lost, acked, failed int) {
	t.Helper()
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 1; i < len(w.ackAt); i++ {
		if d := w.ackAt[i].Sub(w.ackAt[i-1]); d > gap {
			gap = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := w.kv.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("reading writes back: %v", err)
	}
	have := map[string]bool{}
	for _, kv := range r.Kvs {
		have[string(kv.Key)+"="+string(kv.Value)] = true
	}
	for _, i := range w.acked {
		if !have[fmt.Sprintf("%s%08d=%d", w.prefix, i, i)] {
			lost++
		}
	}
	return gap, lost, len(w.acked), w.fails
}

// TestEtcdThreeCenters runs the etcd lifecycle on five nspawn machines in
// three centers (2/2/1) with 1 ms and 20 ms between centers: apply from
// scratch, a no-op re-apply, the center-loss drill for every center, scale
// 5 → 3 → 5 under writes, a refused plan, reset, and an apply killed
// midway then re-run.
func TestEtcdThreeCenters(t *testing.T) {
	e := startEtcdLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inv5, inv3 := e.inventory(t, 5, true), e.inventory(t, 3, true)
	c5 := e.cluster(t, 5, true)

	var cold time.Duration
	t.Run("apply from scratch", func(t *testing.T) {
		_, cold = e.apply(t, ctx, inv5)
		st := e.status(t, ctx, inv5)
		if !st.Healthy {
			t.Fatalf("status after apply: unhealthy: %v", st.Health.Problems)
		}
		want := map[string]int{"dc1": 2, "dc2": 2, "dc3": 1}
		for c, n := range want {
			if st.Health.PerCenter[c] != n {
				t.Errorf("center %s has %d voting members, want %d (%v)", c, st.Health.PerCenter[c], n, st.Health.PerCenter)
			}
		}
		t.Logf("cold apply: %v", cold.Round(time.Millisecond))
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Run("re-apply is a no-op", func(t *testing.T) {
		before := e.fingerprint(t, ctx)
		out, took := e.apply(t, ctx, inv5)
		if !strings.Contains(out, "converged: nothing to do") {
			t.Fatalf("second apply was not a no-op:\n%s", out)
		}
		if after := e.fingerprint(t, ctx); after != before {
			t.Fatalf("no-op apply changed hosts:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		t.Logf("no-op apply: %v (%.0f%% of cold)", took.Round(time.Millisecond), 100*took.Seconds()/cold.Seconds())
	})

	t.Run("center-loss drill", func(t *testing.T) {
		p, err := inventory.Place(c5, nil)
		if err != nil {
			t.Fatal(err)
		}
		cli := e.client(t, c5, p)
		planned := electionTimeout(t, p)
		for _, center := range []string{"dc1", "dc2", "dc3"} {
			rep, err := etcd.Drill(ctx, etcd.DrillOptions{Cluster: c5, Placement: p, Center: center, Client: cli,
				Power: labPower{e.lab}, Logger: e.log, Hold: 2 * time.Second})
			if rep != nil {
				t.Logf("drill %s: stopped %v, leader %s → %s, writes resumed %v after power-off, longest gap %v, %d acked, %d failed, %d lost, healthy %v after power-on",
					center, rep.Stopped, rep.LeaderBefore, rep.LeaderDuring, rep.ResumedAfter.Round(time.Millisecond),
					rep.WriteGap.Round(time.Millisecond), rep.Acknowledged, rep.Failed, rep.Lost, rep.RestoredHealthy.Round(time.Millisecond))
			}
			if err != nil {
				t.Fatalf("drill %s: %v", center, err)
			}
			if !rep.Verified {
				t.Errorf("drill %s: acknowledged writes not verified: %s", center, rep.NotVerified)
			} else if rep.Lost != 0 {
				t.Errorf("drill %s lost %d acknowledged writes", center, rep.Lost)
			}
			// The limit comes from the election timeout the report used,
			// which must be the placement's (derived from the centers' RTTs
			// or overridden in the inventory), never a constant here.
			if rep.ElectionTimeout != planned {
				t.Errorf("drill %s: report's election timeout %v, placement's %v", center, rep.ElectionTimeout, planned)
			}
			// The drill writes through each surviving member. A follower
			// campaigns after a randomized timeout in [1, 2) election
			// timeouts; a write it forwarded to the dead leader first waits
			// out the 1 s write timeout. The bound is two election
			// timeouts, the write timeout and 1 s for a loaded machine.
			if limit := 2*rep.ElectionTimeout + 2*time.Second; rep.WriteGap > limit || rep.ResumedAfter > limit {
				t.Errorf("drill %s: writes stalled %v (resumed after %v), limit 2 × election timeout %v + write timeout 1 s + 1 s = %v",
					center, rep.WriteGap, rep.ResumedAfter, rep.ElectionTimeout, limit)
			}
		}
	})

	t.Run("scale 5 to 3 to 5 under writes", func(t *testing.T) {
		p5, _ := inventory.Place(c5, nil)
		cli := e.client(t, c5, p5)
		w := startWriter(cli.KV(), fmt.Sprintf("/acceptance/scale/%d/", time.Now().UnixNano()))
		// 5 → 3 passes through 4 voting members, two in one center: the
		// plan shows the window and apply refuses it without the flag,
		// changing nothing.
		out, errOut, err := e.cli(ctx, "apply", "--only", "etcd", "-f", inv3, "--yes", "--log-level", "warn")
		if err == nil || !strings.Contains(errOut, "--accept-transient-risk") || !strings.Contains(out, "risk window: losing") {
			t.Fatalf("5 → 3 without --accept-transient-risk: %v\nstdout: %s\nstderr: %s", err, out, tailLines(errOut, 10))
		}
		if st := e.status(t, ctx, inv5); !st.Healthy || len(st.Health.Members) != 5 {
			t.Fatalf("a refused 5 → 3 changed the members: healthy=%v members=%d", st.Healthy, len(st.Health.Members))
		}
		out, took := e.apply(t, ctx, inv3, "--accept-transient-risk")
		t.Logf("5 → 3 in %v:\n%s", took.Round(time.Millisecond), out)
		st := e.status(t, ctx, inv3)
		if !st.Healthy || len(st.Health.Members) != 3 {
			t.Fatalf("after 5 → 3: healthy=%v members=%d problems=%v", st.Healthy, len(st.Health.Members), st.Health.Problems)
		}
		for c, n := range st.Health.PerCenter {
			if n != 1 {
				t.Errorf("after 5 → 3 center %s has %d members, want 1", c, n)
			}
		}
		out, took = e.apply(t, ctx, inv5, "--accept-transient-risk")
		t.Logf("3 → 5 in %v:\n%s", took.Round(time.Millisecond), out)
		st = e.status(t, ctx, inv5)
		if !st.Healthy || len(st.Health.Members) != 5 {
			t.Fatalf("after 3 → 5: healthy=%v members=%d problems=%v", st.Healthy, len(st.Health.Members), st.Health.Problems)
		}
		gap, lost, acked, failed := w.stop(t)
		t.Logf("writes during scaling: %d acknowledged, %d failed, longest gap %v, %d lost", acked, failed, gap.Round(time.Millisecond), lost)
		if lost != 0 {
			t.Errorf("%d acknowledged writes lost while scaling", lost)
		}
		if limit := electionTimeout(t, p5) + 2*time.Second; gap > limit {
			t.Errorf("writes stalled %v while scaling (quorum lost?), limit %v", gap, limit)
		}
	})

	t.Run("refused plan touches nothing", func(t *testing.T) {
		bad := e.inventory(t, 3, false)
		before := e.fingerprint(t, ctx)
		out, errOut, err := e.cli(ctx, "apply", "--only", "etcd", "-f", bad, "--yes")
		if err == nil {
			t.Fatalf("apply of an inventory that cannot survive a center loss succeeded:\n%s", out)
		}
		if !strings.Contains(errOut, "loss of any one center") {
			t.Errorf("refusal does not say why:\n%s", errOut)
		}
		if after := e.fingerprint(t, ctx); after != before {
			t.Fatalf("refused apply changed hosts:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("reset leaves hosts clean", func(t *testing.T) {
		resetAndCheck(t, ctx, e, inv5)
	})

	t.Run("killed apply re-runs to convergence", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, e.bin, "apply", "--only", "etcd", "-f", inv5, "--yes", "--state-dir", e.stateDir)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			// Kill it once the first members are being started.
			if strings.Contains(sc.Text(), "systemctl start --no-block") {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killed = true
				break
			}
		}
		go func() { _, _ = bufio.NewReader(stderr).WriteTo(&bytes.Buffer{}) }()
		_ = cmd.Wait()
		if !killed {
			t.Fatal("the apply finished before it could be killed")
		}
		out, _ := e.apply(t, ctx, inv5)
		st := e.status(t, ctx, inv5)
		if !st.Healthy || len(st.Health.Members) != 5 {
			t.Fatalf("after the re-run: healthy=%v members=%d problems=%v\n%s", st.Healthy, len(st.Health.Members), st.Health.Problems, out)
		}
		out, _ = e.apply(t, ctx, inv5)
		if !strings.Contains(out, "converged: nothing to do") {
			t.Fatalf("third apply was not a no-op:\n%s", out)
		}
		resetAndCheck(t, ctx, e, inv5)
	})
}

// electionTimeout is the placement's raft election timeout, the base of
// the write-gap limits.
func electionTimeout(t testing.TB, p *inventory.Placement) time.Duration {
	t.Helper()
	et := time.Duration(p.Etcd.Timers.ElectionTimeoutMs) * time.Millisecond
	if et <= 0 {
		t.Fatalf("the placement has no election timeout: %+v", p.Etcd.Timers)
	}
	return et
}

func resetAndCheck(t testing.TB, ctx context.Context, e *etcdLab, inv string) {
	t.Helper()
	out, errOut, err := e.cli(ctx, "reset", "--only", "etcd", "-f", inv, "--yes", "--log-level", "warn")
	if err != nil {
		t.Fatalf("reset: %v\n%s\n%s", err, out, errOut)
	}
	for _, m := range e.lab.Machines() {
		got, err := e.ssh(ctx, m, "ls -d /etc/etcd /var/lib/etcd /usr/local/bin/etcd /usr/local/bin/etcdctl /etc/systemd/system/etcd.service 2>/dev/null; "+
			"systemctl is-active etcd.service; ss -Hltn '( sport = :2379 or sport = :2380 )'")
		if strings.TrimSpace(got) != "inactive" {
			t.Errorf("%s is not clean after reset (%v):\n%s", m.Name, err, got)
		}
	}
	out, _, err = e.cli(ctx, "reset", "--only", "etcd", "-f", inv, "--yes", "--log-level", "warn")
	if err != nil || !strings.Contains(out, "Nothing to reset") {
		t.Errorf("second reset was not a no-op: %v\n%s", err, out)
	}
}

type tlsCfg = tls.Config

// tlsConfig is the client TLS configuration from the state directory.
func (e *etcdLab) tlsConfig(t testing.TB, c *inventory.Cluster, p *inventory.Placement) (*tls.Config, error) {
	t.Helper()
	st, err := state.Open(e.stateDir, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	var ms []pki.EtcdMember
	for _, m := range p.Etcd.Members {
		ms = append(ms, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	b, err := st.PKI().EnsureEtcd(ms)
	if err != nil {
		t.Fatal(err)
	}
	return etcd.TLSConfig(b)
}
