//go:build labacc

package lab

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// offWorker is the server BenchmarkLabTerraform powers off through its BMC
// to time a plan with a dead host: a worker on an nspawn machine.
const offWorker = "dc3-r01-w01"

// BenchmarkLabTerraform times examples/lab/main.tf with the real terraform
// binary on the example lab (VMs included), as a platform team meets it —
// the wall clock of each terraform process — on three fresh labs: the
// cold terraform apply (power on through the BMCs → cluster → nodes), then
// three each of terraform plan and the no-op terraform apply, then three
// plans with one worker powered off through its BMC. It prints min, median
// and max and the ratio to each goal: plan and no-op apply ≤ 10% of the
// cold apply, a plan with one server off ≤ 2× the healthy plan.
func BenchmarkLabTerraform(b *testing.B) {
	var cold, plan, noop, planOff []time.Duration
	for i := 1; i <= 3; i++ {
		b.Run(fmt.Sprintf("lab%d", i), func(b *testing.B) {
			timer := &stepTimer{t: b}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
			defer cancel()
			l := startTerraformLab(b, ctx, timer)
			timed := func(what string, f func() error) time.Duration {
				b.Helper()
				start := time.Now()
				if err := f(); err != nil {
					b.Fatalf("%s: %v", what, err)
				}
				took := time.Since(start)
				b.Logf("%-40s %v", what, took.Round(10*time.Millisecond))
				return took
			}
			cold = append(cold, timed("cold terraform apply", func() error { return l.tf.Apply(ctx, l.vars) }))
			for j := 0; j < 3; j++ {
				plan = append(plan, timed("terraform plan", func() error { return planEmpty(ctx, l.tf, l.vars) }))
				noop = append(noop, timed("no-op terraform apply", func() error { return l.tf.Apply(ctx, l.vars) }))
			}
			out, err := exec.CommandContext(ctx, l.bin, "bmc", "off", "-f", l.rec.Inventory, "--server", offWorker, "--yes").CombinedOutput()
			if err != nil {
				b.Fatalf("powering %s off: %v\n%s", offWorker, err, out)
			}
			for j := 0; j < 3; j++ {
				planOff = append(planOff, timed("terraform plan, "+offWorker+" off", func() error {
					changes, err := l.tf.Plan(ctx, l.vars)
					if err == nil && !changes {
						// The server resource wants it on: the plan powers it on.
						err = fmt.Errorf("no change planned for %s, which is off", offWorker)
					}
					return err
				}))
			}
			// A destroy with a server off would wait for it: lab down ends
			// everything anyway.
			l.skipDestroy = true
		})
	}
	if len(cold) != 3 || len(plan) != 9 || len(noop) != 9 || len(planOff) != 9 {
		b.Fatalf("runs missing: %d cold, %d plans, %d no-op applies, %d plans with a server off", len(cold), len(plan), len(noop), len(planOff))
	}
	coldMed, planMed := medianOf(cold), medianOf(plan)
	var out strings.Builder
	fmt.Fprintf(&out, "\nwall clock of terraform on examples/lab (8 servers, 3 centers, 2 of them VMs); 3 labs\n")
	fmt.Fprintf(&out, "%-32s %4s %8s %8s %8s %8s %6s\n", "step", "runs", "min", "median", "max", "goal", "ratio")
	for _, r := range []struct {
		name string
		runs []time.Duration
		goal time.Duration
		of   string
	}{
		{"cold terraform apply", cold, 0, ""},
		{"terraform plan", plan, coldMed / 10, "10% of the cold apply"},
		{"no-op terraform apply", noop, coldMed / 10, "10% of the cold apply"},
		{"terraform plan, one server off", planOff, 2 * planMed, "2× the healthy plan"},
	} {
		s := slices.Clone(r.runs)
		slices.Sort(s)
		med := medianOf(r.runs)
		if r.goal == 0 {
			fmt.Fprintf(&out, "%-32s %4d %7.1fs %7.1fs %7.1fs\n", r.name, len(s), s[0].Seconds(), med.Seconds(), s[len(s)-1].Seconds())
			continue
		}
		fmt.Fprintf(&out, "%-32s %4d %7.1fs %7.1fs %7.1fs %7.1fs %5.2fx  (goal: %s)\n", r.name, len(s), s[0].Seconds(), med.Seconds(),
			s[len(s)-1].Seconds(), r.goal.Seconds(), med.Seconds()/r.goal.Seconds(), r.of)
		if med > r.goal {
			b.Errorf("%s: median %v, goal %v (%s)", r.name, med.Round(time.Millisecond), r.goal.Round(time.Millisecond), r.of)
		}
	}
	b.Log(out.String())
}

// medianOf is the middle duration (the later of the two middle ones for
// an even count).
func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
