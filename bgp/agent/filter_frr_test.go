package agent_test

// The routers' per-node inbound filters and per-rack TCP-MD5 passwords
// (bgp.RenderFRR), against FRR 8.4: real tricenter-bgp agents in node
// namespaces announce what they must not, and bgpd, configured with
// exactly what `tricenter bgp render-frr` renders, drops it.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// filterSecret is the cluster's network.bgp.password in these tests.
const filterSecret = "filter-test-cluster-secret"

// filterLab is one router of a lab (see newLab) and its node agents.
type filterLab struct {
	*lab
	name string
	rtr  *bgplab.Router
}

// newFilterLab builds the inventory's network, renders the router's
// configuration with the cluster secret, starts FRR with it and has bgpd
// log every inbound update it denies.
func newFilterLab(t *testing.T, inventoryFile, router string, opts bgp.Options) *filterLab {
	t.Helper()
	l := newLab(t, inventoryFile, opts)
	var pw string
	if !l.plan.Password.IsZero() {
		pw = filterSecret
	}
	conf, err := bgp.RenderFRR(l.plan, router, bgp.FRROptions{Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), filterSecret) {
		t.Fatal("the rendered router configuration holds the cluster secret")
	}
	if strings.Contains(string(conf), "listen range") {
		t.Fatal("the rendered router configuration has a listen range")
	}
	r := l.startRouter(router, pw)
	// "rcvd UPDATE about P -- DENIED due to: route-map" in bgpd's log
	// proves that a prefix missing from the table did reach the router.
	for _, cmd := range [][]string{{"-c", "debug bgp updates in"}, {"-c", "configure terminal", "-c", "log stdout debugging"}} {
		args := append([]string{"--vty_socket", r.Dir, "-d", "bgpd"}, cmd...)
		if out, err := exec.Command("vtysh", args...).CombinedOutput(); err != nil {
			t.Fatalf("vtysh %q: %v: %s", cmd, err, out)
		}
	}
	return &filterLab{lab: l, name: router, rtr: r}
}

