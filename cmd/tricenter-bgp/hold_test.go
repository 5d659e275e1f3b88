package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// writeAgentConfig writes a valid agent configuration whose socket and
// hold directory are in a temporary directory.
func writeAgentConfig(t *testing.T, graceful int) (path string, cfg *bgp.Config) {
	t.Helper()
	dir := t.TempDir()
	cfg = &bgp.Config{
		Node: "n1", ASN: 4200000011, RouterID: "198.18.0.11",
		StatusSocket: filepath.Join(dir, "status.sock"), HoldDir: filepath.Join(dir, "holds"),
		Peers: []bgp.PeerConfig{{Name: "tor", Address: "198.18.0.1", ASN: 65010}},
		Services: []bgp.Service{
			{Name: bgp.APIServerService, VIPs: []string{"198.18.46.1"}, Check: &bgp.Check{URL: "https://127.0.0.1:6443/readyz"}},
			{Name: "load-balancers", VIPs: []string{"198.18.46.10"}},
		},
	}
	if graceful > 0 {
		cfg.Graceful = bgp.GracefulRestart{Enabled: true, RestartSeconds: graceful}
	}
	cfg.SetDefaults()
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

// With no agent running, hold and release only record: the hold file is
// written and removed, unknown services and bad reasons are refused.
func TestHoldWithoutAgent(t *testing.T) {
	conf, cfg := writeAgentConfig(t, 0)
	out, errOut, code := runAgentCLI(t, "hold", "kube-apiserver", "--reason", "upgrading", "-c", conf)
	if code != 0 || !strings.Contains(out, "Held kube-apiserver: upgrading") || !strings.Contains(out, "No agent is running on n1: the hold is recorded in "+bgp.HoldFile(cfg.HoldDir, "kube-apiserver")) {
		t.Fatalf("hold: exit %d\n%s%s", code, out, errOut)
	}
	holds, err := bgp.ReadHolds(cfg.HoldDir)
	if err != nil || holds["kube-apiserver"].Reason != "upgrading" || holds["kube-apiserver"].Since.IsZero() {
		t.Fatalf("hold directory: %+v, %v", holds, err)
	}
	since := holds["kube-apiserver"].Since
	out, _, code = runAgentCLI(t, "hold", "kube-apiserver", "--reason", "upgrading to v1.37.2", "-c", conf)
	if code != 0 || !strings.Contains(out, `kube-apiserver was held already: reason now "upgrading to v1.37.2"`) {
		t.Errorf("second hold: exit %d\n%s", code, out)
	}
	if h, _ := bgp.ReadHolds(cfg.HoldDir); h["kube-apiserver"].Reason != "upgrading to v1.37.2" || !h["kube-apiserver"].Since.Equal(since) {
		t.Errorf("second hold: %+v, want the new reason since %v", h["kube-apiserver"], since)
	}

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"hold", "kube-apiservr", "--reason", "x", "-c", conf}, `Error: no such service "kube-apiservr" on n1: use one of kube-apiserver, load-balancers`},
		{[]string{"hold", "kube-apiserver", "-c", conf}, `Error: required flag(s) "reason" not set`},
		{[]string{"hold", "kube-apiserver", "--reason", " ", "-c", conf}, "Error: --reason: the reason is empty: say why the service is held (it shows in status and logs)"},
		{[]string{"hold", "../etc", "--reason", "x", "-c", conf}, `Error: service name "../etc": use letters, digits, '.', '_' and '-' (at most 63, starting with a letter or digit)`},
		{[]string{"release", "nope", "-c", conf}, `Error: no such service "nope" on n1: use one of kube-apiserver, load-balancers`},
		{[]string{"hold", "kube-apiserver", "--reason", "x", "-c", filepath.Join(t.TempDir(), "missing.yaml")}, "Error: no agent is running: nothing listens on " + bgp.DefaultStatusSocket},
	} {
		_, errOut, code := runAgentCLI(t, tc.args...)
		if code != 1 || !strings.HasPrefix(strings.TrimSpace(errOut), tc.err) {
			t.Errorf("%v: exit %d, stderr %q, want 1 and %q", tc.args, code, errOut, tc.err)
		}
	}

	out, _, code = runAgentCLI(t, "release", "kube-apiserver", "-c", conf)
	if code != 0 || !strings.Contains(out, "Released kube-apiserver: its VIPs are announced again after 1 passing check(s)") {
		t.Errorf("release: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(bgp.HoldFile(cfg.HoldDir, "kube-apiserver")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hold file after release: %v", err)
	}
	out, _, code = runAgentCLI(t, "release", "kube-apiserver", "-c", conf)
	if code != 0 || !strings.Contains(out, "kube-apiserver was not held") {
		t.Errorf("second release: exit %d\n%s", code, out)
	}
}

