package acceptance

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
)

// BenchmarkDisaster measures, on the site-loss lab (one etcd member per
// center, a worker in dc1, a Deployment and a StatefulSet of one replica
// preferring dc1, BMCs for the local site's servers, the lab's 1 ms / 20 ms
// RTTs, snapshots every minute):
//   - leader home: put latency p50/p99 through dc1-r01-s01's endpoint with
//     the etcd leader in dc1, then in dc3;
//   - center loss: dc1 powered off through its BMCs; time until both pods
//     are Ready outside dc1 without fence (bounded wait: Kubernetes evicts
//     after 300 s, and never moves the StatefulSet's pod) and with
//     tricenter fence right after the power-off;
//   - site loss: with writes every 50 ms, dc1 and dc2 powered off; restore
//     from dc3's newest snapshot onto dc3-r01-s01 and two spares at once
//     (the operator's reaction time left out). RPO: acknowledged writes
//     lost, against what the snapshot's revision predicts, every earlier
//     write checked present; RTO: loss → API through the VIP answering,
//     → both pods Running; bytes moved.
func BenchmarkDisaster(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	s := startSiteLossLab(b, ctx)
	e, cs := s.e, s.cs
	out := &benchLog{tb: b}
	fmt.Fprintf(out, "\nDisasters on the nspawn lab (1 ms between dc1 and dc2, 20 ms to dc3)\n")

	// Leader home: put latency through dc1's member.
	p, err := e.EtcdPKI(false)
	if err != nil {
		b.Fatal(err)
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	tc, err := etcd.TLSConfig(p)
	if err != nil {
		b.Fatal(err)
	}
	dc1, _ := e.Cluster().Host("dc1-r01-s01")
	kv, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL(dc1.SSH.Address)}, TLS: tc, DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	fmt.Fprintf(out, "\n%-44s %5s %9s %9s\n", "put through dc1-r01-s01, leader in", "n", "p50", "p99")
	var p50s [2]time.Duration
	for i, target := range []string{"dc1-r01-s01", "dc3-r01-s01"} {
		moveLeader(b, ctx, cli, e, target)
		lat := putLatencies(b, ctx, kv, "/tricenter-bench/leader-"+target, 300)
		p50s[i] = lat[len(lat)/2]
		fmt.Fprintf(out, "%-44s %5d %9v %9v\n", target, len(lat), lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond))
	}
	fmt.Fprintf(out, "leader in dc3 / leader in dc1 (p50): %.1f×\n", float64(p50s[1])/float64(p50s[0]))
	moveLeader(b, ctx, cli, e, "dc1-r01-s01")

	// Center loss, without and with fence.
	fmt.Fprintf(out, "\n%-60s %s\n", "dc1 powered off through its BMCs", "both pods Ready outside dc1 after")
	noFence := 7 * time.Minute
	lossAt := time.Now()
	for _, n := range []string{"dc1-r01-s01", "dc1-r01-w01"} {
		ipmiPowerOff(b, ctx, s.bmcs[n])
	}
	moved := movedAt(ctx, cs, e, lossAt, noFence)
	fmt.Fprintf(out, "%-60s %s\n", "without fence (Kubernetes alone, waited "+noFence.String()+")", moved)
	rejoin(b, ctx, s, "dc1")
	lossAt = time.Now()
	for _, n := range []string{"dc1-r01-s01", "dc1-r01-w01"} {
		ipmiPowerOff(b, ctx, s.bmcs[n])
	}
	if f, err := e.Fence(ctx, installer.FenceOptions{Center: "dc1"}); err != nil || !f.Fenced {
		b.Fatalf("fence: %v %+v", err, f)
	}
	fencedAfter := time.Since(lossAt)
	moved = movedAt(ctx, cs, e, lossAt, noFence)
	fmt.Fprintf(out, "%-60s %s (fence done %v after the power-off)\n", "with tricenter fence right after the power-off", moved, fencedAfter.Round(time.Millisecond))
	rejoin(b, ctx, s, "dc1")

	// Site loss under writes.
	w := startRevWriter(kv, "/tricenter-bench/site-loss/", 50*time.Millisecond)
	time.Sleep(3 * time.Second)
	stateCopy := filepath.Join(s.k.dir, "state-copy")
	if o, err := exec.CommandContext(ctx, "cp", "-a", s.k.stateDir, stateCopy).CombinedOutput(); err != nil {
		b.Fatalf("copying the state: %v\n%s", err, o)
	}
	// At least one snapshot after the writes began.
	if err := pollUntil(ctx, 3*time.Minute, func() error {
		stores, err := e.ListSnapshots(ctx)
		if err != nil {
			return err
		}
		for _, st := range stores {
			if st.Server == "dc3-r01-s01" && st.Newest() != nil && st.Newest().TakenAt.After(w.start) {
				return nil
			}
		}
		return errors.New("no snapshot in dc3 since the writes began")
	}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	lossAt = time.Now()
	s.powerOffSite(b, ctx)
	acked := w.stop()
	s.startSpares(b, ctx)
	e2 := s.k.engineAt(b, s.afterLoss(b), stateCopy)
	apiUp := make(chan time.Duration, 1)
	go func() {
		for ctx.Err() == nil {
			// A write through the VIP: reads may be served from a
			// surviving API server's cache without a quorum.
			if c, err := e2.Clientset(); err == nil {
				qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := c.CoreV1().ConfigMaps("default").Create(qctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{GenerateName: "rto-probe-"}}, metav1.CreateOptions{})
				cancel()
				if err == nil {
					apiUp <- time.Since(lossAt)
					return
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	rep, err := e2.Restore(ctx, installer.RestoreOptions{WaitReachable: 2 * time.Minute})
	if err != nil {
		b.Fatalf("restore: %v", err)
	}
	var apiAfter time.Duration
	select {
	case apiAfter = <-apiUp:
	case <-time.After(time.Minute):
		b.Fatal("the API did not answer through the VIP within a minute of the restore")
	}
	cs2, err := e2.Clientset()
	if err != nil {
		b.Fatal(err)
	}
	waitWorkloads(b, ctx, cs2, inCenter(e2.Cluster(), "dc3"))
	podsAfter := time.Since(lossAt)

	// RPO: every write up to the snapshot's revision is there, none
	// after the snapshot's last one.
	p2, err := e2.EtcdPKI(false)
	if err != nil {
		b.Fatal(err)
	}
	cli2, err := e2.EtcdClient(p2)
	if err != nil {
		b.Fatal(err)
	}
	defer cli2.Close()
	got, err := cli2.KV().Get(ctx, "/tricenter-bench/site-loss/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		b.Fatal(err)
	}
	present := map[string]bool{}
	for _, x := range got.Kvs {
		present[string(x.Key)] = true
	}
	var lost, kept int
	var lastKept time.Time
	for _, a := range acked {
		switch have := present[a.key]; {
		case !have && a.rev <= rep.Snapshot.Revision:
			b.Errorf("%s (revision %d) lost, the snapshot's record is at revision %d", a.key, a.rev, rep.Snapshot.Revision)
		case have:
			kept++
			lastKept = a.at
		default:
			lost++
		}
	}
	// The snapshot holds its recorded revision or a little later: the
	// writes kept form a prefix of the acknowledged ones.
	for i := 1; i < len(acked); i++ {
		if present[acked[i].key] && !present[acked[i-1].key] {
			b.Errorf("write %s kept after %s lost", acked[i].key, acked[i-1].key)
		}
	}
	fmt.Fprintf(out, "\nsite loss (dc1 and dc2 powered off through 3 BMCs) with a write every 50 ms, snapshots every minute\n")
	fmt.Fprintf(out, "  snapshot restored: %s, taken %v before the loss, record at revision %d\n", rep.Snapshot.ID,
		lossAt.Sub(rep.Snapshot.TakenAt).Round(time.Second), rep.Snapshot.Revision)
	fmt.Fprintf(out, "  RPO: %d of %d acknowledged writes lost (the last kept was acknowledged %v before the loss); every write up to the record's revision present\n",
		lost, len(acked), lossAt.Sub(lastKept).Round(time.Millisecond))
	fmt.Fprintf(out, "  RTO: API through the VIP (a write) %v after the loss, both pods Running in dc3 %v after it (goal 10m: %.2f×)\n",
		apiAfter.Round(time.Second), podsAfter.Round(time.Second), float64(podsAfter)/float64(10*time.Minute))
	fmt.Fprintf(out, "  restore (from its start): etcd, BGP agents and control plane on every member %v, converged %v, %.1f MB moved, %d members rebuilt (%d new)\n",
		rep.ControlPlane.Round(time.Second), rep.Done.Round(time.Second), float64(rep.BytesMoved)/1e6, len(rep.Members), len(rep.New))
	if podsAfter > 10*time.Minute {
		b.Errorf("RTO %v over the 10 min goal", podsAfter)
	}
	if kept == 0 || lost == 0 {
		b.Errorf("kept %d, lost %d: the RPO was not measured", kept, lost)
	}
	b.Log("\n" + out.String())
}

// moveLeader moves etcd leadership to member name and waits healthy.
func moveLeader(tb testing.TB, ctx context.Context, cli *etcd.Client, e *installer.Engine, name string) {
	tb.Helper()
	plan := e.Placement().Etcd.Members
	h, err := cli.WaitHealthy(ctx, plan, time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	var leaderURL string
	var to uint64
	for i, m := range plan {
		if h.Endpoints[i].MemberID == h.Leader {
			leaderURL = etcd.ClientURL(m.Address)
		}
		if m.Name == name {
			to = h.Endpoints[i].MemberID
		}
	}
	if to != h.Leader {
		if err := cli.MoveLeader(ctx, leaderURL, to); err != nil {
			tb.Fatal(err)
		}
	}
	if h, err = cli.WaitHealthy(ctx, plan, time.Minute); err != nil || h.Leader != to {
		tb.Fatalf("leader after the move: %x, want %x (%s): %v", h.Leader, to, name, err)
	}
}

func putLatencies(tb testing.TB, ctx context.Context, kv *clientv3.Client, prefix string, n int) []time.Duration {
	tb.Helper()
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := kv.Put(ctx, fmt.Sprintf("%s/%d", prefix, i), "x"); err != nil {
			tb.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	if _, err := kv.Delete(ctx, prefix+"/", clientv3.WithPrefix()); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// movedAt waits up to limit for both pods to be Ready outside dc1 and
// says when each was, counted from lossAt, or that it was not.
func movedAt(ctx context.Context, cs kubernetes.Interface, e *installer.Engine, lossAt time.Time, limit time.Duration) string {
	away := outside(e.Cluster(), "dc1")
	when := map[string]time.Duration{}
	for time.Since(lossAt) < limit && len(when) < 2 && ctx.Err() == nil {
		for _, app := range []string{"web", "db"} {
			if _, done := when[app]; done {
				continue
			}
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				continue
			}
			for _, p := range pods.Items {
				if podReady(&p) && away(p.Spec.NodeName) == nil {
					when[app] = time.Since(lossAt)
				}
			}
		}
		time.Sleep(time.Second)
	}
	var parts []string
	for _, app := range []string{"web", "db"} {
		what := map[string]string{"web": "Deployment", "db": "StatefulSet"}[app]
		if d, ok := when[app]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", what, d.Round(time.Second)))
		} else {
			parts = append(parts, fmt.Sprintf("%s not within %v", what, limit))
		}
	}
	return strings.Join(parts, ", ")
}

// rejoin powers center's lost machines on, waits until unfence finds
// their Nodes Ready (taking a fence's taints off), and puts the pods
// back in dc1.
func rejoin(tb testing.TB, ctx context.Context, s *siteLossLab, center string) {
	tb.Helper()
	for _, h := range s.e.Cluster().Hosts() {
		if h.Center.Name == center && !s.k.lab.Machine(h.Name).Running() {
			if err := s.k.lab.Machine(h.Name).Start(ctx); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := pollUntil(ctx, 5*time.Minute, func() error {
		u, err := s.e.Unfence(ctx, center, false)
		if err != nil {
			return err
		}
		if !u.Unfenced {
			return fmt.Errorf("not back: %+v", u.Servers)
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, h := range s.e.Cluster().Hosts() {
		if h.Center.Name == center {
			names = append(names, h.Name)
		}
	}
	waitUntainted(tb, ctx, s.cs, names...)
	zero := int64(0)
	for _, app := range []string{"web", "db"} {
		if err := s.cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero},
			metav1.ListOptions{LabelSelector: "app=" + app}); err != nil {
			tb.Fatal(err)
		}
	}
	waitWorkloads(tb, ctx, s.cs, inCenter(s.e.Cluster(), center))
}

// ackedWrite is one acknowledged put of a revWriter.
type ackedWrite struct {
	key string
	rev int64
	at  time.Time
}

// revWriter puts a new key every interval and records each acknowledged
// one with its revision.
type revWriter struct {
	start  time.Time
	mu     sync.Mutex
	acked  []ackedWrite
	cancel context.CancelFunc
	done   chan struct{}
}

func startRevWriter(kv *clientv3.Client, prefix string, every time.Duration) *revWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &revWriter{start: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ctx.Err() == nil; i++ {
			key := fmt.Sprintf("%s%08d", prefix, i)
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			r, err := kv.Put(pctx, key, "x")
			pcancel()
			if err == nil {
				w.mu.Lock()
				w.acked = append(w.acked, ackedWrite{key: key, rev: r.Header.Revision, at: time.Now()})
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	return w
}

// stop ends the writes and returns those acknowledged, in order.
func (w *revWriter) stop() []ackedWrite {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

// benchLog collects the table and logs each line as it is written, so a
// run that fails later keeps what it measured.
type benchLog struct {
	tb testing.TB
	strings.Builder
}

func (l *benchLog) Write(p []byte) (int, error) {
	l.tb.Log(strings.TrimRight(string(p), "\n"))
	return l.Builder.Write(p)
}