// passwordFile writes pw to a 0600 file and returns its path.
func (l *filterLab) passwordFile(t *testing.T, name, pw string) string {
	t.Helper()
	f := filepath.Join(l.dir, name+".password")
	if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is the node's agent configuration as the installer renders it,
// its password file holding what the installer writes there
// (bgp.Plan.AgentPassword: the rack's password).
func (l *filterLab) config(t *testing.T, node string) *bgp.Config {
	t.Helper()
	pw, err := l.plan.AgentPassword(node, filterSecret)
	if err != nil {
		t.Fatal(err)
	}
	o := bgp.ConfigOptions{APIHealthURL: "http://127.0.0.1:6443/readyz", APIHealthCA: "-", CheckInterval: 100 * time.Millisecond}
	if pw != "" {
		o.PasswordFile = l.passwordFile(t, node, pw)
	}
	cfg, err := l.plan.AgentConfig(node, o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// start runs the agent in its node's namespace, where the local
// kube-apiserver's /readyz and kube-proxy's /healthz answer 200.
func (l *filterLab) start(t *testing.T, cfg *bgp.Config) *bgplab.Agent {
	t.Helper()
	ns := l.topo.Nodes[cfg.Node]
	for _, addr := range []string{"127.0.0.1:6443", "127.0.0.1:10256"} {
		ln, err := bgplab.ListenTCP(ns, addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
	}
	return l.startAgent(cfg)
}

func waitEstablished(t *testing.T, a *bgplab.Agent) {
	t.Helper()
	if _, err := bgplab.WaitEstablished(context.Background(), a, 15*time.Second); err != nil {
		t.Fatalf("agent %s: %v", a.Name, err)
	}
}

// waitAnnounced waits until the agent announces every prefix of want.
func waitAnnounced(t *testing.T, a *bgplab.Agent, want []string) {
	t.Helper()
	if _, err := bgplab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
		st, err := a.Status(context.Background())
		if err != nil {
			return false, err
		}
		var got []string
		for _, an := range st.Announced {
			got = append(got, an.Prefix)
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false, fmt.Errorf("agent %s announces %v, not %s", a.Name, got, w)
			}
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// waitNextHops waits until FRR's table and the router's kernel have
// exactly the next hops want for prefix (none: no route at all).
func (l *filterLab) waitNextHops(t *testing.T, prefix string, want ...netip.Addr) {
	t.Helper()
	var hops []string
	for _, a := range want {
		hops = append(hops, a.String())
	}
	if _, err := l.rtr.WaitNextHops(prefix, hops, 10*time.Second); err != nil {
		t.Fatalf("%s: %v", l.name, err)
	}
}

// waitDenied waits until bgpd has logged that its inbound policy denied
// prefix from the neighbor at addr, then checks that the router's table
// has no path to prefix through addr.
func (l *filterLab) waitDenied(t *testing.T, addr netip.Addr, prefix string) {
	t.Helper()
	// "198.18.36.11(hostname) rcvd UPDATE about 198.18.40.0/26 IPv4
	// unicast -- DENIED due to: route-map;"
	denied := fmt.Sprintf(" rcvd UPDATE about %s IPv4 unicast -- DENIED due to: route-map", prefix)
	if _, err := bgplab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
		for _, line := range strings.Split(l.rtr.Log.String(), "\n") {
			if strings.Contains(line, denied) && (strings.Contains(line, " "+addr.String()+"(") || strings.Contains(line, " "+addr.String()+" ")) {
				return true, nil
			}
		}
		return false, fmt.Errorf("bgpd never logged that it denied %s from %s", prefix, addr)
	}); err != nil {
		t.Fatal(err)
	}
	hops, err := l.rtr.NextHops(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(hops, addr.String()) {
		t.Errorf("%s accepted %s from %s (next hops %v)", l.name, prefix, addr, hops)
	}
}

// neighbor is FRR's view of one session.
type frrNeighbor struct {
	State       string `json:"bgpState"`
	Established int    `json:"connectionsEstablished"`
}

func (l *filterLab) neighbor(t *testing.T, addr netip.Addr) frrNeighbor {
	t.Helper()
	out, err := l.rtr.Vty("bgpd", "show bgp neighbors "+addr.String()+" json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]frrNeighbor
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("show bgp neighbors %s: %v: %s", addr, err, out)
	}
	n, ok := m[addr.String()]
	if !ok {
		t.Fatalf("%s has no neighbor %s: %s", l.name, addr, out)
	}
	return n
}

// md5Failures is the router namespace's count of TCP segments dropped for
// a wrong MD5 signature (TcpExt TCPMD5Failure).
func (l *filterLab) md5Failures(t *testing.T) int {
	t.Helper()
	out, err := l.topo.Routers[l.name].Command(context.Background(), "cat", "/proc/net/netstat").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(keys) == 0 || keys[0] != "TcpExt:" || len(vals) != len(keys) {
			continue
		}
		for j, k := range keys {
			if k == "TCPMD5Failure" {
				n, _ := strconv.Atoi(vals[j])
				return n
			}
		}
	}
	t.Fatalf("no TcpExt TCPMD5Failure counter in the router namespace:\n%s", out)
	return 0
}

// neverEstablishes checks that the agent, reloaded with a password file
// holding pw, gets no session: the router drops at least two connection
// attempts for their MD5 signature while neither side ever reaches
// Established.
func (l *filterLab) neverEstablishes(t *testing.T, node, pw string) {
	t.Helper()
	a, n := l.agents[node], l.node(node)
	cfg := l.config(t, node)
	for i := range cfg.Peers {
		cfg.Peers[i].PasswordFile = l.passwordFile(t, node+"-wrong", pw)
	}
	before := l.md5Failures(t)
	if err := a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	// The new password resets the session and takes the routes away.
	l.waitNextHops(t, n.PodCIDR.String())
	if _, err := bgplab.WaitFor(15*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := a.Status(context.Background())
		if err != nil {
			return false, err
		}
		// Established even once is a failure: end the test at once.
		if st.Sessions[0].Established() {
			t.Fatalf("agent %s: session Established with a wrong password", node)
		}
		if s := l.neighbor(t, n.Address).State; s == "Established" {
			t.Fatalf("%s: session with %s Established with a wrong password", l.name, node)
		}
		if got := l.md5Failures(t) - before; got < 2 {
			return false, fmt.Errorf("%s dropped %d segments for their MD5 signature, want 2 attempts", l.name, got)
		}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFRRNodeFilters: a router configured by RenderFRR accepts from each
// node only its own pod CIDR, the API VIP only from control-plane nodes,
// and load-balancer /32s from every node; a TOR's sessions take only
// their rack's password.
func TestFRRNodeFilters(t *testing.T) {
	needLab(t)
	testenv.RequireBinary(t, "vtysh")
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", filterSecret)

	t.Run("TOR with rack passwords", func(t *testing.T) {
		lbVIP := netip.MustParseAddr("198.18.46.20")
		l := newFilterLab(t, "../testdata/tor.yaml", "tor1", bgp.Options{LoadBalancerVIPs: []netip.Addr{lbVIP}})
		m1, m2, m3 := l.node("m1"), l.node("m2"), l.node("m3")
		if !m1.ControlPlane || m2.ControlPlane || m1.Rack != m2.Rack || m3.Rack == m1.Rack {
			t.Fatalf("tor.yaml changed: want m1 control plane and m2 worker in one rack, m3 in another")
		}
		apiVIP := netip.PrefixFrom(l.plan.APIVIP, 32).String()
		lb := netip.PrefixFrom(lbVIP, 32).String()
		// The worker m2 announces, besides its own pod CIDR and the
		// load-balancer VIP: m1's and m3's pod CIDRs, a pod block nobody
		// has, the whole pod range, the API VIP and a /32 outside the pool.
		rogue := []string{m1.PodCIDR.String(), m3.PodCIDR.String(), "198.18.43.192/26", l.plan.PodCIDR.String(), "198.18.47.5/32"}
		for _, n := range l.plan.Nodes {
			if n.PodCIDR.String() == "198.18.43.192/26" {
				t.Fatalf("198.18.43.192/26 is %s's pod CIDR: pick a free block", n.Name)
			}
		}
		t0 := time.Now()
		l.start(t, l.config(t, "m1"))
		cfg := l.config(t, "m2")
		cfg.Prefixes = append(cfg.Prefixes, rogue...)
		cfg.Services = append(cfg.Services, bgp.Service{Name: "rogue-api-vip", VIPs: []string{l.plan.APIVIP.String()}})
		l.start(t, cfg)
		for _, a := range l.agents {
			waitEstablished(t, a)
		}
		waitAnnounced(t, l.agents["m2"], append([]string{m2.PodCIDR.String(), apiVIP, lb}, rogue...))
		t.Logf("sessions up and announcements sent in %v", time.Since(t0).Round(time.Millisecond))

		l.waitNextHops(t, m1.PodCIDR.String(), m1.Address)
		l.waitNextHops(t, m2.PodCIDR.String(), m2.Address)
		l.waitNextHops(t, apiVIP, m1.Address)
		l.waitNextHops(t, lb, m1.Address, m2.Address)
		for _, p := range append([]string{apiVIP}, rogue...) {
			l.waitDenied(t, m2.Address, p)
		}
		for _, p := range rogue[1:] {
			l.waitNextHops(t, p) // nobody else announces these: no route at all
		}
		if err := bgplab.Ping(l.topo.Nodes["m2"], bgplab.PodIP(m2), bgplab.PodIP(m1)); err != nil {
			t.Errorf("pod to pod within the rack: %v", err)
		}
		t.Logf("filters checked %v after the agents started", time.Since(t0).Round(time.Millisecond))

		t.Run("another rack's password does not establish", func(t *testing.T) {
			t1 := time.Now()
			l.neverEstablishes(t, "m2", bgp.RackPassword(filterSecret, m3.Rack))
			t.Logf("no session with rack %s's password (%v)", m3.Rack, time.Since(t1).Round(time.Millisecond))
		})
		t.Run("the cluster secret itself does not establish", func(t *testing.T) {
			l.neverEstablishes(t, "m2", filterSecret)
		})
		t.Run("the rack's password establishes again", func(t *testing.T) {
			if err := l.agents["m2"].Reload(l.config(t, "m2")); err != nil {
				t.Fatal(err)
			}
			waitEstablished(t, l.agents["m2"])
			l.waitNextHops(t, m2.PodCIDR.String(), m2.Address)
			if n := l.neighbor(t, m1.Address); n.State != "Established" || n.Established != 1 {
				t.Errorf("m1's session was disturbed by m2's: %+v", n)
			}
		})
		for name, a := range l.agents {
			for _, s := range []string{filterSecret, bgp.RackPassword(filterSecret, m1.Rack), bgp.RackPassword(filterSecret, m3.Rack)} {
				if strings.Contains(a.Log.String(), s) {
					t.Errorf("agent %s logged a password", name)
				}
			}
		}
	})

	t.Run("core router over multihop", func(t *testing.T) {
		l := newFilterLab(t, "../testdata/core.yaml", "core-a1", bgp.Options{})
		n1, n3 := l.node("n1"), l.node("n3")
		if !n1.ControlPlane || n3.ControlPlane || n1.Rack == n3.Rack {
			t.Fatalf("core.yaml changed: want n1 control plane and n3 worker in another rack")
		}
		apiVIP := netip.PrefixFrom(l.plan.APIVIP, 32).String()
		l.start(t, l.config(t, "n1"))
		cfg := l.config(t, "n3")
		cfg.Prefixes = append(cfg.Prefixes, n1.PodCIDR.String())
		cfg.Services = append(cfg.Services, bgp.Service{Name: "rogue-api-vip", VIPs: []string{l.plan.APIVIP.String()}})
		l.start(t, cfg)
		for _, a := range l.agents {
			waitEstablished(t, a)
		}
		waitAnnounced(t, l.agents["n3"], []string{n3.PodCIDR.String(), n1.PodCIDR.String(), apiVIP})
		l.waitNextHops(t, n1.PodCIDR.String(), n1.Address)
		l.waitNextHops(t, n3.PodCIDR.String(), n3.Address)
		l.waitNextHops(t, apiVIP, n1.Address)
		l.waitDenied(t, n3.Address, n1.PodCIDR.String())
		l.waitDenied(t, n3.Address, apiVIP)
		if err := bgplab.Ping(l.topo.Nodes["n3"], bgplab.PodIP(n3), bgplab.PodIP(n1)); err != nil {
			t.Errorf("pod to pod across racks: %v", err)
		}
	})
}
