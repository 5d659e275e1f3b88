package agent_test

// LoadBalancer routes against FRR 8.4. The node agents are this test
// binary started again in the node namespaces (runMain sees "run"): the
// agent package's Agent with its status socket, as cmd/tricenter-bgp runs
// it, whose SIGUSR1 reads a route set from a file next to its
// configuration and hands it to Agent.SetLoadBalancerRoutes — the call
// the LoadBalancer watch makes — so the routes' prepends and withdrawals
// meet a router configured by bgp.RenderFRR.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/agent"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// lbRoutesFile is where a test puts an agent's route set.
func lbRoutesFile(config string) string { return filepath.Join(filepath.Dir(config), "lb-routes.json") }

// runLBAgent is `tricenter-bgp run` with SIGUSR1 setting the
// LoadBalancer routes from lbRoutesFile.
func runLBAgent(args []string) int {
	fs := flag.NewFlagSet("lb-agent", flag.ContinueOnError)
	config := fs.String("config", bgp.DefaultConfigFile, "agent configuration file")
	fs.String("log-level", "debug", "ignored: always debug")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR1)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := bgp.LoadConfig(*config)
	if err != nil {
		log.Error("Loading the configuration failed", "err", err)
		return 1
	}
	a := agent.New(cfg, agent.Options{Logger: log})
	errc := make(chan error, 2)
	go func() { errc <- a.Run(ctx) }()
	go func() {
		if err := bgp.ServeStatus(ctx, cfg.StatusSocket, a, log); err != nil {
			errc <- err
		}
	}()
	for {
		select {
		case err := <-errc:
			if err != nil {
				log.Error("Agent failed", "err", err)
				return 1
			}
			return 0
		case s := <-sig:
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			switch s {
			case syscall.SIGHUP:
				nc, err := bgp.LoadConfig(*config)
				if err == nil {
					err = a.Reload(rctx, nc)
				}
				if err != nil {
					log.Error("Reload failed", "err", err)
				}
			case syscall.SIGUSR1:
				var routes []lb.Route
				data, err := os.ReadFile(lbRoutesFile(*config))
				if err == nil {
					err = json.Unmarshal(data, &routes)
				}
				if err == nil {
					err = a.SetLoadBalancerRoutes(rctx, routes)
				}
				if err != nil {
					log.Error("Setting LoadBalancer routes failed", "err", err)
				}
			}
			cancel()
		}
	}
}

