package bgpagent

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// fakeHost is a fake node for testing the phase's logic: files live in a
// map, systemctl calls are recorded, and the agent's status is canned. The
// real transport is tested by installer/phase.
type fakeHost struct {
	name    string
	files   map[string]string
	modes   map[string]fs.FileMode
	calls   []string
	active  bool
	enabled bool
	status  *bgp.Status
	secrets []string // paths written with WriteSecret
}

func (h *fakeHost) String() string { return h.name }
func (h *fakeHost) DryRun() bool   { return false }

func (h *fakeHost) put(path, data string, mode fs.FileMode) phase.FileResult {
	changed := h.files[path] != data || h.modes[path] != mode
	if changed {
		h.files[path], h.modes[path] = data, mode
		h.calls = append(h.calls, "write "+path)
	}
	return phase.FileResult{Changed: changed}
}

func (h *fakeHost) Upload(_ context.Context, local, remote string, mode fs.FileMode) (phase.FileResult, error) {
	b, err := os.ReadFile(local)
	if err != nil {
		return phase.FileResult{}, err
	}
	return h.put(remote, string(b), mode), nil
}

func (h *fakeHost) WriteFile(_ context.Context, path string, data []byte, mode fs.FileMode) (phase.FileResult, error) {
	return h.put(path, string(data), mode), nil
}

func (h *fakeHost) WriteSecret(_ context.Context, path string, data []byte, mode fs.FileMode) (phase.FileResult, error) {
	h.secrets = append(h.secrets, path)
	return h.put(path, string(data), mode), nil
}

func (h *fakeHost) Query(_ context.Context, cmd string) (string, error) {
	switch {
	case strings.HasPrefix(cmd, "systemctl is-enabled"):
		if h.enabled {
			return "enabled\n", nil
		}
		return "disabled\n", errors.New("exit status 1")
	case strings.HasPrefix(cmd, "systemctl is-active"):
		if h.active {
			return "active\n", nil
		}
		return "inactive\n", errors.New("exit status 3")
	case strings.Contains(cmd, " status -o json"):
		if !h.active || h.status == nil {
			return "", errors.New("Error: no agent is running")
		}
		b, _ := json.Marshal(h.status)
		return string(b), nil
	}
	return "", errors.New("unexpected query " + cmd)
}

func (h *fakeHost) Systemctl(_ context.Context, args ...string) error {
	h.calls = append(h.calls, "systemctl "+strings.Join(args, " "))
	if args[0] == "enable" {
		h.enabled = true
	}
	return nil
}

func (h *fakeHost) SystemctlRestart(_ context.Context, unit string) error {
	h.calls = append(h.calls, "restart "+unit)
	h.active = true
	return nil
}

func (h *fakeHost) SystemctlDaemonReload(context.Context) error {
	h.calls = append(h.calls, "daemon-reload")
	return nil
}

