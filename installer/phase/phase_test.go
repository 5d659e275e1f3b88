package phase_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/sshtest"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// This package's labs use 198.18.20.0/22 (see installer/sshtest).
var block = netip.MustParsePrefix("198.18.20.0/22")

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func writeArtifact(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "artifact.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// installPhase uploads an artifact, writes a per-host config and restarts
// a unit when either changed: the shape of the real phases.
func installPhase(artifact string, restart bool) *phase.HostPhase {
	return &phase.HostPhase{
		Name: "Install the test agent",
		Apply: func(ctx context.Context, h *phase.Host) error {
			bin, err := h.Upload(ctx, artifact, "/srv/bin/agent", 0o755)
			if err != nil {
				return err
			}
			conf, err := h.WriteFile(ctx, "/etc/systemd/system/agent.service", []byte("[Service]\nExecStart=/srv/bin/agent --name "+h.Name+"\n"), 0o644)
			if err != nil {
				return err
			}
			if restart && (bin.Changed || conf.Changed) {
				return h.SystemctlRestart(ctx, "agent.service")
			}
			return nil
		},
	}
}

type recorder struct {
	mu    sync.Mutex
	lines []string
	bytes atomic.Int64
}

func (r *recorder) PhaseStart(title string, n int) { r.add(fmt.Sprintf("==> %s %d", title, n)) }
func (r *recorder) PhaseDone(title string, err error, _ time.Duration) {
	r.add(fmt.Sprintf("<== %s %v", title, err))
}
func (r *recorder) Host(h, msg string)                { r.add(h + ": " + msg) }
func (r *recorder) UploadStart(string, string, int64) {}
func (r *recorder) UploadBytes(n int64)               { r.bytes.Add(n) }
func (r *recorder) UploadDone(string, string, error)  {}
func (r *recorder) add(s string)                      { r.mu.Lock(); r.lines = append(r.lines, s); r.mu.Unlock() }
func (r *recorder) all() string                       { r.mu.Lock(); defer r.mu.Unlock(); return strings.Join(r.lines, "\n") }

var _ progress.Reporter = (*recorder)(nil)

// TestDryRunPlanApplyConverge runs one phase through a jump host: the dry
// run prints the per-host plan and changes nothing; apply makes exactly
// those changes; a second apply changes nothing.
func TestDryRunPlanApplyConverge(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 3, Jump: true})
	ctx := ctxT(t, 2*time.Minute)
	artifact, data := writeArtifact(t, 3<<20)
	c := l.Cluster(sshtest.ClusterOptions{User: "deploy", PinHostKeys: true})

	dry := &phase.Manager{Cluster: c, DryRun: true}
	defer dry.Close()
	if err := dry.Run(ctx, installPhase(artifact, true)); err != nil {
		t.Fatal(err)
	}
	plan := dry.Changes()
	if len(plan) != 3 {
		t.Fatalf("plan covers %d hosts, want 3: %v", len(plan), plan)
	}
	for _, h := range l.Hosts {
		got := plan[h.Name]
		if len(got) != 3 || !strings.HasPrefix(got[0], "would upload /srv/bin/agent (3.0 MiB, sha256:") ||
			!strings.HasPrefix(got[1], "would write /etc/systemd/system/agent.service") || got[2] != "would restart agent.service" {
			t.Errorf("%s plan: %q", h.Name, got)
		}
		if _, err := os.Stat(h.Path("/srv/bin/agent")); !os.IsNotExist(err) {
			t.Errorf("%s: the dry run uploaded the artifact", h.Name)
		}
	}

	// Apply without the restart (no systemd in the lab hosts).
	rec := &recorder{}
	m := &phase.Manager{Cluster: c, Progress: rec}
	defer m.Close()
	if err := m.Run(ctx, installPhase(artifact, false)); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts {
		got, err := os.ReadFile(h.Path("/srv/bin/agent"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: artifact differs (%v)", h.Name, err)
		}
		st, _ := os.Stat(h.Path("/srv/bin/agent"))
		if st.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %o", h.Name, st.Mode().Perm())
		}
		conf, _ := os.ReadFile(h.Path("/etc/systemd/system/agent.service"))
		if !strings.Contains(string(conf), "--name "+h.Name) {
			t.Errorf("%s: config %q", h.Name, conf)
		}
		if ch := m.Changes()[h.Name]; len(ch) != 2 || strings.TrimPrefix(plan[h.Name][0], "would ") != ch[0] {
			t.Errorf("%s: applied %q, planned %q", h.Name, ch, plan[h.Name])
		}
	}
	if b := rec.bytes.Load(); b < 3*int64(len(data)) || b > 3*int64(len(data))+1024 {
		t.Errorf("progress saw %d upload bytes, want %d", rec.bytes.Load(), 3*len(data))
	}
	if !strings.Contains(rec.all(), "==> Install the test agent 3") {
		t.Errorf("progress lines:\n%s", rec.all())
	}

	// Converged: a new run changes nothing, a mode drift is fixed alone.
	os.Chmod(l.Hosts[1].Path("/srv/bin/agent"), 0o700)
	again := &phase.Manager{Cluster: c}
	defer again.Close()
	if err := again.Run(ctx, installPhase(artifact, false)); err != nil {
		t.Fatal(err)
	}
	ch := again.Changes()
	if len(ch) != 1 || len(ch[l.Hosts[1].Name]) != 1 || !strings.HasPrefix(ch[l.Hosts[1].Name][0], "set chmod 755") {
		t.Fatalf("second run changed %v; want only the mode fix on %s", ch, l.Hosts[1].Name)
	}
}

