package acceptance

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// BenchmarkLoadBalancer measures LoadBalancer Services on a fresh nspawn
// lab (the lab's 1 s / 3 s BGP timers), from the core router's namespace
// outside the racks, against probe pods on one nspawn node per center:
//   - Service created → address assigned → route at the core router →
//     first successful request (five times; goal ≤ 2 s);
//   - the last ready endpoint on a node deleted → that node's route gone
//     from the TOR, counted from the EndpointSlice update (three times;
//     goal ≤ 1 s), with the requests failed meanwhile and the longest gap;
//   - prefer production: production's pod deleted → traffic in local DR,
//     then back once it is ready again (three times), failed requests and
//     longest gap;
//   - a node's power cut through its BMC (ipmi_sim) → the TOR drops its
//     next hop (goal: within the 3 s hold time), failed requests.
//
// Requests go every 20 ms, each on a new connection with a 500 ms
// timeout.
func BenchmarkLoadBalancer(b *testing.B) {
	k := startKubeLab(b)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	e := k.engine(b, k.cluster(b))
	res, err := e.Apply(ctx, installer.Options{})
	if err != nil {
		b.Fatalf("apply: %v\ngates failed: %v", err, failedGates(res))
	}
	l := newLBLab(b, ctx, k, e)
	defer l.close()
	pods := map[string]string{"dc1": staleWorker, "dc2": newWorker, "dc3": "dc3-r01-s01"}
	centers := []string{"dc1", "dc2", "dc3"}
	for _, c := range centers {
		l.pod(c, pods[c])
	}
	l.waitReady(len(pods))
	var all []string
	for _, c := range centers {
		all = append(all, l.addr[pods[c]])
	}
	var rows []benchRow

	// Announce.
	var assigned, routed, served []time.Duration
	for i := range 5 {
		name := fmt.Sprintf("announce-%d", i)
		start := time.Now()
		l.service(name, corev1.ServiceExternalTrafficPolicyLocal, lb.PreferNone, nil)
		ip := l.fastAddress(name)
		assigned = append(assigned, time.Since(start))
		l.corePoll(ip)
		routed = append(routed, time.Since(start))
		l.firstOK(ip, 10*time.Second)
		served = append(served, time.Since(start))
		if err := l.cs.CoreV1().Services(lbNamespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		l.nextHops(ip, nil, 10*time.Second)
	}
	rows = append(rows,
		benchRow{what: "Service created → address assigned", d: assigned},
		benchRow{what: "→ route at the core router", d: routed},
		benchRow{what: "→ first successful request from the core router", d: served, goal: 2 * time.Second})

	// Withdrawal of a node's last endpoint.
	l.service("withdraw", corev1.ServiceExternalTrafficPolicyLocal, lb.PreferNone, nil)
	wip := l.address("withdraw")
	l.nextHops(wip, all, 10*time.Second)
	var withdraw []time.Duration
	var wLoad []reqResult
	for _, c := range centers {
		load := l.startLoad(wip)
		time.Sleep(time.Second)
		es := l.watchEndpoint("withdraw", pods[c])
		l.deletePod(c)
		at := l.recv(es, "the EndpointSlice update")
		gone := l.waitKernel(wip, func(hops []string) bool { return !slices.Contains(hops, l.addr[pods[c]]) })
		withdraw = append(withdraw, gone.Sub(at))
		time.Sleep(time.Second)
		wLoad = append(wLoad, load.stop())
		l.pod(c, pods[c])
		l.waitReady(len(pods))
		l.nextHops(wip, all, 10*time.Second)
	}
	rows = append(rows, benchRow{what: "last endpoint on a node gone (EndpointSlice) → its route withdrawn at the TOR", d: withdraw, goal: time.Second, load: wLoad})

	// Preference: production, then local DR, and back.
	l.service("prefer", corev1.ServiceExternalTrafficPolicyLocal, lb.PreferProduction, nil)
	pip := l.address("prefer")
	l.nextHops(pip, []string{l.addr[pods["dc1"]]}, 10*time.Second)
	var away, back []time.Duration
	var aLoad, bLoad []reqResult
	for range 3 {
		load := l.startLoad(pip)
		time.Sleep(time.Second)
		es := l.watchEndpoint("prefer", pods["dc1"])
		l.deletePod("dc1")
		at := l.recv(es, "the EndpointSlice update")
		moved := l.waitKernel(pip, func(h []string) bool { return slices.Equal(h, []string{l.addr[pods["dc2"]]}) })
		away = append(away, moved.Sub(at))
		time.Sleep(time.Second)
		aLoad = append(aLoad, load.stop())

		load = l.startLoad(pip)
		time.Sleep(time.Second)
		ready := l.watchReady("prefer", pods["dc1"])
		l.pod("dc1", pods["dc1"])
		at = l.recv(ready, "the EndpointSlice showing the pod ready")
		moved = l.waitKernel(pip, func(h []string) bool { return slices.Equal(h, []string{l.addr[pods["dc1"]]}) })
		back = append(back, moved.Sub(at))
		time.Sleep(time.Second)
		bLoad = append(bLoad, load.stop())
	}
	rows = append(rows,
		benchRow{what: "prefer production: production's last endpoint gone → traffic in local DR", d: away, load: aLoad},
		benchRow{what: "prefer production: production ready again → traffic back", d: back, load: bLoad})

	// A node's power cut through its BMC.
	victim := pods["dc2"]
	bmc := l.bmcFor(victim)
	load := l.startLoad(wip)
	time.Sleep(time.Second)
	cut := time.Now()
	if out, err := bmc.Ipmitool(ctx, "chassis", "power", "off"); err != nil {
		b.Fatalf("BMC power off of %s: %v: %s", victim, err, out)
	}
	gone := l.waitKernel(wip, func(h []string) bool { return !slices.Contains(h, l.addr[victim]) })
	time.Sleep(time.Second)
	hold := time.Duration(k.lab.BGPPlan().HoldSeconds) * time.Second
	rows = append(rows, benchRow{what: "node power cut through its BMC → the TOR drops its next hop", d: []time.Duration{gone.Sub(cut)}, goal: hold, load: []reqResult{load.stop()}})

	printLBTable(b, rows)
}

// benchRow is one line of the table.
type benchRow struct {
	what string
	d    []time.Duration
	goal time.Duration
	load []reqResult
}

func printLBTable(b *testing.B, rows []benchRow) {
	var s strings.Builder
	fmt.Fprintf(&s, "\nLoadBalancer Services on the nspawn lab, from the core router (n runs: min / median / max)\n")
	fmt.Fprintf(&s, "%-80s %3s %8s %8s %8s %8s %6s %s\n", "", "n", "min", "median", "max", "goal", "ratio", "requests failed / longest gap")
	for _, r := range rows {
		ds := slices.Clone(r.d)
		slices.Sort(ds)
		med := ds[len(ds)/2]
		goal, ratio := "-", "-"
		if r.goal > 0 {
			goal = r.goal.String()
			ratio = fmt.Sprintf("%.2f×", float64(ds[len(ds)-1])/float64(r.goal))
		}
		var ld []string
		for _, x := range r.load {
			ld = append(ld, fmt.Sprintf("%d of %d / %v", x.failed, x.total, x.gap.Round(time.Millisecond)))
		}
		fmt.Fprintf(&s, "%-80s %3d %8v %8v %8v %8s %6s %s\n", r.what, len(ds), ds[0].Round(time.Millisecond), med.Round(time.Millisecond),
			ds[len(ds)-1].Round(time.Millisecond), goal, ratio, strings.Join(ld, "; "))
		if r.goal > 0 && ds[len(ds)-1] > r.goal {
			b.Errorf("%s: %v, goal %v", r.what, ds[len(ds)-1], r.goal)
		}
	}
	fmt.Fprintf(&s, "ratio: the slowest run against the goal\n")
	b.Log(s.String())
}

// recv waits at most 30 s for a time on ch.
func (l *lbLab) recv(ch <-chan time.Time, what string) time.Time {
	l.t.Helper()
	select {
	case at := <-ch:
		return at
	case <-time.After(30 * time.Second):
		l.t.Fatalf("no %s in 30 s", what)
	}
	return time.Time{}
}

// fastAddress polls the Service's address every 5 ms.
func (l *lbLab) fastAddress(name string) string {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s, err := l.cs.CoreV1().Services(lbNamespace).Get(l.ctx, name, metav1.GetOptions{})
		if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
			return s.Status.LoadBalancer.Ingress[0].IP
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.t.Fatalf("service %s: no address in 30 s", name)
	return ""
}

// corePoll waits until the core router has ip/32.
func (l *lbLab) corePoll(ip string) {
	l.t.Helper()
	c := l.k.lab.Cores()[0]
	if _, err := bgplab.WaitFor(10*time.Second, 5*time.Millisecond, func() (bool, error) {
		ps, err := c.Paths(ip + "/32")
		return len(ps) > 0, err
	}); err != nil {
		l.t.Fatalf("the core router has no route to %s: %v", ip, err)
	}
}

// firstOK asks http://ip/whoami every 20 ms until it answers.
func (l *lbLab) firstOK(ip string, d time.Duration) {
	l.t.Helper()
	c := l.loadClient()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if get(c, ip) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.t.Fatalf("http://%s/whoami did not answer in %v", ip, d)
}

func (l *lbLab) loadClient() *http.Client {
	core := l.k.lab.Cores()[0].NS
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	return &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return core.DialContext(ctx, d, network, addr)
		}}}
}

