package agent_test

// Holds, against an in-process gobgp router (agent_test.go's startRouter):
// a held service is withdrawn at once (not after Fall failing checks), a
// VIP another healthy service lists stays, a release announces again only
// after Rise passing checks, and holds live in files the agent reads when it
// starts and on reload.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/agent"
)

const sharedVIP = "198.18.100.20"

// probes is a health endpoint that always passes and records when it was
// asked.
type probes struct {
	mu sync.Mutex
	at []time.Time
}

func (p *probes) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	p.at = append(p.at, time.Now())
	p.mu.Unlock()
}

// since counts the probes after t.
func (p *probes) since(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.at {
		if a.After(t) {
			n++
		}
	}
	return n
}

// holdConfig: "api" with a check that passes (rise 3, fall 1000: a failing
// check would take 20 s to withdraw, a hold must not wait for it), and two
// check-less services sharing a VIP.
func holdConfig(t *testing.T, port int, checkURL, holdDir string) *bgp.Config {
	t.Helper()
	cfg := &bgp.Config{
		Node: "n1", ASN: nodeASN, RouterID: "198.18.0.11", NextHop: "127.0.0.1",
		StatusSocket: filepath.Join(t.TempDir(), "agent.sock"), HoldDir: holdDir,
		Timers:   bgp.Timers{KeepaliveSeconds: 1, HoldSeconds: 3, ConnectRetrySeconds: 1},
		Peers:    []bgp.PeerConfig{{Name: "tor", Address: "127.0.0.1", ASN: routerASN, Port: port}},
		Prefixes: []string{podCIDR},
		Services: []bgp.Service{
			{Name: "api", VIPs: []string{apiVIP}, Check: &bgp.Check{
				URL: checkURL, Interval: bgp.Duration{Duration: 20 * time.Millisecond}, Rise: 3, Fall: 1000,
			}},
			{Name: "lb-a", VIPs: []string{sharedVIP}},
			{Name: "lb-b", VIPs: []string{sharedVIP}},
		},
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runAgent runs an agent until the test ends (or stop is called).
func runAgent(t *testing.T, cfg *bgp.Config) (a *agent.Agent, stop func()) {
	t.Helper()
	a = agent.New(cfg, agent.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context ended")
		}
	}
	t.Cleanup(stop)
	return a, stop
}

func has(m map[string]string, prefix string) bool { _, ok := m[prefix]; return ok }

func service(t *testing.T, st *bgp.Status, name string) bgp.ServiceStatus {
	t.Helper()
	i := slices.IndexFunc(st.Services, func(s bgp.ServiceStatus) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("no service %s in status %+v", name, st.Services)
	}
	return st.Services[i]
}

func announcedPrefixes(st *bgp.Status) []string {
	var out []string
	for _, a := range st.Announced {
		out = append(out, a.Prefix)
	}
	return out
}

func TestHold(t *testing.T) {
	router, port := startRouter(t)
	pr := &probes{}
	check := httptest.NewServer(pr)
	defer check.Close()
	holdDir := filepath.Join(t.TempDir(), "holds")
	cfg := holdConfig(t, port, check.URL, holdDir)
	a, _ := runAgent(t, cfg)
	ctx := context.Background()
	vip, shared := apiVIP+"/32", sharedVIP+"/32"
	waitRoutes(t, router, "every prefix", func(m map[string]string) bool {
		return has(m, podCIDR) && has(m, vip) && has(m, shared)
	})

	t.Run("hold withdraws at once", func(t *testing.T) {
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := a.Hold(hctx, "api", "upgrading kube-apiserver")
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Hold returned after %s", took)
		if took > time.Second {
			t.Errorf("Hold took %s: it must not wait for failing checks", took)
		}
		if res.Already || !slices.Equal(res.Withdrawn, []string{vip}) || !slices.Equal(res.Peers, []string{"tor (127.0.0.1)"}) || len(res.Kept) != 0 {
			t.Errorf("result %+v: want %s withdrawn and sent to tor (127.0.0.1)", res, vip)
		}
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(announcedPrefixes(st), vip) || len(st.Withdrawing) != 0 {
			t.Errorf("after Hold: announced %v, withdrawing %+v", announcedPrefixes(st), st.Withdrawing)
		}
		s := service(t, st, "api")
		if s.Healthy || s.Held == nil || s.Held.Reason != "upgrading kube-apiserver" || s.Reason != "held: upgrading kube-apiserver" {
			t.Errorf("service status %+v: want unhealthy, held, reason %q", s, "held: upgrading kube-apiserver")
		}
		holds, err := bgp.ReadHolds(holdDir)
		if err != nil || holds["api"].Reason != "upgrading kube-apiserver" {
			t.Errorf("hold directory: %v, %v", holds, err)
		}
		// The router has the withdrawal: it was written to the session.
		waitRoutes(t, router, "the VIP withdrawn", func(m map[string]string) bool { return !has(m, vip) && has(m, podCIDR) })
	})

	t.Run("holding again updates the reason", func(t *testing.T) {
		res, err := a.Hold(ctx, "api", "upgrading kube-apiserver to v1.37.2")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Already || !slices.Equal(res.Withdrawn, []string{vip}) {
			t.Errorf("second hold: %+v", res)
		}
		holds, _ := bgp.ReadHolds(holdDir)
		if holds["api"].Reason != "upgrading kube-apiserver to v1.37.2" {
			t.Errorf("hold file not updated: %+v", holds["api"])
		}
	})

	t.Run("a VIP another healthy service lists stays", func(t *testing.T) {
		res, err := a.Hold(ctx, "lb-a", "maintenance")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Withdrawn) != 0 || !slices.Equal(res.Kept[shared], []string{"lb-b"}) {
			t.Errorf("hold of lb-a: %+v, want %s kept by lb-b", res, shared)
		}
		if !has(routes(t, router), shared) {
			t.Error("the router lost the shared VIP")
		}
		res, err = a.Hold(ctx, "lb-b", "maintenance")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.Withdrawn, []string{shared}) {
			t.Errorf("hold of lb-b: %+v, want %s withdrawn", res, shared)
		}
		waitRoutes(t, router, "the shared VIP withdrawn", func(m map[string]string) bool { return !has(m, shared) })
		if _, err := a.Release(ctx, "lb-a"); err != nil {
			t.Fatal(err)
		}
		waitRoutes(t, router, "the shared VIP back (lb-a has no check)", func(m map[string]string) bool { return has(m, shared) })
	})

	t.Run("unknown service", func(t *testing.T) {
		_, err := a.Hold(ctx, "kube-apiservr", "typo")
		if !errors.Is(err, bgp.ErrUnknownService) || !strings.Contains(err.Error(), "api, lb-a, lb-b") {
			t.Errorf("Hold of an unknown service: %v, want ErrUnknownService naming the services", err)
		}
		if _, err := os.Stat(bgp.HoldFile(holdDir, "kube-apiservr")); err == nil {
			t.Error("a hold file was written for an unknown service")
		}
		_, err = a.Release(ctx, "kube-apiservr")
		if !errors.Is(err, bgp.ErrUnknownService) {
			t.Errorf("Release of an unknown service: %v", err)
		}
		if _, err := a.Hold(ctx, "api", ""); err == nil {
			t.Error("Hold without a reason succeeded")
		}
	})

	t.Run("release announces after rise passing checks", func(t *testing.T) {
		released := time.Now()
		res, err := a.Release(ctx, "api")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Released || res.Rise != 3 {
			t.Errorf("release: %+v, want released, rise 3", res)
		}
		waitRoutes(t, router, "the VIP back", func(m map[string]string) bool { return has(m, vip) })
		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(st.Announced, func(an bgp.Announced) bool { return an.Prefix == vip })
		if i < 0 {
			t.Fatalf("status does not announce %s: %v", vip, announcedPrefixes(st))
		}
		if n := pr.since(released); n < 3 {
			t.Errorf("the VIP came back after %d probes since the release, want at least rise 3", n)
		}
		if s := service(t, st, "api"); !s.Healthy || s.Held != nil {
			t.Errorf("service after release: %+v", s)
		}
		if _, err := os.Stat(bgp.HoldFile(holdDir, "api")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hold file after release: %v", err)
		}
		res, err = a.Release(ctx, "api")
		if err != nil || res.Released {
			t.Errorf("second release: %+v, %v; want not released, no error", res, err)
		}
	})
}

