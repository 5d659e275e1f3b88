package acceptance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
)

// BenchmarkKubernetes measures, on the nspawn lab (artifacts already
// built), a cold apply to every gate passing, a no-op re-apply and adding
// one worker, each with its per-component breakdown, against the goals:
// cold ≤ 10 min, no-op ≤ 10% of cold, add-one-worker ≤ 2 min touching one
// host.
func BenchmarkKubernetes(b *testing.B) {
	k := startKubeLab(b)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	type row struct {
		name  string
		took  time.Duration
		res   *installer.Result
		goal  time.Duration
		hosts int
	}
	var rows []row
	run := func(name string, e *installer.Engine, goal time.Duration) *installer.Result {
		start := time.Now()
		res, err := e.Apply(ctx, installer.Options{})
		took := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		rows = append(rows, row{name, took, res, goal, len(res.Changes)})
		return res
	}
	e := k.engine(b, k.cluster(b, newWorker))
	cold := run("cold apply", e, 10*time.Minute)
	_ = cold
	run("no-op re-apply", e, rows[0].took/10)
	if !rows[1].res.Converged() {
		b.Errorf("the re-apply changed %v", rows[1].res.Changes)
	}
	add := run("add one worker", k.engine(b, k.cluster(b)), 2*time.Minute)
	for h := range add.Changes {
		if h != newWorker {
			b.Errorf("adding %s touched %s", newWorker, h)
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-16s %10s %10s %6s %6s  %s\n", "step", "took", "goal", "ratio", "hosts", "breakdown (components, gates)")
	for _, r := range rows {
		var parts []string
		for _, t := range r.res.Timings {
			parts = append(parts, fmt.Sprintf("%s %.1fs", t.Component, t.Took.Seconds()))
		}
		var gates time.Duration
		for _, g := range r.res.Gates {
			gates += g.Took
		}
		parts = append(parts, fmt.Sprintf("gates %.1fs", gates.Seconds()))
		fmt.Fprintf(&out, "%-16s %9.1fs %9.1fs %5.2fx %6d  %s\n", r.name, r.took.Seconds(), r.goal.Seconds(),
			r.took.Seconds()/r.goal.Seconds(), r.hosts, strings.Join(parts, ", "))
		if r.took > r.goal {
			b.Errorf("%s took %v, goal %v", r.name, r.took, r.goal)
		}
	}
	b.Log(out.String())
}
