// Command bgp-bench measures the BGP agent against a real FRR router (zebra
// + bgpd in a namespace, configured by bgp.RenderFRR) on the lab network of
// bgp/testdata/core.yaml, and prints the figures against the goals:
//
//	agent start -> pod CIDR in FRR's BGP table         <= 2.5 s
//	announcement on an established session -> visible  <= 50 ms
//	graceful stop -> gone                               <= 100 ms
//	killed agent -> gone                                <= 9 s (hold time)
//
// Needs root and the frr package.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func main() {
	inv := flag.String("f", "bgp/testdata/core.yaml", "inventory")
	runs := flag.Int("runs", 10, "iterations of the start, announce and stop measurements")
	kills := flag.Int("kills", 3, "iterations of the kill measurement (each waits for the restart timer)")
	work := flag.String("work", ".cache/bench/bgp", "work directory")
	flag.Parse()
	if err := run(*inv, *work, *runs, *kills); err != nil {
		fmt.Fprintln(os.Stderr, "bgp-bench:", err)
		os.Exit(1)
	}
}

type series struct {
	name, goalText string
	goal           time.Duration
	d              []time.Duration
}

func (s *series) add(d time.Duration) { s.d = append(s.d, d) }

func (s *series) q(p float64) time.Duration {
	x := append([]time.Duration(nil), s.d...)
	sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
	if len(x) == 0 {
		return 0
	}
	return x[int(p*float64(len(x)-1)+0.5)]
}

