package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

const bgpInventory = "../../bgp/testdata/core.yaml"

// render-frr prints exactly what the BGP integration tests run FRR with
// (bgp.RenderFRR), and --out writes it atomically with mode 0600.
func TestBGPRenderFRR(t *testing.T) {
	t.Setenv("TRICENTER_STATE_DIR", t.TempDir())
	out, stderr, code := runCLI(t, "bgp", "render-frr", "-f", bgpInventory, "--router", "core-a1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	golden, err := os.ReadFile("../../bgp/testdata/golden/core-a1.conf")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(golden) {
		t.Errorf("render-frr output differs from bgp/testdata/golden/core-a1.conf:\n%s", out)
	}
	// The same through the library, as the FRR tests do.
	c, lines, err := inventory.Load(bgpInventory)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	ip, _ := inventory.AllocateIPs(c, nil)
	p, err := bgp.Derive(c, ip, bgp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lib, _ := bgp.RenderFRR(p, "core-a1", bgp.FRROptions{})
	if out != string(lib) {
		t.Error("CLI and library renderings differ")
	}

	file := filepath.Join(t.TempDir(), "bgpd.conf")
	if _, stderr, code := runCLI(t, "bgp", "render-frr", "-f", bgpInventory, "--router", "core-a1", "--out", file); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("--out file: %v, %v", st, err)
	}

	_, stderr, code = runCLI(t, "bgp", "render-frr", "-f", bgpInventory, "--router", "core-zz")
	if code != 1 || !strings.Contains(stderr, `unknown router "core-zz": nodes peer with core-a1, core-b1`) {
		t.Errorf("unknown router: exit %d, %s", code, stderr)
	}
}

func TestBGPShowAndAgentConfig(t *testing.T) {
	t.Setenv("TRICENTER_STATE_DIR", t.TempDir())
	out, stderr, code := runCLI(t, "bgp", "show", "-f", bgpInventory, "-o", "json", "--vip", "198.18.46.10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var p struct {
		Nodes []struct {
			Name      string   `json:"name"`
			ASN       uint32   `json:"asn"`
			Announces []string `json:"announces"`
		} `json:"nodes"`
		Routers []struct {
			Name   string `json:"name"`
			Groups []struct {
				Range    string `json:"listenRange"`
				RemoteAS string `json:"remoteAS"`
			} `json:"groups"`
		} `json:"routers"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 4 || p.Nodes[0].ASN != 4200000000+0xC61221 || len(p.Nodes[0].Announces) != 3 {
		t.Errorf("nodes %+v", p.Nodes)
	}
	if len(p.Routers) != 2 || p.Routers[0].Groups[0].Range != "198.18.33.0/24" {
		t.Errorf("routers %+v", p.Routers)
	}
	table, _, code := runCLI(t, "bgp", "show", "-f", bgpInventory)
	if code != 0 || !strings.Contains(table, "NODES-r1") || !strings.Contains(table, "core-a1(AS65000)") {
		t.Errorf("table:\n%s", table)
	}

	out, stderr, code = runCLI(t, "bgp", "agent-config", "-f", bgpInventory, "--node", "n3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	cfg, err := bgp.ParseConfig([]byte(out))
	if err != nil || cfg.Node != "n3" || len(cfg.Services) != 0 || cfg.Prefixes[0] != "198.18.40.128/26" {
		t.Errorf("agent config %+v, %v\n%s", cfg, err, out)
	}
	_, stderr, code = runCLI(t, "bgp", "agent-config", "-f", bgpInventory, "--node", "n3", "--vip", "10.0.0.1")
	if code != 1 || !strings.Contains(stderr, "LoadBalancer VIP 10.0.0.1: lies outside spec.network.loadBalancerPool") {
		t.Errorf("bad VIP: exit %d, %s", code, stderr)
	}
}

// Pod CIDRs recorded by the last apply are kept: the agent config follows
// the state directory, not a fresh allocation.
func TestBGPKeepsPriorPodCIDRs(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bgplab"), 0o700); err != nil {
		t.Fatal(err)
	}
	prior := `{"podCIDRs": {"n3": "198.18.43.0/26"}}`
	if err := os.WriteFile(filepath.Join(dir, "bgplab", "prior.json"), []byte(prior), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, "bgp", "agent-config", "-f", bgpInventory, "--node", "n3", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "- 198.18.43.0/26") {
		t.Errorf("agent config does not keep the recorded pod CIDR:\n%s", out)
	}
}
