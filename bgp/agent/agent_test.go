package agent_test

// The agent against a router in the same process: a second gobgp
// BgpServer listening on 127.0.0.1 plays the node's TOR (as gobgp's own
// server tests peer two servers), so the agent's logic runs without root,
// namespaces or FRR. The FRR integration test (frr_integration_test.go)
// runs the built binary against real FRR.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/agent"
)

const (
	routerASN = 65010
	nodeASN   = 4200000011
	podCIDR   = "198.18.64.0/26"
	apiVIP    = "198.18.100.10"
)

// startRouter starts a BgpServer on 127.0.0.1 that accepts the agent
// (passive) and returns it with its port.
func startRouter(t *testing.T) (*server.BgpServer, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	quiet := gobgplog.NewDefaultLogger()
	quiet.SetLevel(gobgplog.ErrorLevel)
	r := server.NewBgpServer(server.LoggerOption(quiet))
	go r.Serve()
	ctx := context.Background()
	if err := r.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: routerASN, RouterId: "198.18.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.StopBgp(context.Background(), &api.StopBgpRequest{})
		r.Stop()
	})
	if err := r.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: nodeASN},
		Transport: &api.Transport{PassiveMode: true},
	}}); err != nil {
		t.Fatal(err)
	}
	return r, port
}

// routes is the router's IPv4 table: prefix -> next hop.
func routes(t *testing.T, r *server.BgpServer) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := r.ListPath(context.Background(), &api.ListPathRequest{
		TableType: api.TableType_GLOBAL,
		Family:    &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			nh := ""
			for _, a := range p.Pattrs {
				var h api.NextHopAttribute
				if a.UnmarshalTo(&h) == nil {
					nh = h.NextHop
				}
			}
			out[d.Prefix] = nh
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitRoutes polls the router until want(table) holds.
func waitRoutes(t *testing.T, r *server.BgpServer, what string, want func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := routes(t, r)
		if want(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router never saw %s; its table: %v", what, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentAnnouncesToRouter(t *testing.T) {
	router, port := startRouter(t)
	var healthy atomic.Bool
	check := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer check.Close()

	cfg := &bgp.Config{
		Node: "n1", ASN: nodeASN, RouterID: "198.18.0.11", NextHop: "127.0.0.1",
		StatusSocket: filepath.Join(t.TempDir(), "agent.sock"),
		Timers:       bgp.Timers{KeepaliveSeconds: 1, HoldSeconds: 3, ConnectRetrySeconds: 1},
		Peers:        []bgp.PeerConfig{{Name: "tor", Address: "127.0.0.1", ASN: routerASN, Port: port}},
		Communities:  []string{"4200000000:1:1"},
		Prefixes:     []string{podCIDR},
		Services: []bgp.Service{{Name: "api", VIPs: []string{apiVIP}, Check: &bgp.Check{
			URL: check.URL, Interval: bgp.Duration{Duration: 20 * time.Millisecond}, Rise: 1, Fall: 1,
		}}},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := agent.New(cfg, agent.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// The pod CIDR is announced with the node's next hop; the VIP is not
	// while its check fails.
	got := waitRoutes(t, router, podCIDR, func(m map[string]string) bool { return m[podCIDR] != "" })
	if got[podCIDR] != "127.0.0.1" {
		t.Errorf("next hop of %s is %q, want the node's 127.0.0.1", podCIDR, got[podCIDR])
	}
	if _, ok := got[apiVIP+"/32"]; ok {
		t.Errorf("the VIP is announced while its check fails: %v", got)
	}
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "n1" || len(st.Sessions) != 1 || !st.Sessions[0].Established() {
		t.Fatalf("status: node %q, sessions %+v; want n1 with one Established session", st.Node, st.Sessions)
	}
	if i := slices.IndexFunc(st.Services, func(s bgp.ServiceStatus) bool { return s.Name == "api" }); i < 0 || st.Services[i].Healthy || st.Services[i].Reason == "" {
		t.Errorf("status services %+v: want api unhealthy with a reason", st.Services)
	}

	// Healthy: the VIP is announced; unhealthy again: withdrawn.
	healthy.Store(true)
	waitRoutes(t, router, "the VIP announced", func(m map[string]string) bool { _, ok := m[apiVIP+"/32"]; return ok })
	healthy.Store(false)
	waitRoutes(t, router, "the VIP withdrawn", func(m map[string]string) bool { _, ok := m[apiVIP+"/32"]; return !ok && m[podCIDR] != "" })

	// A changed prefix is applied on the established session: the old one
	// is withdrawn, the new one announced, the session is not reset.
	since := st.Sessions[0].Since
	next := *cfg
	next.Prefixes = []string{"198.18.65.0/26"}
	if err := a.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, router, "the reloaded prefix", func(m map[string]string) bool {
		_, old := m[podCIDR]
		return !old && m["198.18.65.0/26"] != ""
	})
	st, err = a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Sessions[0].Established() || !st.Sessions[0].Since.Equal(since) {
		t.Errorf("the session was reset by a prefix change: %+v (established since %v before)", st.Sessions[0], since)
	}

	// Stopping withdraws everything and ends Run without error.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after its context ended")
	}
	waitRoutes(t, router, "every route withdrawn", func(m map[string]string) bool { return len(m) == 0 })
	if _, err := a.Status(context.Background()); !errors.Is(err, agent.ErrNotRunning) {
		t.Errorf("Status after stop: %v, want ErrNotRunning", err)
	}
}
