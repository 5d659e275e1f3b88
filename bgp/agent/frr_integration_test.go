package agent_test

// Integration tests against FRR 8.4 (Debian frr): each test builds the
// inventory's network out of namespaces on 198.18.32.0/20, starts zebra +
// bgpd configured with `tricenter bgp render-frr` output (bgp.RenderFRR),
// and runs real tricenter-bgp processes in the node namespaces.

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// agentBin is built once per test binary by TestMain (empty when the lab
// cannot run here; skipReason says why).
var agentBin, skipReason string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// Started by a test as a node's agent (see lbagent_test.go).
	if len(os.Args) > 1 && os.Args[1] == "run" {
		return runLBAgent(os.Args[2:])
	}
	if err := bgplab.Available(); err != nil {
		skipReason = err.Error()
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tricenter-bgp-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	agentBin, err = bgplab.BuildAgent("../..", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func needLab(t *testing.T) {
	t.Helper()
	testenv.Require(t, "FRR lab: "+skipReason, skipReason == "")
}

// health is a switchable HTTP health endpoint inside a node namespace.
type health struct{ ok atomic.Bool }

func serveHealth(t *testing.T, topo *bgplab.Topology, node, addr string) *health {
	t.Helper()
	l, err := bgplab.ListenTCP(topo.Nodes[node], addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &health{}
	h.ok.Store(true)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.ok.Load() {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "[-]etcd failed: reason withheld", http.StatusInternalServerError)
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return h
}

type lab struct {
	t      *testing.T
	c      *inventory.Cluster
	plan   *bgp.Plan
	topo   *bgplab.Topology
	dir    string
	router map[string]*bgplab.Router
	agents map[string]*bgplab.Agent
}

func newLab(t *testing.T, file string, opts bgp.Options) *lab {
	t.Helper()
	needLab(t)
	c, plan := bgplab.LoadPlan(t, file, opts)
	topo, err := bgplab.Build(c, plan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("removing the lab network: %v", err)
		}
	})
	return &lab{t: t, c: c, plan: plan, topo: topo, dir: t.TempDir(),
		router: map[string]*bgplab.Router{}, agents: map[string]*bgplab.Agent{}}
}

// startRouter renders the router's FRR configuration exactly as
// `tricenter bgp render-frr` does and starts FRR with it.
func (l *lab) startRouter(name, password string) *bgplab.Router {
	t := l.t
	t.Helper()
	conf, err := bgp.RenderFRR(l.plan, name, bgp.FRROptions{Password: password})
	if err != nil {
		t.Fatal(err)
	}
	r, err := bgplab.StartRouter(l.topo.Routers[name], name, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("FRR %s log:\n%s", name, r.Log.String())
		}
	})
	l.router[name] = r
	return r
}

func (l *lab) agentConfig(node string, o bgp.ConfigOptions) *bgp.Config {
	l.t.Helper()
	cfg, err := l.plan.AgentConfig(node, o)
	if err != nil {
		l.t.Fatal(err)
	}
	return cfg
}

func (l *lab) startAgent(cfg *bgp.Config) *bgplab.Agent {
	t := l.t
	t.Helper()
	a, err := bgplab.StartAgent(l.topo.Nodes[cfg.Node], agentBin, filepath.Join(l.dir, "agent-"+cfg.Node), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil && !a.Exited() {
			t.Errorf("stopping agent %s: %v", cfg.Node, err)
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", cfg.Node, a.Log.String())
		}
	})
	l.agents[cfg.Node] = a
	return a
}

func (l *lab) node(name string) *bgp.Node {
	n, ok := l.plan.Node(name)
	if !ok {
		l.t.Fatalf("no node %s", name)
	}
	return n
}

