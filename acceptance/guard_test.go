package acceptance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// certDirs are where the cluster's certificates, keys and kubeconfigs live
// on a server.
const certDirs = "/etc/etcd/pki /etc/kubernetes"

// certFiles reads the sha256 of every file under certDirs on every
// server, by "server:path".
func certFiles(t *testing.T, ctx context.Context, e *installer.Engine) map[string]string {
	t.Helper()
	m := e.Manager(true)
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, h := range hosts {
		s, err := h.Query(ctx, "find "+certDirs+" -type f -exec sha256sum {} + 2>/dev/null | sort -k2; true")
		if err != nil {
			t.Fatalf("reading the certificate files on %s: %v", h.Name, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 {
				out[h.Name+":"+f[1]] = f[0]
			}
		}
	}
	return out
}

// checkCAGuard: an apply (and a plan) with an empty state, with another
// cluster's state, and with a state whose etcd CA lost its key, against the
// running cluster, is refused before anything is written: every
// certificate file on every server stays byte-identical, and etcd and the
// API stay healthy.
func checkCAGuard(t *testing.T, ctx context.Context, k *kubeLab, c *inventory.Cluster, real *installer.Engine) {
	t.Helper()
	before := certFiles(t, ctx, real)
	if len(before) < 20 {
		t.Fatalf("only %d certificate files on the servers: the check would prove nothing", len(before))
	}
	// Another cluster's state: its own authorities.
	foreign := t.TempDir()
	fst, err := state.Open(foreign, c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fst.PKI().EnsureEtcd([]pki.EtcdMember{{Name: "x", Address: "198.18.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fst.PKI().EnsureClusterCAs(); err != nil {
		t.Fatal(err)
	}
	// This cluster's state without the etcd CA's key (a partial restore).
	partial := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(k.stateDir, c.Metadata.Name), partial).CombinedOutput(); err != nil {
		t.Fatalf("copying the state: %v: %s", err, out)
	}
	if err := os.Remove(filepath.Join(partial, c.Metadata.Name, "pki", pki.EtcdCA, "ca.key")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dir  string
		want error
		says []string
	}{
		{"an empty state directory", t.TempDir(), installer.ErrCAMismatch, []string{"this state has no etcd CA", "tricenter state restore", "terraform import"}},
		{"another cluster's state", foreign, installer.ErrCAMismatch, []string{"etcd CA: the state's is sha256:", "Kubernetes CA"}},
		{"a state whose etcd CA lost its key", partial, pki.ErrIncompleteCA, []string{"ca.crt exists without ca.key"}},
	} {
		e := k.engineAt(t, c, tc.dir)
		for _, run := range []struct {
			what string
			f    func(context.Context, installer.Options) (*installer.Result, error)
		}{{"plan", e.Plan}, {"apply", e.Apply}} {
			_, err := run.f(ctx, installer.Options{})
			if !errors.Is(err, tc.want) {
				t.Errorf("%s with %s: %v, want %v", run.what, tc.name, err, tc.want)
				continue
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s with %s: the error does not say %q: %v", run.what, tc.name, w, err)
				}
			}
			t.Logf("%s with %s refused: %.300s…", run.what, tc.name, err)
		}
	}
	after := certFiles(t, ctx, real)
	for _, f := range slices.Sorted(maps.Keys(before)) {
		if after[f] != before[f] {
			t.Errorf("%s changed (sha256 %.12s → %.12s)", f, before[f], after[f])
		}
	}
	for _, f := range slices.Sorted(maps.Keys(after)) {
		if _, ok := before[f]; !ok {
			t.Errorf("%s appeared", f)
		}
	}
	t.Logf("CA guard: %d certificate files on %d servers byte-identical after 6 refused runs", len(before), len(c.Hosts()))
	st, err := real.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Etcd == nil || !st.Etcd.OK() {
		t.Errorf("etcd after the refused runs: %+v", st.Etcd)
	}
	for _, a := range st.API {
		if !a.Ready {
			t.Errorf("API %s after the refused runs: %s", a.Name, a.Detail)
		}
	}
}

// nodeCondition is the Ready condition the Node itself reports.
func nodeCondition(ctx context.Context, e *installer.Engine, name string) (cond, bootID string, err error) {
	cs, err := e.Clientset()
	if err != nil {
		return "", "", err
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", "", err
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "Ready" {
			cond = string(c.Status)
		}
	}
	return cond, n.Status.NodeInfo.BootID, nil
}

func nodeStatusOf(st *installer.Status, name string) *installer.NodeStatus {
	for i := range st.Nodes {
		if st.Nodes[i].Name == name {
			return &st.Nodes[i]
		}
	}
	return nil
}

// checkStaleNodeNotTrusted: a worker powered off reads not Ready in
// `tricenter status` within 25 s (the Node's own Ready condition stays True
// for its 40 s grace period); powered back on, it reads Ready again only
// once its kubelet reported from the new boot. A quick reboot (the heartbeat
// never goes stale) reads not Ready until the Node's boot id is the new
// one.
func checkStaleNodeNotTrusted(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, worker string) {
	t.Helper()
	mach := k.lab.Machine(worker)
	if mach == nil {
		t.Fatalf("no lab machine %s", worker)
	}
	_, oldBoot, err := nodeCondition(ctx, e, worker)
	if err != nil {
		t.Fatal(err)
	}
	off := time.Now()
	if err := mach.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	var seen time.Duration
	var condThen string
	for {
		st, err := e.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := nodeStatusOf(st, worker); n != nil && !n.Ready {
			seen = time.Since(off)
			condThen, _, _ = nodeCondition(ctx, e, worker)
			t.Logf("%s powered off: status says not Ready after %v (%s); the Node's own Ready condition is then %q",
				worker, seen.Round(time.Millisecond), n.Reason, condThen)
			break
		}
		if time.Since(off) > 60*time.Second {
			t.Fatalf("%s powered off: status still says Ready after %v", worker, time.Since(off).Round(time.Second))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if seen > 25*time.Second {
		t.Errorf("%s powered off read not Ready only after %v, want within 25 s (less than the 40 s grace period)", worker, seen)
	}
	if condThen != "True" {
		t.Logf("note: the Node's condition was already %q: the grace period had passed", condThen)
	}

	// Power on: Ready again only from the new boot.
	on := time.Now()
	if err := mach.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s booted (machine up) %v after power-on", worker, time.Since(on).Round(time.Millisecond))
	waitNewBoot(t, ctx, e, worker, oldBoot, on, "after the power cut")

	// A quick reboot: off and on at once; the heartbeat stays fresh, the
	// condition True: only the boot id tells.
	_, oldBoot, err = nodeCondition(ctx, e, worker)
	if err != nil {
		t.Fatal(err)
	}
	if err := mach.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	on = time.Now()
	if err := mach.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitNewBoot(t, ctx, e, worker, oldBoot, on, "after a quick reboot")
}

// waitNewBoot watches a restarted server's node until it is Ready: every
// observation in between that still carries the old boot id must read not
// Ready, and the Ready one must carry the server's new boot id.
func waitNewBoot(t *testing.T, ctx context.Context, e *installer.Engine, worker, oldBoot string, since time.Time, what string) {
	t.Helper()
	var oldSeen, oldFresh, observations int
	for {
		hs, err := e.NodeHealth(ctx, []string{worker}, true)
		if err != nil {
			t.Logf("%s %s: %v", worker, what, err)
			time.Sleep(300 * time.Millisecond)
			continue
		}
		h := hs[0]
		observations++
		if h.HostBootID != "" && h.HostBootID == oldBoot {
			t.Fatalf("%s %s: the server's boot id did not change (%s): the lab's reboot is no reboot", worker, what, oldBoot)
		}
		if h.NodeBootID == oldBoot {
			oldSeen++
			if h.HeartbeatAge <= h.FreshWithin && h.Condition == "True" {
				oldFresh++
			}
			if h.Ready {
				t.Fatalf("%s %s: Ready while its Node still reports the old boot id %s (server now %s)", worker, what, oldBoot, h.HostBootID)
			}
		}
		if h.Ready {
			if h.NodeBootID != h.HostBootID || h.NodeBootID == oldBoot {
				t.Fatalf("%s %s: Ready with boot id %s (server %s, before %s)", worker, what, h.NodeBootID, h.HostBootID, oldBoot)
			}
			t.Logf("%s %s: Ready from its new boot %v after power-on; %d observations, %d with the old boot id (%d of them with a fresh heartbeat and the condition True: only the boot id told)",
				worker, what, time.Since(since).Round(time.Millisecond), observations, oldSeen, oldFresh)
			return
		}
		if time.Since(since) > 3*time.Minute {
			t.Fatalf("%s %s: not Ready 3 min after power-on: %s", worker, what, h.Reason)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cli runs the tricenter binary against the lab.
type cli struct {
	bin, inv, stateDir string
}

// buildCLI builds tricenter and writes the lab's inventory without the
// servers in drop.
func buildCLI(t testing.TB, ctx context.Context, k *kubeLab, drop ...string) *cli {
	t.Helper()
	c := &cli{bin: filepath.Join(k.dir, "tricenter"), inv: filepath.Join(k.dir, "inventory.yaml"), stateDir: k.stateDir}
	build := exec.CommandContext(ctx, "go", "build", "-o", c.bin, "./cmd/tricenter")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building tricenter: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(k.inv), "\n") {
		if !slices.ContainsFunc(drop, func(d string) bool { return strings.Contains(l, "name: "+d+",") }) {
			lines = append(lines, l)
		}
	}
	if err := os.WriteFile(c.inv, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// run is one tricenter process; its stderr is kept and scanned.
type cliRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
	err  error
}

func (c *cli) start(t testing.TB, ctx context.Context, args ...string) *cliRun {
	t.Helper()
	r := &cliRun{done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, c.bin, append(args, "-f", c.inv, "--state-dir", c.stateDir)...)
	r.cmd.Stdout = &r.out
	r.cmd.Stdin = nil
	pr, pw := io.Pipe()
	r.cmd.Stderr = pw
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.mu.Lock()
			r.log.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
	}()
	go func() {
		r.err = r.cmd.Wait()
		pw.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *cliRun) stderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// waitLog waits until the process logged a line with every word in it.
func (r *cliRun) waitLog(t *testing.T, limit time.Duration, words ...string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, l := range strings.Split(r.stderr(), "\n") {
			ok := true
			for _, w := range words {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return
			}
		}
		select {
		case <-r.done:
			t.Fatalf("tricenter ended (%v) before logging %q:\n%s%s", r.err, words, r.out.String(), r.stderr())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tricenter did not log %q within %v:\n%s", words, limit, r.stderr())
		}
	}
}

func (r *cliRun) wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkOneWriter: two CLI applies at once — one holds the locks, the other
// waits its --lock-timeout and fails naming the holder, having changed
// nothing; a holder killed with SIGKILL in the middle of its etcd phase
// keeps the cluster lease until its TTL, then the next run proceeds and
// converges.
func checkOneWriter(t *testing.T, ctx context.Context, k *kubeLab, c *cli) {
	t.Helper()
	// The first run verifies (the pod gate): it holds the locks for tens of
	// seconds.
	a := c.start(t, ctx, "apply", "--yes", "--verify", "--log-format", "text")
	a.waitLog(t, 2*time.Minute, "Holding the run's locks", "cluster lease in etcd")
	b := c.start(t, ctx, "apply", "--yes", "--lock-timeout", "3s")
	errB := b.wait(ctx)
	errA := a.wait(ctx)
	if errA != nil {
		t.Fatalf("the first apply failed: %v\n%s", errA, a.stderr())
	}
	if errB == nil {
		t.Fatalf("the second apply ran while the first held the locks:\n%s", b.stderr())
	}
	holder := fmt.Sprintf("pid %d", a.cmd.Process.Pid)
	if !strings.Contains(b.stderr(), holder) || !strings.Contains(b.stderr(), "tricenter apply") {
		t.Errorf("the refused apply does not name its holder (%s):\n%s", holder, b.stderr())
	}
	if strings.Contains(b.out.String(), "applied ") {
		t.Errorf("the refused apply applied something:\n%s", b.out.String())
	}
	t.Logf("two applies at once: the second refused: %s", lastLine(b.stderr()))

	// kill -9 in the middle of the etcd phase of its plan: an apply holds
	// the locks from before its plan to after its gates.
	killed := c.start(t, ctx, "apply", "--yes", "--log-format", "text")
	killed.waitLog(t, 2*time.Minute, "Applying component", "component=etcd", "dry_run=true")
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.done
	killedAt := time.Now()
	next := c.start(t, ctx, "apply", "--yes", "--lock-timeout", "90s", "--log-format", "text")
	if err := next.wait(ctx); err != nil {
		t.Fatalf("the apply after the killed one failed: %v\n%s%s", err, next.out.String(), next.stderr())
	}
	took := time.Since(killedAt)
	if !strings.Contains(next.stderr(), fmt.Sprintf("pid %d", killed.cmd.Process.Pid)) {
		t.Errorf("the next apply did not wait for the killed run's lease:\n%s", next.stderr())
	}
	if !strings.Contains(next.out.String(), "gate") {
		t.Errorf("the next apply ran no gates:\n%s", next.out.String())
	}
	t.Logf("apply killed in its plan's etcd phase: the next apply waited for its lease (TTL %v) and converged %v after the kill",
		installer.DefaultLockTTL, took.Round(time.Millisecond))
	conv := c.start(t, ctx, "apply", "--yes")
	if err := conv.wait(ctx); err != nil || !strings.Contains(conv.out.String(), "0 hosts changed") {
		t.Errorf("after the recovery the cluster is not converged (%v):\n%s", err, conv.out.String())
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// healthy waits until Engine.Status finds everything as planned.
func healthy(t *testing.T, ctx context.Context, e *installer.Engine, limit time.Duration, what string) {
	t.Helper()
	if err := pollUntil(ctx, limit, func() error {
		st, err := e.Status(ctx)
		if err != nil {
			return err
		}
		if !st.OK() {
			return errors.New(strings.Join(st.Problems, "; "))
		}
		return nil
	}); err != nil {
		t.Fatalf("the cluster is not healthy %s: %v", what, err)
	}
}
