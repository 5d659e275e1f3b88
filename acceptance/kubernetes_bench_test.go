package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer"
)

// cliApply is what `tricenter apply -o json` prints.
type cliApply struct {
	Plan      *installer.Result `json:"plan"`
	Applied   *installer.Result `json:"applied"`
	PlanTime  time.Duration     `json:"planTime"`
	ApplyTime time.Duration     `json:"applyTime"`
}

// benchRun is one timed CLI process.
type benchRun struct {
	took time.Duration // wall clock of the process
	rep  cliApply
}

// BenchmarkKubernetes measures on the nspawn lab (artifacts already
// built), as an operator meets it — the wall clock of the tricenter
// process — a cold `tricenter apply --yes` to every gate passing and the
// no-op `tricenter apply --yes` after it, on three fresh labs, then adding
// one worker on the last. It prints min, median and max with the plan,
// per-component and gate breakdown of the median run, against the goals:
// cold ≤ 10 min, no-op ≤ 10% of the cold apply, add one worker ≤ 2 min
// touching only it.
func BenchmarkKubernetes(b *testing.B) {
	var cold, noop, add []benchRun
	for i := 1; i <= 3; i++ {
		b.Run(fmt.Sprintf("lab%d", i), func(b *testing.B) {
			k := startKubeLab(b)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			c := buildCLI(b, ctx, k, newWorker)
			cold = append(cold, cliApplyTimed(b, ctx, c, "cold apply"))
			r := cliApplyTimed(b, ctx, c, "no-op apply")
			if !r.rep.Applied.Converged() {
				b.Errorf("the no-op apply changed %v, API %v", r.rep.Applied.Changes, r.rep.Applied.APIChanges)
			}
			noop = append(noop, r)
			if i < 3 {
				return
			}
			r = cliApplyTimed(b, ctx, buildCLI(b, ctx, k), "add one worker")
			for h := range r.rep.Applied.Changes {
				if h != newWorker {
					b.Errorf("adding %s touched %s", newWorker, h)
				}
			}
			add = append(add, r)
		})
	}
	if len(cold) != 3 || len(noop) != 3 || len(add) != 1 {
		b.Fatalf("runs missing: %d cold, %d no-op, %d add", len(cold), len(noop), len(add))
	}
	coldMedian := median(cold).took
	var out strings.Builder
	fmt.Fprintf(&out, "\nwall clock of `tricenter apply --yes` on the nspawn lab (7 servers, 3 centers)\n")
	fmt.Fprintf(&out, "%-15s %4s %8s %8s %8s %8s %6s  %s\n", "step", "runs", "min", "median", "max", "goal", "ratio", "breakdown of the median run")
	for _, s := range []struct {
		name string
		runs []benchRun
		goal time.Duration
	}{
		{"cold apply", cold, 10 * time.Minute},
		{"no-op apply", noop, coldMedian / 10},
		{"add one worker", add, 2 * time.Minute},
	} {
		sorted := byTime(s.runs)
		m := sorted[len(sorted)/2]
		fmt.Fprintf(&out, "%-15s %4d %7.1fs %7.1fs %7.1fs %7.1fs %5.2fx  %s\n", s.name, len(s.runs), sorted[0].took.Seconds(),
			m.took.Seconds(), sorted[len(sorted)-1].took.Seconds(), s.goal.Seconds(), m.took.Seconds()/s.goal.Seconds(), breakdown(m))
		if worst := sorted[len(sorted)-1].took; worst > s.goal {
			b.Errorf("%s: the slowest run took %v, goal %v", s.name, worst.Round(time.Millisecond), s.goal.Round(time.Millisecond))
		}
	}
	fmt.Fprintf(&out, "no-op / cold (medians): %.1f%% (goal ≤ 10%%)\n", 100*median(noop).took.Seconds()/coldMedian.Seconds())
	b.Log(out.String())
}

// cliApplyTimed runs `tricenter apply --yes -o json` with args and times
// the process.
func cliApplyTimed(b testing.TB, ctx context.Context, c *cli, what string, args ...string) benchRun {
	b.Helper()
	start := time.Now()
	r := c.start(b, ctx, append([]string{"apply", "--yes", "-o", "json"}, args...)...)
	err := r.wait(ctx)
	run := benchRun{took: time.Since(start)}
	if err != nil {
		b.Fatalf("%s: %v\n%s", what, err, r.stderr())
	}
	if err := json.Unmarshal(r.out.Bytes(), &run.rep); err != nil || run.rep.Applied == nil {
		b.Fatalf("%s: the JSON report (%v):\n%s", what, err, r.out.String())
	}
	if f := failedGates(run.rep.Applied); len(f) > 0 {
		b.Fatalf("%s: gates failed: %v", what, f)
	}
	b.Logf("%s: %v (%s)", what, run.took.Round(time.Millisecond), breakdown(run))
	return run
}

// byTime is a copy of runs, fastest first.
func byTime(runs []benchRun) []benchRun {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b benchRun) int { return int(a.took - b.took) })
	return s
}

// median is the middle run by wall clock (the later of the two middle
// ones for an even count).
func median(runs []benchRun) benchRun {
	s := byTime(runs)
	return s[len(s)/2]
}

// breakdown says where a run's time went: the plan, each component the
// apply walked, the gates, and what else the process spent (start-up,
// loading the state, connecting).
func breakdown(r benchRun) string {
	parts := []string{fmt.Sprintf("plan %.1fs", r.rep.PlanTime.Seconds())}
	a := r.rep.Applied
	for _, t := range a.Timings {
		parts = append(parts, fmt.Sprintf("%s %.1fs", t.Component, t.Took.Seconds()))
	}
	var gates time.Duration
	for _, g := range a.Gates {
		gates += g.Took
	}
	parts = append(parts, fmt.Sprintf("gates %.1fs", gates.Seconds()))
	if len(a.Reused) > 0 {
		var names []string
		for _, c := range a.Reused {
			names = append(names, string(c))
		}
		parts = append(parts, "not walked again: "+strings.Join(names, ","))
	}
	parts = append(parts, "ssh sessions: plan "+sessions(r.rep.Plan)+", apply "+sessions(a))
	rest := r.took - r.rep.PlanTime - r.rep.ApplyTime
	parts = append(parts, fmt.Sprintf("outside plan and apply %.1fs", rest.Seconds()))
	return strings.Join(parts, ", ")
}

// sessions sums the SSH sessions of a run, with the most on one server.
func sessions(r *installer.Result) string {
	var total, most int64
	for _, u := range r.SSH {
		total += u.Sessions
		most = max(most, u.Sessions)
	}
	return fmt.Sprintf("%d (at most %d on a server)", total, most)
}