// waitRoute waits until FRR's BGP table and the router namespace's kernel
// table both have exactly the wanted next hops for prefix (none: gone),
// failing the test at the deadline; it returns how long that took.
func waitRoute(t *testing.T, r *bgplab.Router, prefix string, want []string, d time.Duration) time.Duration {
	t.Helper()
	took, err := r.WaitNextHops(prefix, want, d)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

func establish(t *testing.T, a *bgplab.Agent) *bgp.Status {
	t.Helper()
	st, err := bgplab.WaitEstablished(context.Background(), a, 15*time.Second)
	if err != nil {
		t.Fatalf("agent %s: %v\n%s", a.Name, err, a.Log.String())
	}
	return st
}

func announced(s *bgp.Status) []string {
	var out []string
	for _, a := range s.Announced {
		out = append(out, a.Prefix)
	}
	return out
}

// TestCoreRouter runs three agents in two racks against a core router and
// walks through the agent's life: announcements, ECMP, pod-to-pod traffic
// across racks, health-driven VIP withdrawal, SIGHUP reload, graceful stop
// and a killed agent.
func TestCoreRouter(t *testing.T) {
	t.Parallel()
	lbVIP := netip.MustParseAddr("198.18.46.10")
	l := newLab(t, "../testdata/core.yaml", bgp.Options{LoadBalancerVIPs: []netip.Addr{lbVIP}})
	router := l.startRouter("core-a1", "")
	apiVIP := l.plan.APIVIP.String() + "/32"
	lbPrefix := lbVIP.String() + "/32"

	nodes := []string{"n1", "n2", "n3"} // n1, n2: control plane in r1; n3: worker in r2
	api := map[string]*health{}
	for _, n := range nodes {
		if l.node(n).ControlPlane {
			api[n] = serveHealth(t, l.topo, n, "127.0.0.1:6443")
		}
		serveHealth(t, l.topo, n, "127.0.0.1:10256")
	}
	opts := bgp.ConfigOptions{
		APIHealthURL: "http://127.0.0.1:6443/readyz", APIHealthCA: "-",
		CheckInterval: 100 * time.Millisecond,
	}
	for _, n := range nodes {
		l.startAgent(l.agentConfig(n, opts))
	}
	for _, n := range nodes {
		st := establish(t, l.agents[n])
		if st.Sessions[0].Name != "core-a1" || st.Sessions[0].ASN != 65000 {
			t.Errorf("%s: session %+v, want core-a1 AS 65000", n, st.Sessions[0])
		}
	}
	n1, n2, n3 := l.node("n1"), l.node("n2"), l.node("n3")

	t.Run("pod CIDRs in BGP table and kernel", func(t *testing.T) {
		for _, n := range []*bgp.Node{n1, n2, n3} {
			waitRoute(t, router, n.PodCIDR.String(), []string{n.Address.String()}, 5*time.Second)
			paths, err := router.Paths(n.PodCIDR.String())
			if err != nil {
				t.Fatal(err)
			}
			wantComms := fmt.Sprintf("%d:1:%d %d:2:", l.plan.ASNBase, map[string]int{"r1": 1, "r2": 2}[n.Rack], l.plan.ASNBase)
			if !strings.HasPrefix(paths[0].LargeComms, wantComms) {
				t.Errorf("%s: large communities %q, want prefix %q", n.Name, paths[0].LargeComms, wantComms)
			}
			if paths[0].ASPath != fmt.Sprint(n.ASN) {
				t.Errorf("%s: AS path %q, want %d", n.Name, paths[0].ASPath, n.ASN)
			}
		}
	})

	t.Run("API VIP from both control-plane nodes is ECMP", func(t *testing.T) {
		waitRoute(t, router, apiVIP, []string{n1.Address.String(), n2.Address.String()}, 5*time.Second)
		paths, _ := router.Paths(apiVIP)
		multi := 0
		for _, p := range paths {
			if p.Multipath {
				multi++
			}
		}
		if multi != 2 {
			t.Errorf("API VIP paths %+v: want both multipath", paths)
		}
		waitRoute(t, router, lbPrefix, []string{n1.Address.String(), n2.Address.String(), n3.Address.String()}, 5*time.Second)
	})

	t.Run("pod to pod across racks", func(t *testing.T) {
		if err := bgplab.Ping(l.topo.Nodes["n1"], bgplab.PodIP(n1), bgplab.PodIP(n3)); err != nil {
			t.Fatal(err)
		}
		if err := bgplab.Ping(l.topo.Nodes["n3"], bgplab.PodIP(n3), bgplab.PodIP(n2)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("status table", func(t *testing.T) {
		out, err := l.topo.Nodes["n1"].Command(context.Background(), agentBin, "status", "--socket", l.agents["n1"].Socket).CombinedOutput()
		if err != nil {
			t.Fatalf("tricenter-bgp status: %v\n%s", err, out)
		}
		for _, want := range []string{"core-a1", "Established", n1.PodCIDR.String(), apiVIP, "kube-apiserver"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
		t.Logf("tricenter-bgp status:\n%s", out)
	})

	t.Run("failing readyz withdraws the API VIP, recovery re-announces", func(t *testing.T) {
		api["n1"].ok.Store(false)
		took := waitRoute(t, router, apiVIP, []string{n2.Address.String()}, 5*time.Second)
		t.Logf("API VIP withdrawn from n1 %s after /readyz started failing (fall 2 x 100ms)", took)
		st, err := l.agents["n1"].Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(announced(st), apiVIP) {
			t.Errorf("n1 still announces %s: %v", apiVIP, announced(st))
		}
		// The pod CIDR and the LoadBalancer VIP do not depend on /readyz.
		if !slices.Contains(announced(st), n1.PodCIDR.String()) || !slices.Contains(announced(st), lbPrefix) {
			t.Errorf("n1 announcements %v lost more than the API VIP", announced(st))
		}
		for _, s := range st.Services {
			if s.Name == "kube-apiserver" && (s.Healthy || !strings.Contains(s.Reason, "500")) {
				t.Errorf("service status %+v: want unhealthy with the HTTP status", s)
			}
		}
		api["n1"].ok.Store(true)
		waitRoute(t, router, apiVIP, []string{n1.Address.String(), n2.Address.String()}, 5*time.Second)
	})

	t.Run("SIGHUP adds and removes prefixes without resetting the session", func(t *testing.T) {
		a := l.agents["n3"]
		before, err := a.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		since := before.Sessions[0].Since
		extra := "198.18.46.200/32" // a load-balancer /32: the router accepts the pool's /32s from every node
		cfg := l.agentConfig("n3", opts)
		cfg.Prefixes = append(cfg.Prefixes, extra)
		if err := a.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, router, extra, []string{n3.Address.String()}, 5*time.Second)
		// Now drop the extra prefix and the LoadBalancer service.
		cfg = l.agentConfig("n3", opts)
		cfg.Services = nil
		if err := a.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, router, extra, nil, 5*time.Second)
		waitRoute(t, router, lbPrefix, []string{n1.Address.String(), n2.Address.String()}, 5*time.Second)
		after, err := a.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !after.Sessions[0].Established() || !after.Sessions[0].Since.Equal(since) {
			t.Errorf("session was reset by the reload: before since %v, after %+v", since, after.Sessions[0])
		}
		if got, want := announced(after), []string{n3.PodCIDR.String()}; !slices.Equal(got, want) {
			t.Errorf("announced %v, want %v", got, want)
		}
		// FRR saw no new session either.
		out, err := router.Vty("bgpd", "show bgp neighbors "+n3.Address.String()+" json")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `"connectionsEstablished":1,`) {
			t.Errorf("FRR counts more than one connection from n3: %s", out)
		}
	})

	t.Run("graceful stop withdraws at once", func(t *testing.T) {
		start := time.Now()
		if err := l.agents["n3"].Stop(); err != nil {
			t.Fatal(err)
		}
		waitRoute(t, router, n3.PodCIDR.String(), nil, 2*time.Second)
		t.Logf("n3's pod CIDR gone from FRR and kernel %s after SIGTERM", time.Since(start))
	})

	t.Run("killed agent's routes go within the hold time", func(t *testing.T) {
		start := time.Now()
		l.agents["n2"].Kill()
		hold := time.Duration(l.plan.HoldSeconds) * time.Second
		// Graceful restart keeps the routes as stale for the restart time
		// (hold - keepalive), then FRR drops them.
		waitRoute(t, router, n2.PodCIDR.String(), nil, hold+time.Second)
		waitRoute(t, router, apiVIP, []string{n1.Address.String()}, time.Second)
		took := time.Since(start)
		t.Logf("n2's routes gone %s after SIGKILL (hold time %s)", took, hold)
		if took > hold {
			t.Errorf("routes stayed %s, longer than the hold time %s", took, hold)
		}
	})
}

// TestTORWithPassword peers per-node ASNs with a TOR over TCP MD5.
func TestTORWithPassword(t *testing.T) {
	const pw = "s3cret-md5-password"
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", pw)
	needLab(t)
	l := newLab(t, "../testdata/tor.yaml", bgp.Options{})
	secret, err := l.plan.Password.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	router := l.startRouter("tor1", secret)
	// m1 and m2 are in rack t1: their sessions use t1's password (what
	// the installer writes: bgp.Plan.AgentPassword).
	rackPW, err := l.plan.AgentPassword("m1", secret)
	if err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(l.dir, "password")
	if err := os.WriteFile(pwFile, []byte(rackPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := bgp.ConfigOptions{APIHealthURL: "http://127.0.0.1:6443/readyz", APIHealthCA: "-", PasswordFile: pwFile, CheckInterval: 100 * time.Millisecond}
	serveHealth(t, l.topo, "m1", "127.0.0.1:6443")
	m1, m2 := l.node("m1"), l.node("m2")
	if m1.ASN == m2.ASN {
		t.Fatalf("per-node ASNs: m1 and m2 both have %d", m1.ASN)
	}
	for _, n := range []string{"m1", "m2"} {
		cfg := l.agentConfig(n, opts)
		if data := string(must(cfg.Marshal())); strings.Contains(data, pw) || strings.Contains(data, rackPW) {
			t.Fatal("the agent configuration holds the password")
		}
		establish(t, l.startAgent(cfg))
	}
	waitRoute(t, router, m1.PodCIDR.String(), []string{m1.Address.String()}, 5*time.Second)
	waitRoute(t, router, m2.PodCIDR.String(), []string{m2.Address.String()}, 5*time.Second)
	waitRoute(t, router, l.plan.APIVIP.String()+"/32", []string{m1.Address.String()}, 5*time.Second)
	if err := bgplab.Ping(l.topo.Nodes["m2"], bgplab.PodIP(m2), bgplab.PodIP(m1)); err != nil {
		t.Fatal(err)
	}
	for _, a := range l.agents {
		if strings.Contains(a.Log.String(), pw) || strings.Contains(a.Log.String(), rackPW) {
			t.Errorf("agent %s logged the password", a.Name)
		}
	}

	t.Run("wrong password never establishes", func(t *testing.T) {
		bad := filepath.Join(l.dir, "bad-password")
		if err := os.WriteFile(bad, []byte("wrong"), 0o600); err != nil {
			t.Fatal(err)
		}
		o := opts
		o.PasswordFile = bad
		a := l.agents["m2"]
		if err := a.Reload(l.agentConfig("m2", o)); err != nil {
			t.Fatal(err)
		}
		// The changed password resets the session; it must stay down.
		waitRoute(t, router, m2.PodCIDR.String(), nil, 5*time.Second)
		time.Sleep(3 * time.Second) // two connect attempts; nothing to poll for
		st, err := a.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Sessions[0].Established() {
			t.Fatalf("session with a wrong MD5 password is Established")
		}
		if err := a.Reload(l.agentConfig("m2", opts)); err != nil {
			t.Fatal(err)
		}
		establish(t, a)
		waitRoute(t, router, m2.PodCIDR.String(), []string{m2.Address.String()}, 5*time.Second)
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