// A hold outlives the agent: a new agent reading the same hold directory
// starts with the service held and never announces its VIP; a hold file
// removed by hand takes effect on reload (SIGHUP).
func TestHoldSurvivesRestart(t *testing.T) {
	router, port := startRouter(t)
	pr := &probes{}
	check := httptest.NewServer(pr)
	defer check.Close()
	holdDir := filepath.Join(t.TempDir(), "holds")
	cfg := holdConfig(t, port, check.URL, holdDir)
	vip := apiVIP + "/32"

	a, stop := runAgent(t, cfg)
	waitRoutes(t, router, "the VIP", func(m map[string]string) bool { return has(m, vip) })
	if _, err := a.Hold(context.Background(), "api", "restart test"); err != nil {
		t.Fatal(err)
	}
	stop()
	waitRoutes(t, router, "every route withdrawn on stop", func(m map[string]string) bool { return len(m) == 0 })

	// The new agent peers with a fresh router (this one's passive session
	// idles a while after the Cease).
	router, port = startRouter(t)
	cfg = holdConfig(t, port, check.URL, holdDir)
	started := time.Now()
	a, _ = runAgent(t, cfg)
	waitRoutes(t, router, "the pod CIDR from the new agent", func(m map[string]string) bool { return has(m, podCIDR) })
	st, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := service(t, st, "api"); s.Held == nil || s.Held.Reason != "restart test" || s.Healthy {
		t.Fatalf("api after restart: %+v, want held (restart test)", s)
	}
	// Held: no checker runs, so nothing can announce the VIP. Give a
	// checker time for rise 3 at 20 ms, then look.
	time.Sleep(150 * time.Millisecond)
	if n := pr.since(started); n != 0 {
		t.Errorf("the held service was probed %d times", n)
	}
	if has(routes(t, router), vip) {
		t.Fatal("the new agent announced a held VIP")
	}

	if err := os.Remove(bgp.HoldFile(holdDir, "api")); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, router, "the VIP after the hold file went and a reload", func(m map[string]string) bool { return has(m, vip) })
}