func get(c *http.Client, ip string) error {
	resp, err := c.Get("http://" + ip + "/whoami")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// reqResult is what a load saw: requests, failures and the longest
// time between two successes.
type reqResult struct {
	total, failed int
	gap           time.Duration
}

type reqLoad struct {
	stopc chan struct{}
	done  chan reqResult
}

func (x *reqLoad) stop() reqResult {
	close(x.stopc)
	return <-x.done
}

// startLoad sends a request every 20 ms until stopped.
func (l *lbLab) startLoad(ip string) *reqLoad {
	x := &reqLoad{stopc: make(chan struct{}), done: make(chan reqResult, 1)}
	c := l.loadClient()
	go func() {
		var r reqResult
		last := time.Now()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-x.stopc:
				r.gap = max(r.gap, time.Since(last))
				x.done <- r
				return
			case <-tick.C:
			}
			r.total++
			if err := get(c, ip); err != nil {
				r.failed++
				continue
			}
			r.gap = max(r.gap, time.Since(last))
			last = time.Now()
		}
	}()
	return x
}

// watchEndpoint returns a channel that gets the time the Service's
// EndpointSlices first show no ready endpoint on node.
func (l *lbLab) watchEndpoint(svc, node string) <-chan time.Time {
	return l.watchSlices(svc, func(ready []string) bool { return !slices.Contains(ready, node) })
}