// testPlan derives the BGP plan of the TOR-mode inventory the bgp package
// tests with.
func testPlan(t *testing.T) *bgp.Plan {
	t.Helper()
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "md5-secret")
	c, lines, err := inventory.Load("../../bgp/testdata/tor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := inventory.BuildPlan(c, lines, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := bgp.Derive(c, pl.IPs(), bgp.Options{Placement: pl.Placement()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPhaseConverges(t *testing.T) {
	p := testPlan(t)
	bin := filepath.Join(t.TempDir(), "tricenter-bgp")
	if err := os.WriteFile(bin, []byte("agent v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	ph, err := New(p, Options{Binary: bin, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{name: "m1", files: map[string]string{}, modes: map[string]fs.FileMode{},
		status: &bgp.Status{Sessions: []bgp.Session{{Name: "tor1", Address: "198.18.36.1", State: "Established"}}}}
	ctx := context.Background()

	if err := ph.Apply(ctx, h); err != nil {
		t.Fatal(err)
	}
	want := []string{"write " + BinaryPath, "write " + bgp.DefaultPasswordFile, "write " + bgp.DefaultConfigFile,
		"write " + UnitPath, "daemon-reload", "systemctl enable " + UnitName, "restart " + UnitName}
	if strings.Join(h.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("first run:\n%s\nwant:\n%s", strings.Join(h.calls, "\n"), strings.Join(want, "\n"))
	}
	// m1's sessions use its rack's (t1) password, derived from the secret.
	if h.modes[bgp.DefaultPasswordFile] != 0o600 || h.files[bgp.DefaultPasswordFile] != bgp.RackPassword("md5-secret", "t1")+"\n" {
		t.Errorf("password file mode %v: not rack t1's password", h.modes[bgp.DefaultPasswordFile])
	}
	if strings.Contains(h.files[bgp.DefaultPasswordFile], "md5-secret") {
		t.Error("the password file holds the cluster's secret instead of the rack's password")
	}
	if strings.Join(h.secrets, " ") != bgp.DefaultPasswordFile {
		t.Errorf("written as secret: %q, want only the password file %s", h.secrets, bgp.DefaultPasswordFile)
	}
	if strings.Contains(h.files[bgp.DefaultConfigFile], "md5-secret") {
		t.Error("the agent configuration holds the password")
	}
	cfg, err := bgp.ParseConfig([]byte(h.files[bgp.DefaultConfigFile]))
	if err != nil || cfg.Node != "m1" || cfg.Peers[0].PasswordFile != bgp.DefaultPasswordFile {
		t.Errorf("written config %+v, %v", cfg, err)
	}
	if !strings.Contains(h.files[UnitPath], "ExecReload=/bin/kill -HUP $MAINPID") {
		t.Errorf("unit:\n%s", h.files[UnitPath])
	}

	// A second run on an unchanged node changes nothing.
	h.calls = nil
	if err := ph.Apply(ctx, h); err != nil {
		t.Fatal(err)
	}
	if len(h.calls) != 0 {
		t.Errorf("second run changed: %v", h.calls)
	}

	// Only the configuration changed: reload (SIGHUP), no restart.
	h.files[bgp.DefaultConfigFile] += "# drift\n"
	h.calls = nil
	if err := ph.Apply(ctx, h); err != nil {
		t.Fatal(err)
	}
	if want := []string{"write " + bgp.DefaultConfigFile, "systemctl reload " + UnitName}; strings.Join(h.calls, ",") != strings.Join(want, ",") {
		t.Errorf("config drift: %v, want %v", h.calls, want)
	}

	// A new binary: restart.
	if err := os.WriteFile(bin, []byte("agent v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.calls = nil
	if err := ph.Apply(ctx, h); err != nil {
		t.Fatal(err)
	}
	if want := []string{"write " + BinaryPath, "restart " + UnitName}; strings.Join(h.calls, ",") != strings.Join(want, ",") {
		t.Errorf("new binary: %v, want %v", h.calls, want)
	}
}

func TestPhaseWaitsForEstablished(t *testing.T) {
	p := testPlan(t)
	bin := filepath.Join(t.TempDir(), "tricenter-bgp")
	if err := os.WriteFile(bin, []byte("agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	ph, err := New(p, Options{Binary: bin, EstablishTimeout: 50 * time.Millisecond, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{name: "m2", files: map[string]string{}, modes: map[string]fs.FileMode{},
		status: &bgp.Status{Sessions: []bgp.Session{{Name: "tor1", Address: "198.18.36.1", State: "Active"}}}}
	err = ph.Apply(context.Background(), h)
	if !errors.Is(err, ErrNotEstablished) || !strings.Contains(err.Error(), "on m2") || !strings.Contains(err.Error(), "session with tor1 (198.18.36.1) is Active") {
		t.Errorf("got %v", err)
	}
}

func TestNewNeedsSecret(t *testing.T) {
	p := testPlan(t)
	os.Unsetenv("TRICENTER_TEST_BGP_PASSWORD")
	if _, err := New(p, Options{Binary: "/bin/true"}); err == nil || !strings.Contains(err.Error(), "spec.network.bgp.password") {
		t.Errorf("got %v", err)
	}
	if _, err := New(p, Options{}); err == nil {
		t.Error("no binary: want an error")
	}
}

func TestHostPhaseSelectsNodes(t *testing.T) {
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "x")
	p := testPlan(t)
	ph, err := New(p, Options{Binary: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	hp := ph.HostPhase()
	if hp.Title() != "Install the BGP agent" || len(hp.Select.Servers) != len(p.Nodes) {
		t.Errorf("host phase %q selects %v", hp.Title(), hp.Select.Servers)
	}
	if phase.IDOf(hp) != "bgp/agent" {
		t.Errorf("phase ID %q, want bgp/agent", phase.IDOf(hp))
	}
}

func TestPhasesHaveTheStableIDAndHonourServers(t *testing.T) {
	p := testPlan(t)
	all, err := Phases(p, Options{Binary: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || phase.IDOf(all[0]) != ID {
		t.Fatalf("Phases = %d phases, first ID %q; want one, %s", len(all), phase.IDOf(all[0]), ID)
	}
	if got := all[0].(*phase.HostPhase).Select.Servers; len(got) != len(p.Nodes) {
		t.Errorf("every node: selects %v, want the plan's %d nodes", got, len(p.Nodes))
	}
	one := p.Nodes[len(p.Nodes)-1].Name
	some, err := Phases(p, Options{Binary: "/bin/true", Servers: []string{one, "not-a-node"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(some) != 1 || strings.Join(some[0].(*phase.HostPhase).Select.Servers, ",") != one {
		t.Errorf("Servers [%s not-a-node]: %d phases selecting %v, want %s only", one, len(some), some, one)
	}
	none, err := Phases(p, Options{Binary: "/bin/true", Servers: []string{"not-a-node"}})
	if err != nil || len(none) != 0 {
		t.Errorf("Servers without a node of the plan: %d phases, %v; want none", len(none), err)
	}
	if _, err := Phases(p, Options{}); err == nil {
		t.Error("no binary: want an error")
	}
}
