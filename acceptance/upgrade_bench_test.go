package acceptance

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/installer"
)

// BenchmarkUpgrade measures, on the nspawn lab (artifacts built
// beforehand), a rolling upgrade from upgradeFromKubernetes and
// upgradeFromEtcd to the inventory's releases while the API's /readyz
// through the VIP and a Service through its load-balancer VIP are asked
// every 100 ms from outside the racks (the lab's core router, through
// the TORs' ECMP) and etcd takes a write every 100 ms: total and per-step time,
// each probe's failures and longest gap, and the acknowledged writes lost,
// against the goals of 0 failed probes and 0 lost writes.
func BenchmarkUpgrade(b *testing.B) {
	k := startKubeLab(b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	e := k.engine(b, atReleases(k.cluster(b, newWorker), upgradeFromKubernetes, upgradeFromEtcd))
	coldStart := time.Now()
	if _, err := e.Apply(ctx, installer.Options{}); err != nil {
		b.Fatalf("installing %s / etcd %s: %v", upgradeFromKubernetes, upgradeFromEtcd, err)
	}
	cold := time.Since(coldStart)
	kc, err := e.AdminKubeconfig("")
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig := filepath.Join(k.dir, "admin.conf")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		b.Fatal(err)
	}
	target := k.cluster(b, newWorker)
	url := deployUpgradeWorkload(b, ctx, k, kubeconfig, upgradeVIP(b, target))
	time.Sleep(5 * time.Second) // a baseline before the first step
	probes := startUpgradeProbes(b, ctx, k, e, url)
	// The upgrade's log, to set the probes' failures against.
	var upLog bgplab.SyncBuffer
	up := k.engineLogging(b, target, k.stateDir, slog.New(slog.NewTextHandler(&upLog, &slog.HandlerOptions{Level: slog.LevelInfo})))
	start := time.Now()
	res, err := up.Upgrade(ctx, installer.UpgradeOptions{})
	took := time.Since(start)
	if err != nil {
		b.Fatalf("upgrade: %v", err)
	}
	time.Sleep(5 * time.Second)
	lost, err := probes.finish(ctx, up)
	if err != nil {
		b.Fatal(err)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nupgrade %s / etcd %s → %s / etcd %s on %d servers (installed cold in %.0fs): %d steps in %.1fs\n",
		upgradeFromKubernetes, upgradeFromEtcd, target.Spec.Kubernetes.Version, target.Spec.Etcd.Version, len(target.Hosts()),
		cold.Seconds(), len(res.Plan.Steps), took.Seconds())
	fmt.Fprintf(&out, "%-4s %-14s %-22s %-16s %8s\n", "step", "component", "action", "host", "took")
	steps := res.Plan.Steps
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].Number < steps[j].Number })
	for _, s := range steps {
		fmt.Fprintf(&out, "%-4d %-14s %-22s %-16s %7.1fs\n", s.Number, s.Component, s.Action, s.Host, res.Outcome.Took[s.ID].Seconds())
	}
	if res.Apply != nil {
		var gates time.Duration
		for _, g := range res.Apply.Gates {
			gates += g.Took
		}
		fmt.Fprintf(&out, "apply after the upgrade: %d hosts changed, gates %.1fs\n", len(res.Apply.Changes), gates.Seconds())
	}
	fmt.Fprintf(&out, "%-26s %8s %8s %12s  goal\n", "probe (every 100 ms)", "ok", "failed", "longest gap")
	for _, s := range []*probeSeries{&probes.API, &probes.Service} {
		fmt.Fprintf(&out, "%-26s %8d %8d %11.2fs  0 failed\n", s.Name, s.OK, s.Failed, s.LongestGap.Seconds())
		if s.Failed > 0 {
			b.Errorf("%s: %d failed (first: %s)", s.Name, s.Failed, s.FirstError)
		}
	}
	// A write in flight to a member that stops may time out unacknowledged
	// (the client does not retry a Put it sent): the goal is that no
	// acknowledged write is lost.
	fmt.Fprintf(&out, "%-26s %8d %8d %11.2fs  (reported)\n", probes.Etcd.Name, probes.Etcd.OK, probes.Etcd.Failed, probes.Etcd.LongestGap.Seconds())
	fmt.Fprintf(&out, "%-26s %8d %8d %12s  0 lost\n", "etcd acknowledged writes", len(probes.acked), lost, "lost")
	if lost > 0 {
		b.Errorf("%d acknowledged etcd writes lost", lost)
	}
	if w := probes.windows(); w != "" {
		fmt.Fprintf(&out, "the probes' failures:\n%s", w)
	}
	fmt.Fprintf(&out, "the upgrade's timeline:\n%s\n", upgradeTimeline(upLog.String()))
	b.Log(out.String())
}