// With graceful restart, a hold recorded while no agent runs waits out
// the restart time (routers may keep a killed agent's routes that long);
// a shorter --timeout says so.
func TestHoldWithoutAgentWaitsOutGracefulRestart(t *testing.T) {
	conf, cfg := writeAgentConfig(t, 5)
	_, errOut, code := runAgentCLI(t, "hold", "kube-apiserver", "--reason", "upgrading", "-c", conf, "--timeout", "100ms")
	want := "Error: hold of kube-apiserver recorded, but routers may still keep the routes of a stopped agent for up to 5s: context deadline exceeded"
	if code != 1 || strings.TrimSpace(errOut) != want {
		t.Errorf("exit %d, stderr %q, want %q", code, errOut, want)
	}
	if h, _ := bgp.ReadHolds(cfg.HoldDir); h["kube-apiserver"].Reason != "upgrading" {
		t.Errorf("the hold was not recorded: %+v", h)
	}
}

// fakeAgent stands in for the agent behind the status socket: it records
// holds and answers as the agent does; the agent's own logic is tested in
// bgp/agent.
type fakeAgent struct {
	mu    sync.Mutex
	holds map[string]string
}

func (f *fakeAgent) Status(context.Context) (*bgp.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &bgp.Status{Node: "n1", ASN: 4200000011, RouterID: "198.18.0.11"}
	for _, name := range []string{"kube-apiserver", "load-balancers"} {
		sv := bgp.ServiceStatus{Name: name, VIPs: []string{"198.18.46.1"}, Healthy: true}
		if r, ok := f.holds[name]; ok {
			sv.Healthy, sv.Reason = false, "held: "+r
			sv.Held = &bgp.Hold{Reason: r, Since: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
		}
		s.Services = append(s.Services, sv)
	}
	return s, nil
}

func (f *fakeAgent) Hold(_ context.Context, service, reason string) (*bgp.HoldResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if service != "kube-apiserver" && service != "load-balancers" {
		return nil, errors.Join(bgp.ErrUnknownService, errors.New("fake: unknown "+service))
	}
	_, already := f.holds[service]
	f.holds[service] = reason
	res := &bgp.HoldResult{Service: service, Hold: bgp.Hold{Reason: reason}, Already: already,
		Withdrawn: []string{}, Peers: []string{"core-a1 (198.18.32.1)"}}
	if service == "kube-apiserver" {
		res.Withdrawn = []string{"198.18.46.1/32"}
	} else {
		res.Kept = map[string][]string{"198.18.46.10/32": {"ingress"}}
	}
	return res, nil
}

func (f *fakeAgent) Release(_ context.Context, service string) (*bgp.ReleaseResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, held := f.holds[service]
	delete(f.holds, service)
	return &bgp.ReleaseResult{Service: service, Released: held, Rise: 2}, nil
}

// With an agent on the socket the commands go through it, and status
// shows the hold.
func TestHoldThroughAgent(t *testing.T) {
	conf, cfg := writeAgentConfig(t, 5)
	fake := &fakeAgent{holds: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- bgp.ServeStatus(ctx, cfg.StatusSocket, fake, nil) }()
	t.Cleanup(func() { cancel(); <-served })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := bgp.FetchStatus(ctx, cfg.StatusSocket); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	start := time.Now()
	out, errOut, code := runAgentCLI(t, "hold", "kube-apiserver", "--reason", "upgrading", "-c", conf)
	if code != 0 || out != "Held kube-apiserver: upgrading\nWithdrawn: 198.18.46.1/32 (sent to core-a1 (198.18.32.1))\n" {
		t.Fatalf("hold: exit %d\n%q%s", code, out, errOut)
	}
	if time.Since(start) > 4*time.Second {
		t.Error("hold through a running agent waited out the graceful-restart time")
	}
	out, _, code = runAgentCLI(t, "hold", "load-balancers", "--reason", "upgrading", "-c", conf, "-o", "json")
	var res bgp.HoldResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Kept["198.18.46.10/32"][0] != "ingress" {
		t.Errorf("hold -o json: exit %d\n%s", code, out)
	}
	out, _, code = runAgentCLI(t, "hold", "load-balancers", "--reason", "again", "-c", conf)
	if code != 0 || !strings.Contains(out, "Still announced: 198.18.46.10/32 (healthy service ingress lists it)") || !strings.Contains(out, "was held already") {
		t.Errorf("hold of a shared VIP: exit %d\n%s", code, out)
	}
	_, errOut, code = runAgentCLI(t, "hold", "etcd", "--reason", "x", "-c", conf)
	if code != 1 || !strings.Contains(errOut, "no such service") || !strings.Contains(errOut, "fake: unknown etcd") {
		t.Errorf("hold of an unknown service: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(cfg.HoldDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the CLI wrote the hold itself although an agent runs: %v", err)
	}

	out, _, code = runAgentCLI(t, "status", "--socket", cfg.StatusSocket)
	if code != 0 || !strings.Contains(out, "kube-apiserver   held     198.18.46.1          held: upgrading (since ") {
		t.Errorf("status does not show the hold:\n%s", out)
	}
	out, _, code = runAgentCLI(t, "release", "kube-apiserver", "-c", conf)
	if code != 0 || out != "Released kube-apiserver: its VIPs are announced again after 2 passing check(s)\n" {
		t.Errorf("release: exit %d\n%q", code, out)
	}
}