// TestHostErrorsKeepTypeAndOthersContinue: a host with a wrong pinned key
// fails with ErrHostKeyMismatch naming it; a failing command keeps its
// *ssh.ExitError; the other hosts complete.
func TestHostErrorsKeepTypeAndOthersContinue(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 4, Jump: true})
	ctx := ctxT(t, 2*time.Minute)
	c := l.Cluster(sshtest.ClusterOptions{PinHostKeys: true})
	bad := &c.Spec.Racks[1].Servers[0] // node02
	bad.SSH.HostKey = l.Hosts[0].Fingerprint
	var done sync.Map
	p := &phase.HostPhase{Name: "Touch", Apply: func(ctx context.Context, h *phase.Host) error {
		if _, err := h.Sudo(ctx, "touch /srv/touched"); err != nil {
			return err
		}
		if h.Name == "node03" {
			if _, err := h.Exec(ctx, "echo failing >&2; exit 7"); err != nil {
				return err
			}
		}
		done.Store(h.Name, true)
		return nil
	}}
	m := &phase.Manager{Cluster: c}
	defer m.Close()
	err := m.Run(ctx, p, &phase.HostPhase{Name: "Never", Apply: func(context.Context, *phase.Host) error {
		t.Error("a phase after a failed one ran")
		return nil
	}})
	if !errors.Is(err, ssh.ErrHostKeyMismatch) {
		t.Fatalf("want ErrHostKeyMismatch in %v", err)
	}
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Status != 7 || ee.Stderr != "failing" {
		t.Fatalf("want the ExitError with status 7 and its stderr, got %v", err)
	}
	var he *phase.HostError
	if !errors.As(err, &he) {
		t.Fatalf("want a *phase.HostError in %v", err)
	}
	for _, want := range []string{"node02:", "node03:", "HOST KEY MISMATCH", "status 7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	for _, n := range []string{"node01", "node04"} {
		if _, ok := done.Load(n); !ok {
			t.Errorf("%s did not complete although its neighbours failed", n)
		}
	}
	if _, err := os.Stat(l.Hosts[1].Path("/srv/touched")); !os.IsNotExist(err) {
		t.Error("node02 (host key mismatch) was changed")
	}
}