// setLBRoutes hands routes to the agent through SetLoadBalancerRoutes and
// waits until its status shows them.
func setLBRoutes(t *testing.T, a *bgplab.Agent, routes ...lb.Route) {
	t.Helper()
	data, err := json.Marshal(routes)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFileAtomic(lbRoutesFile(a.ConfigPath), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(a.Pid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, err := bgplab.WaitFor(10*time.Second, 5*time.Millisecond, func() (bool, error) {
		st, err := a.Status(context.Background())
		if err != nil {
			return false, err
		}
		var got []bgp.LoadBalancerRoute
		if st.LoadBalancers != nil {
			got = st.LoadBalancers.Routes
		}
		if len(got) != len(routes) {
			return false, fmt.Errorf("agent %s has LoadBalancer routes %+v, want %+v", a.Name, got, routes)
		}
		for _, r := range routes {
			want := bgp.LoadBalancerRoute{Prefix: netip.PrefixFrom(r.Addr, 32).String(), Service: r.Service, Prepends: r.Prepends, Announced: true}
			if !slices.Contains(got, want) {
				return false, fmt.Errorf("agent %s has LoadBalancer routes %+v, want %+v", a.Name, got, want)
			}
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitLBPaths waits until FRR's paths to prefix come from exactly the next
// hops of want, each with an AS path of want[hop] times its node's ASN,
// and the router's kernel forwards to exactly kernel (the best paths).
func waitLBPaths(t *testing.T, r *bgplab.Router, prefix string, want map[*bgp.Node]int, kernel ...*bgp.Node) time.Duration {
	t.Helper()
	var wantKernel []string
	for _, n := range kernel {
		wantKernel = append(wantKernel, n.Address.String())
	}
	slices.Sort(wantKernel)
	took, err := bgplab.WaitFor(10*time.Second, 5*time.Millisecond, func() (bool, error) {
		paths, err := r.Paths(prefix)
		if err != nil {
			return false, err
		}
		var got, exp []string
		for _, p := range paths {
			got = append(got, p.NextHop+" ["+p.ASPath+"]")
		}
		for n, length := range want {
			exp = append(exp, n.Address.String()+" ["+strings.TrimSpace(strings.Repeat(fmt.Sprint(n.ASN)+" ", length))+"]")
		}
		slices.Sort(got)
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			return false, fmt.Errorf("FRR's paths to %s: %v, want %v", prefix, got, exp)
		}
		k, err := r.KernelNextHops(prefix)
		if err != nil {
			return false, err
		}
		slices.Sort(k)
		if !slices.Equal(k, wantKernel) {
			return false, fmt.Errorf("the router's kernel forwards %s to %v, want %v", prefix, k, wantKernel)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return took
}

// TestFRRLoadBalancerRoutes: the core router of core.yaml's site A peers
// with n1 and n2 (production center) and n3 (local DR). LoadBalancer
// routes set on the agents reach it with 1 + prepends ASNs in their AS
// path, the router's best paths are the shortest (ECMP between equal
// ones), the DR node's longer path takes over by itself when the
// production nodes withdraw, and a withdrawal leaves the router's tables.
func TestFRRLoadBalancerRoutes(t *testing.T) {
	t.Parallel()
	l := newLab(t, "../testdata/core.yaml", bgp.Options{})
	router := l.startRouter("core-a1", "")
	n1, n2, n3 := l.node("n1"), l.node("n2"), l.node("n3")
	if n1.CenterRole != "production" || n2.CenterRole != "production" || n3.CenterRole != "local-dr" || n1.ASN == n3.ASN {
		t.Fatalf("core.yaml changed: want n1, n2 in the production center and n3 in the local-DR one, in another rack")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agents := map[*bgp.Node]*bgplab.Agent{}
	for _, n := range []*bgp.Node{n1, n2, n3} {
		cfg := l.agentConfig(n.Name, bgp.ConfigOptions{})
		cfg.Services = nil // no health endpoints here: the pod CIDR and the routes only
		a, err := bgplab.StartAgent(l.topo.Nodes[n.Name], self, filepath.Join(l.dir, "lb-agent-"+n.Name), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := a.Stop(); err != nil && !a.Exited() {
				t.Errorf("stopping agent %s: %v", n.Name, err)
			}
			if t.Failed() {
				t.Logf("agent %s log:\n%s", n.Name, a.Log.String())
			}
		})
		agents[n] = a
	}
	for _, a := range agents {
		establish(t, a)
	}
	web := netip.MustParseAddr("198.18.46.30")   // production preferred: the DR node prepends once
	batch := netip.MustParseAddr("198.18.46.31") // only on n3, two prepends
	webP, batchP := web.String()+"/32", batch.String()+"/32"
	route := func(a netip.Addr, prepends int, svc string) lb.Route {
		return lb.Route{Addr: a, Prepends: prepends, Service: svc}
	}
	for _, n := range []*bgp.Node{n1, n2} {
		prod := lb.Prepends(lb.PreferProduction, n.CenterRole)
		setLBRoutes(t, agents[n], route(web, prod, "shop/web"))
	}
	dr := lb.Prepends(lb.PreferProduction, n3.CenterRole)
	if dr != 1 {
		t.Fatalf("lb.Prepends(production, local-dr) = %d, the test expects 1", dr)
	}
	setLBRoutes(t, agents[n3], route(web, dr, "shop/web"), route(batch, 2, "shop/batch"))

	t.Run("AS path is 1 + prepends long; the shortest paths are best, ECMP among them", func(t *testing.T) {
		waitLBPaths(t, router, webP, map[*bgp.Node]int{n1: 1, n2: 1, n3: 2}, n1, n2)
		waitLBPaths(t, router, batchP, map[*bgp.Node]int{n3: 3}, n3)
		paths, err := router.Paths(webP)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			short := p.NextHop != n3.Address.String()
			if p.Multipath != short {
				t.Errorf("path %+v: multipath %v, want %v (only the shortest AS paths share the traffic)", p, p.Multipath, short)
			}
			if p.Best && !short {
				t.Errorf("the prepended path via n3 is best: %+v", p)
			}
		}
	})

	t.Run("status shows the routes with their Service and prepends", func(t *testing.T) {
		out, err := l.topo.Nodes["n3"].Command(context.Background(), agentBin, "status", "--socket", agents[n3].Socket).CombinedOutput()
		if err != nil {
			t.Fatalf("tricenter-bgp status: %v\n%s", err, out)
		}
		lines := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			lines[strings.Join(strings.Fields(line), " ")] = true
		}
		for _, want := range []string{batchP + " 2 yes shop/batch", webP + " 1 yes shop/web", "LOADBALANCER PREPENDS ANNOUNCED SERVICE"} {
			if !lines[want] {
				t.Errorf("status output lacks the line %q:\n%s", want, out)
			}
		}
		t.Logf("tricenter-bgp status:\n%s", out)
	})

	t.Run("production withdraws: the DR node's path takes over by itself", func(t *testing.T) {
		start := time.Now()
		setLBRoutes(t, agents[n1])
		setLBRoutes(t, agents[n2])
		waitLBPaths(t, router, webP, map[*bgp.Node]int{n3: 2}, n3)
		t.Logf("the router forwards %s to n3 %v after the production nodes' withdrawal was set", webP, time.Since(start).Round(time.Millisecond))
		// Production announces again and draws the traffic back.
		setLBRoutes(t, agents[n1], route(web, 0, "shop/web"))
		waitLBPaths(t, router, webP, map[*bgp.Node]int{n1: 1, n3: 2}, n1)
	})

	t.Run("a withdrawal leaves the router", func(t *testing.T) {
		start := time.Now()
		setLBRoutes(t, agents[n3], route(web, dr, "shop/web"))
		took := waitLBPaths(t, router, batchP, nil)
		t.Logf("%s gone from FRR and the kernel %v after it was set (%v after the agent applied it)", batchP, time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("the withdrawal took %v to reach the router, want at most 1s", took)
		}
		st, err := agents[n3].Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Withdrawing) != 0 {
			t.Errorf("withdrawals still pending: %+v", st.Withdrawing)
		}
	})
}
