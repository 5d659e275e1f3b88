package bgpagent

// Hold and Release against real FRR (Debian frr's zebra + bgpd) and real
// tricenter-bgp agents in network namespaces (bgp/bgplab, as bgp/agent's
// FRR tests): the core router of bgp/testdata/core.yaml, control-plane
// nodes n1 and n2 announcing the API VIP while their /readyz (a switchable
// endpoint in each node's namespace) passes. hold and release run the
// agent's command line in n1's namespace, as Hold runs it on a server over
// SSH (the transport is installer/phase's, tested there).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// nsRunner runs commands in a lab node's namespace.
type nsRunner struct {
	name string
	ns   *labnet.NS
	t    *testing.T
}

func (r nsRunner) String() string { return r.name }
func (r nsRunner) DryRun() bool   { return false }
func (r nsRunner) Logf(format string, args ...any) {
	r.t.Logf("%s: %s", r.name, fmt.Sprintf(format, args...))
}

func (r nsRunner) Run(ctx context.Context, c phase.Command) error {
	cmd := r.ns.Command(ctx, "sh", "-c", c.Cmd)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = c.Stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", c.Cmd, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// readyz is a switchable /readyz inside a node's namespace.
type readyz struct{ ok atomic.Bool }

func serveReadyz(t *testing.T, ns *labnet.NS) *readyz {
	t.Helper()
	l, err := bgplab.ListenTCP(ns, "127.0.0.1:6443")
	if err != nil {
		t.Fatal(err)
	}
	h := &readyz{}
	h.ok.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !h.ok.Load() {
			http.Error(w, "[-]shutdown failed: reason withheld", http.StatusInternalServerError)
		}
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return h
}

func TestHoldAgainstFRR(t *testing.T) {
	testenv.Need(t, bgplab.Available())
	dir := t.TempDir()
	bin, err := bgplab.BuildAgent("../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	c, plan := bgplab.LoadPlan(t, "../../bgp/testdata/core.yaml", bgp.Options{})
	topo, err := bgplab.Build(c, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("removing the lab network: %v", err)
		}
	})
	conf, err := bgp.RenderFRR(plan, "core-a1", bgp.FRROptions{})
	if err != nil {
		t.Fatal(err)
	}
	router, err := bgplab.StartRouter(topo.Routers["core-a1"], "core-a1", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		router.Stop()
		if t.Failed() {
			t.Logf("FRR log:\n%s", router.Log.String())
		}
	})

	vip := plan.APIVIP.String() + "/32"
	addr := map[string]string{}
	ready := map[string]*readyz{}
	agents := map[string]*bgplab.Agent{}
	cfgs := map[string]*bgp.Config{}
	start := func(node string) *bgplab.Agent {
		a, err := bgplab.StartAgent(topo.Nodes[node], bin, filepath.Join(dir, node), cfgs[node])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := a.Stop(); err != nil && !a.Exited() {
				t.Errorf("stopping agent %s: %v", node, err)
			}
			if t.Failed() {
				t.Logf("agent %s log:\n%s", node, a.Log.String())
			}
		})
		if _, err := bgplab.WaitEstablished(context.Background(), a, 15*time.Second); err != nil {
			t.Fatalf("agent %s: %v", node, err)
		}
		agents[node] = a
		return a
	}
	for _, node := range []string{"n1", "n2"} {
		n, ok := plan.Node(node)
		if !ok || !n.ControlPlane {
			t.Fatalf("%s is not a control-plane node of the lab inventory", node)
		}
		addr[node] = n.Address.String()
		ready[node] = serveReadyz(t, topo.Nodes[node])
		cfg, err := plan.AgentConfig(node, bgp.ConfigOptions{
			APIHealthURL: "http://127.0.0.1:6443/readyz", APIHealthCA: "-", CheckInterval: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.HoldDir = filepath.Join(dir, node, "holds")
		cfgs[node] = cfg
		start(node)
	}
	if _, err := router.WaitNextHops(vip, []string{addr["n1"], addr["n2"]}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	n1 := nsRunner{name: "n1", ns: topo.Nodes["n1"], t: t}
	cli := agentCLI{bin: bin, config: agents["n1"].ConfigPath}
	ctx := context.Background()

	t.Run("after Hold returns FRR no longer routes the VIP to n1", func(t *testing.T) {
		// n1's /readyz passes throughout: only the hold withdraws.
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		began := time.Now()
		if err := hold(hctx, n1, cli, APIServerService, "upgrading kube-apiserver", RouteSettle); err != nil {
			t.Fatal(err)
		}
		// One read of FRR's BGP table and of the router's kernel table,
		// right after Hold returned: no polling.
		t.Logf("Hold returned after %s", time.Since(began))
		if got := frrPaths(t, router, vip); len(got) != 1 || got[0].nextHop != addr["n2"] || got[0].removed {
			t.Errorf("FRR's BGP table right after Hold: %+v, want only n2's path", got)
		}
		if k, err := router.KernelNextHops(vip); err != nil || !slices.Equal(k, []string{addr["n2"]}) {
			t.Errorf("router kernel right after Hold: %v (%v), want only n2", k, err)
		}
		out, err := topo.Nodes["n1"].Command(ctx, bin, "status", "--socket", agents["n1"].Socket).CombinedOutput()
		if err != nil {
			t.Fatalf("tricenter-bgp status: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "kube-apiserver   held     "+plan.APIVIP.String()) || !strings.Contains(string(out), "held: upgrading kube-apiserver (since ") {
			t.Errorf("status does not show the hold:\n%s", out)
		}
		// Idempotent: holding again changes nothing on the router.
		if err := hold(hctx, n1, cli, APIServerService, "upgrading kube-apiserver, again", RouteSettle); err != nil {
			t.Fatal(err)
		}
		if got, err := router.NextHops(vip); err != nil || !slices.Equal(got, []string{addr["n2"]}) {
			t.Errorf("after a second hold FRR has %v (%v)", got, err)
		}
	})

	t.Run("the hold survives a restart of the agent", func(t *testing.T) {
		if err := agents["n1"].Stop(); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		start("n1")
		// Established, /readyz passes (rise 1 at 100 ms), the pod CIDR is
		// announced: the VIP must not be.
		n, _ := plan.Node("n1")
		if _, err := router.WaitNextHops(n.PodCIDR.String(), []string{addr["n1"]}, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // three check intervals: nothing to poll for
		if got, err := router.NextHops(vip); err != nil || !slices.Equal(got, []string{addr["n2"]}) {
			t.Fatalf("%s after restarting a held agent: FRR has next hops %v (%v), want only n2", time.Since(began), got, err)
		}
	})

	t.Run("after Release the VIP is back once readyz passes", func(t *testing.T) {
		ready["n1"].ok.Store(false)
		if err := release(ctx, n1, cli, APIServerService); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // three failing checks: nothing to poll for
		if got, err := router.NextHops(vip); err != nil || !slices.Equal(got, []string{addr["n2"]}) {
			t.Fatalf("released with a failing /readyz: FRR has %v (%v), want only n2", got, err)
		}
		ready["n1"].ok.Store(true)
		took, err := router.WaitNextHops(vip, []string{addr["n1"], addr["n2"]}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("VIP back on n1 %s after /readyz passed", took)
		if err := release(ctx, n1, cli, APIServerService); err != nil {
			t.Errorf("second release: %v", err)
		}
		if _, err := os.Stat(bgp.HoldFile(cfgs["n1"].HoldDir, APIServerService)); !os.IsNotExist(err) {
			t.Errorf("hold file after release: %v", err)
		}
	})

	// What RouteSettle covers: the agent returns once the withdrawal is
	// written; FRR marks the path removed in its BGP table as it reads the
	// UPDATE, and moves traffic (best path, kernel) after its route
	// processing delay.
	t.Run("FRR moves traffic within RouteSettle of the withdrawal", func(t *testing.T) {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := hold(hctx, n1, cli, APIServerService, "measuring", 0); err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		marked, err := bgplab.WaitFor(RouteSettle, time.Millisecond, func() (bool, error) {
			for _, p := range frrPaths(t, router, vip) {
				if p.nextHop == addr["n1"] && !p.removed {
					return false, fmt.Errorf("FRR still has n1's path: %+v", p)
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		gone, err := router.WaitNextHops(vip, []string{addr["n2"]}, RouteSettle)
		if err != nil {
			t.Fatal(err)
		}
		moved := gone + marked
		t.Logf("after the agent returned: n1's path marked removed in FRR's BGP table after %s, gone from the table and the kernel after %s (RouteSettle %s)", marked, time.Since(returned), RouteSettle)
		if moved > RouteSettle {
			t.Errorf("FRR took %s to move the VIP's traffic, more than RouteSettle %s", moved, RouteSettle)
		}
		if err := release(ctx, n1, cli, APIServerService); err != nil {
			t.Fatal(err)
		}
	})
}

type frrPath struct {
	nextHop string
	removed bool
}

// frrPaths reads FRR's BGP paths to prefix with their removed flag (set
// between reading a withdrawal and processing it).
func frrPaths(t *testing.T, r *bgplab.Router, prefix string) []frrPath {
	t.Helper()
	out, err := r.Vty("bgpd", "show bgp ipv4 unicast "+prefix+" json")
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Prefix string `json:"prefix"`
		Paths  []struct {
			Removed  bool `json:"removed"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("parsing FRR output for %s: %v: %q", prefix, err, out)
	}
	if resp.Prefix != "" && resp.Prefix != prefix {
		return nil // FRR answered with a covering prefix
	}
	var paths []frrPath
	for _, p := range resp.Paths {
		fp := frrPath{removed: p.Removed}
		if len(p.Nexthops) > 0 {
			fp.nextHop = p.Nexthops[0].IP
		}
		paths = append(paths, fp)
	}
	return paths
}