// watchReady: the time they first show a ready endpoint on node.
func (l *lbLab) watchReady(svc, node string) <-chan time.Time {
	return l.watchSlices(svc, func(ready []string) bool { return slices.Contains(ready, node) })
}

func (l *lbLab) watchSlices(svc string, cond func(ready []string) bool) <-chan time.Time {
	l.t.Helper()
	out := make(chan time.Time, 1)
	w, err := l.cs.DiscoveryV1().EndpointSlices(lbNamespace).Watch(l.ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		l.t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		ready := map[string][]string{} // slice → ready nodes
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			var nodes []string
			for _, e := range s.Endpoints {
				if e.NodeName != nil && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
					nodes = append(nodes, *e.NodeName)
				}
			}
			ready[s.Name] = nodes
			if ev.Type == "DELETED" {
				delete(ready, s.Name)
			}
			var all []string
			for _, n := range ready {
				all = append(all, n...)
			}
			// The watch starts with the current state; the condition is
			// judged on updates after that as well.
			if ev.Type != "ADDED" && cond(all) {
				out <- time.Now()
				return
			}
		}
	}()
	return out
}

// waitKernel polls the TOR's kernel route to ip every 5 ms until ok, and
// returns when.
func (l *lbLab) waitKernel(ip string, ok func(hops []string) bool) time.Time {
	l.t.Helper()
	r := l.k.lab.Router()
	var at time.Time
	if _, err := bgplab.WaitFor(15*time.Second, 5*time.Millisecond, func() (bool, error) {
		h, err := r.KernelNextHops(ip + "/32")
		if err != nil {
			return false, err
		}
		slices.Sort(h)
		if ok(h) {
			at = time.Now()
			return true, nil
		}
		return false, fmt.Errorf("the TOR routes %s through %v", ip, h)
	}); err != nil {
		l.t.Fatal(err)
	}
	return at
}

// bmcFor starts an ipmi_sim BMC whose power off cuts node's machine.
func (l *lbLab) bmcFor(node string) *ipmisim.BMC {
	l.t.Helper()
	return labBMCs(l.t, l.ctx, l.k, 60, node)[node]
}