func run(invPath, work string, runs, kills int) error {
	if err := bgplab.Available(); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	work, _ = filepath.Abs(work)
	bin, err := bgplab.BuildAgent(".", work)
	if err != nil {
		return err
	}
	c, lines, err := inventory.Load(invPath)
	if err != nil {
		return err
	}
	if err := c.Validate(lines).Err(); err != nil {
		return err
	}
	ip, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		return err
	}
	plan, err := bgp.Derive(c, ip, bgp.Options{})
	if err != nil {
		return err
	}
	topo, err := bgplab.Build(c, plan)
	if err != nil {
		return err
	}
	defer topo.Close()
	rt := plan.Routers[0]
	conf, err := bgp.RenderFRR(plan, rt.Name, bgp.FRROptions{})
	if err != nil {
		return err
	}
	router, err := bgplab.StartRouter(topo.Routers[rt.Name], rt.Name, conf)
	if err != nil {
		return err
	}
	defer router.Stop()
	node := plan.NodesOf(rt.Name)[0]
	ns := topo.Nodes[node.Name]
	cfg, err := plan.AgentConfig(node.Name, bgp.ConfigOptions{})
	if err != nil {
		return err
	}
	cfg.Services = nil // no apiserver here: measure the pod CIDR
	pod := node.PodCIDR.String()
	// A load-balancer /32 (the router accepts the pool's /32s from every
	// node, and from each node only its own pod CIDR).
	if len(plan.LoadBalancerPool) == 0 {
		return fmt.Errorf("%s: set network.loadBalancerPool: the bench announces one of its /32s", invPath)
	}
	extra := netip.PrefixFrom(plan.LoadBalancerPool[0].Addr().Next().Next(), 32).String()

	inFRR := func(prefix string) func() (bool, error) {
		return func() (bool, error) {
			p, err := router.Paths(prefix)
			return len(p) > 0, err
		}
	}
	bestFRR := func(prefix string) func() (bool, error) {
		return func() (bool, error) {
			ps, err := router.Paths(prefix)
			for _, p := range ps {
				if p.Best {
					return true, err
				}
			}
			return false, err
		}
	}
	// goneFRR and goneKernel count what is left of a prefix, for waitGone.
	goneFRR := func(prefix string) func() (int, error) {
		return func() (int, error) {
			p, err := router.Paths(prefix)
			return len(p), err
		}
	}
	inKernel := func(prefix string) func() (bool, error) {
		return func() (bool, error) {
			nh, err := router.KernelNextHops(prefix)
			return len(nh) > 0, err
		}
	}
	goneKernel := func(prefix string) func() (int, error) {
		return func() (int, error) {
			nh, err := router.KernelNextHops(prefix)
			return len(nh), err
		}
	}
	start := &series{name: "agent start -> pod CIDR in FRR BGP table", goalText: "<= 2.5 s", goal: 2500 * time.Millisecond}
	startK := &series{name: "agent start -> route in router's kernel", goalText: "(info)"}
	ann := &series{name: "announce (SIGHUP) -> in FRR BGP table", goalText: "<= 50 ms", goal: 50 * time.Millisecond}
	annB := &series{name: "announce (SIGHUP) -> selected best by FRR", goalText: "(info)"}
	annK := &series{name: "announce (SIGHUP) -> in router's kernel", goalText: "(info)"}
	wd := &series{name: "withdraw (SIGHUP) -> gone from FRR", goalText: "(info)"}
	stop := &series{name: "graceful stop (SIGTERM) -> gone from FRR", goalText: "<= 100 ms", goal: 100 * time.Millisecond}
	stopK := &series{name: "graceful stop (SIGTERM) -> gone from kernel", goalText: "(info)"}
	kill := &series{name: "killed agent (SIGKILL) -> gone from FRR", goalText: "<= 9 s", goal: 9 * time.Second}
	const poll = time.Millisecond

	startAgent := func(i int) (*bgplab.Agent, error) {
		a, err := bgplab.StartAgent(ns, bin, filepath.Join(work, fmt.Sprintf("agent-%d", i)), cfg)
		if err != nil {
			return nil, err
		}
		return a, nil
	}
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		a, err := startAgent(i)
		if err != nil {
			return err
		}
		if _, err := bgplab.WaitFor(10*time.Second, poll, inFRR(pod)); err != nil {
			a.Stop()
			return fmt.Errorf("run %d: pod CIDR never appeared: %w\n%s", i, err, a.Log.String())
		}
		start.add(time.Since(t0))
		if _, err := bgplab.WaitFor(5*time.Second, poll, inKernel(pod)); err != nil {
			return err
		}
		startK.add(time.Since(t0))
		if _, err := bgplab.WaitEstablished(context.Background(), a, 5*time.Second); err != nil {
			return err
		}

		with := *cfg
		with.Prefixes = append(append([]string(nil), cfg.Prefixes...), extra)
		if err := a.WriteConfig(&with); err != nil {
			return err
		}
		t1 := time.Now()
		if err := hup(a); err != nil {
			return err
		}
		if _, err := bgplab.WaitFor(5*time.Second, poll, inFRR(extra)); err != nil {
			return err
		}
		ann.add(time.Since(t1))
		if _, err := bgplab.WaitFor(5*time.Second, poll, bestFRR(extra)); err != nil {
			return err
		}
		annB.add(time.Since(t1))
		if _, err := bgplab.WaitFor(5*time.Second, poll, inKernel(extra)); err != nil {
			return err
		}
		annK.add(time.Since(t1))
		if err := a.WriteConfig(cfg); err != nil {
			return err
		}
		t2 := time.Now()
		if err := hup(a); err != nil {
			return err
		}
		if _, err := waitGone(5*time.Second, poll, goneFRR(extra)); err != nil {
			return fmt.Errorf("run %d: %s: %w", i, wd.name, err)
		}
		wd.add(time.Since(t2))

		t3 := time.Now()
		done := make(chan error, 1)
		go func() { done <- a.Stop() }()
		if _, err := waitGone(5*time.Second, poll, goneFRR(pod)); err != nil {
			return fmt.Errorf("run %d: %s: %w", i, stop.name, err)
		}
		stop.add(time.Since(t3))
		if _, err := waitGone(5*time.Second, poll, goneKernel(pod)); err != nil {
			return fmt.Errorf("run %d: %s: %w", i, stopK.name, err)
		}
		stopK.add(time.Since(t3))
		if err := <-done; err != nil {
			return fmt.Errorf("agent exit: %w", err)
		}
	}
	for i := 0; i < kills; i++ {
		a, err := startAgent(runs + i)
		if err != nil {
			return err
		}
		if _, err := bgplab.WaitFor(10*time.Second, poll, inFRR(pod)); err != nil {
			a.Stop()
			return err
		}
		t0 := time.Now()
		a.Kill()
		if _, err := waitGone(20*time.Second, 5*time.Millisecond, goneFRR(pod)); err != nil {
			return fmt.Errorf("kill %d: %s: %w", i, kill.name, err)
		}
		kill.add(time.Since(t0))
	}

	fmt.Printf("BGP agent vs FRR %s (router %s, node %s; hold %d s, graceful-restart time %d s; %d runs, %d kills)\n\n",
		frrVersion(router), rt.Name, node.Name, plan.HoldSeconds, plan.RestartSeconds(), runs, kills)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tgoal\tmedian\tp90\tmax\tmedian/goal\t")
	for _, s := range []*series{start, startK, ann, annB, annK, wd, stop, stopK, kill} {
		if len(s.d) == 0 {
			continue
		}
		ratio := "-"
		if s.goal > 0 {
			ratio = fmt.Sprintf("%.2f", float64(s.q(0.5))/float64(s.goal))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", s.name, s.goalText, fmtD(s.q(0.5)), fmtD(s.q(0.9)), fmtD(s.q(1)), ratio)
	}
	return tw.Flush()
}

// waitGone polls query until it counts nothing left and returns how long
// that took. A failed query fails the measurement at once: a router that
// cannot be asked (FRR down, vtysh or ip failing) has not withdrawn the
// route, so an error is never taken for "gone".
func waitGone(d, interval time.Duration, query func() (int, error)) (time.Duration, error) {
	start := time.Now()
	for {
		n, err := query()
		if err != nil {
			return time.Since(start), fmt.Errorf("querying the router (a failed query is not a withdrawn route): %w", err)
		}
		if n == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > d {
			return time.Since(start), fmt.Errorf("still %d left after %s", n, d)
		}
		time.Sleep(interval)
	}
}

func hup(a *bgplab.Agent) error {
	a.HUP()
	return nil
}

func fmtD(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}

func frrVersion(r *bgplab.Router) string {
	out, err := r.Vty("bgpd", "show version")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FRRouting ") {
			return strings.Fields(l)[1]
		}
	}
	return "?"
}