// TestUploadRetriesAfterCut cuts the connection to the jump host after
// 2 MiB of an upload: the engine retries on a new connection, the final
// file is right, and no partial file ever appears at the target path.
func TestUploadRetriesAfterCut(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1, Jump: true})
	ctx := ctxT(t, 2*time.Minute)
	artifact, data := writeArtifact(t, 12<<20)
	proxy := sshtest.CutProxy(t, l.Gateway, l.Jump.Addr.String()+":22", 2<<20)
	c := l.Cluster(sshtest.ClusterOptions{PinHostKeys: true})
	host, port, _ := net.SplitHostPort(proxy)
	c.Spec.Centers[0].JumpHost.Address = host
	c.Spec.Centers[0].JumpHost.Port, _ = strconv.Atoi(port)
	target := l.Hosts[0].Path("/srv/bin/agent")
	stop := sshtest.WatchNoPartial(t, target, int64(len(data)))
	rec := &recorder{}
	m := &phase.Manager{Cluster: c, Progress: rec, Retry: phase.Retry{Base: 50 * time.Millisecond}}
	defer m.Close()
	if err := m.Run(ctx, installPhase(artifact, false)); err != nil {
		t.Fatal(err)
	}
	stop()
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("final file differs (%v)", err)
	}
	if !strings.Contains(rec.all(), "node01: retrying uploading /srv/bin/agent") {
		t.Fatalf("no retry was reported:\n%s", rec.all())
	}
	if !strings.Contains(rec.all(), "node01: resuming the upload of /srv/bin/agent at ") {
		t.Errorf("the retry did not resume from what the host kept:\n%s", rec.all())
	}
	// The artifact once (what the cut attempt sent was taken back) and the
	// small config file.
	if b := rec.bytes.Load(); b < int64(len(data)) || b > int64(len(data))+1024 {
		t.Errorf("progress counted %d bytes, want %d and the config", b, len(data))
	}
	if left, _ := filepath.Glob(l.Hosts[0].Path("/srv/bin/.agent.tricenter-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestConcurrentUploadsOfOnePath: uploads of different contents to one
// path at once take turns (they would share the partial file); each
// verifies, the last one wins, and nothing is left behind.
func TestConcurrentUploadsOfOnePath(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 1})
	ctx := ctxT(t, time.Minute)
	a, da := writeArtifact(t, 16<<20)
	b, db := writeArtifact(t, 16<<20)
	m := &phase.Manager{Cluster: l.Cluster(sshtest.ClusterOptions{})}
	defer m.Close()
	hs, err := m.Hosts(inventory.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := a
			if i%2 == 1 {
				src = b
			}
			_, errs[i] = hs[0].Upload(ctx, src, "/srv/bin/same", 0o755)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(l.Hosts[0].Path("/srv/bin/same"))
	if !bytes.Equal(got, da) && !bytes.Equal(got, db) {
		t.Fatal("the file is neither upload")
	}
	if left, _ := filepath.Glob(l.Hosts[0].Path("/srv/bin/.same.tricenter-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestFiftyHosts runs a phase on 50 real sshd hosts with the default
// concurrency (30) and a per-center cap, and checks the bounds held.
func TestFiftyHosts(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 50})
	ctx := ctxT(t, 3*time.Minute)
	artifact, data := writeArtifact(t, 1<<20)
	c := l.Cluster(sshtest.ClusterOptions{})
	for _, perCenter := range []int{0, 4} {
		var cur, peak atomic.Int32
		perC := map[string]*atomic.Int32{"dc1": {}, "dc2": {}, "dc3": {}}
		var peakC atomic.Int32
		p := &phase.HostPhase{Name: "Fan out", Apply: func(ctx context.Context, h *phase.Host) error {
			n := cur.Add(1)
			defer cur.Add(-1)
			k := perC[h.Center.Name].Add(1)
			defer perC[h.Center.Name].Add(-1)
			for {
				old := peak.Load()
				if n <= old || peak.CompareAndSwap(old, n) {
					break
				}
			}
			for {
				old := peakC.Load()
				if k <= old || peakC.CompareAndSwap(old, k) {
					break
				}
			}
			if _, err := h.Upload(ctx, artifact, "/srv/fan.bin", 0o644); err != nil {
				return err
			}
			out, err := h.Query(ctx, "hostname -I")
			if err != nil {
				return err
			}
			if !strings.Contains(out, h.SSH.Address) {
				return fmt.Errorf("reached the wrong host: %q", out)
			}
			return nil
		}}
		m := &phase.Manager{Cluster: c, PerCenter: perCenter}
		start := time.Now()
		err := m.Run(ctx, p)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("50 hosts, per-center cap %d: %s, peak %d hosts at once, peak %d in one center", perCenter, time.Since(start), peak.Load(), peakC.Load())
		if peak.Load() > phase.DefaultConcurrency {
			t.Errorf("peak concurrency %d exceeds the default %d", peak.Load(), phase.DefaultConcurrency)
		}
		if perCenter == 0 && peak.Load() < 10 {
			t.Errorf("peak concurrency %d: the fan-out did not run hosts in parallel", peak.Load())
		}
		if perCenter > 0 && peakC.Load() > int32(perCenter) {
			t.Errorf("peak per center %d exceeds the cap %d", peakC.Load(), perCenter)
		}
	}
	for _, h := range l.Hosts {
		got, err := os.ReadFile(h.Path("/srv/fan.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: file differs (%v)", h.Name, err)
		}
	}
}

// TestCancelStopsNewHosts: cancelling the context stops hosts that have
// not started and kills running remote commands.
func TestCancelStopsNewHosts(t *testing.T) {
	l := sshtest.New(t, sshtest.Options{Block: block, Hosts: 6})
	c := l.Cluster(sshtest.ClusterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var started atomic.Int32
	p := &phase.HostPhase{Name: "Sleep", Apply: func(ctx context.Context, h *phase.Host) error {
		if started.Add(1) == 2 {
			cancel()
		}
		_, err := h.Sudo(ctx, "sleep 30")
		return err
	}}
	m := &phase.Manager{Cluster: c, Concurrency: 2}
	defer m.Close()
	t0 := time.Now()
	err := m.Run(ctx, p)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("cancellation took %s", d)
	}
	if n := started.Load(); n > 3 {
		t.Fatalf("%d hosts started after cancellation with concurrency 2", n)
	}
}

// TestSelectAndCleanUp checks host selection by center and role, and that
// CleanUp runs after a failure.
func TestSelectAndCleanUp(t *testing.T) {
	m := &phase.Manager{Cluster: fakeCluster()}
	defer m.Close()
	hs, err := m.Hosts(inventory.Selector{Centers: []string{"dc2"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
	}
	if !slices.Equal(names, []string{"node02", "node05"}) {
		t.Fatalf("dc2 hosts %v", names)
	}
	if _, err := m.Hosts(inventory.Selector{Centers: []string{"dc9"}}); err == nil {
		t.Fatal("a selector naming an unknown center must fail")
	}
	ph := &cleanPhase{}
	err = m.Run(context.Background(), ph)
	if err == nil || !strings.Contains(err.Error(), "boom") || !ph.cleaned {
		t.Fatalf("err %v, cleaned %v", err, ph.cleaned)
	}
}

// cleanPhase is a fake phase for the engine's ordering logic.
type cleanPhase struct{ cleaned bool }

func (p *cleanPhase) Title() string             { return "Fails" }
func (p *cleanPhase) Run(context.Context) error { return errors.New("boom") }
func (p *cleanPhase) CleanUp(context.Context)   { p.cleaned = true }

func fakeCluster() *inventory.Cluster {
	l := &sshtest.Lab{ClientKey: "/nonexistent"}
	for i := range 6 {
		l.Hosts = append(l.Hosts, &sshtest.Host{Name: fmt.Sprintf("node%02d", i+1),
			Addr: netip.AddrFrom4([4]byte{198, 18, 21, byte(sshtest.CenterOf(i)*64 + 10 + i/3)})})
	}
	return l.Cluster(sshtest.ClusterOptions{})
}
