package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/golden"
)

// runCLI runs the command tree in-process and returns stdout, stderr and
// the exit code main would return.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runCLIIn(t, nil, args...)
}

func TestPlanGolden(t *testing.T) {
	for _, name := range []string{"three-center", "lab"} {
		file := "../../examples/inventory/" + name + ".yaml"
		out, errs, code := runCLI(t, "plan", "-f", file, "--state-dir=")
		if code != 0 {
			t.Fatalf("plan %s: exit %d: %s", name, code, errs)
		}
		golden.Check(t, "plan-"+name+".txt", []byte(out))
		out, errs, code = runCLI(t, "plan", "-f", file, "-o", "json", "--state-dir=")
		if code != 0 {
			t.Fatalf("plan -o json %s: exit %d: %s", name, code, errs)
		}
		golden.Check(t, "plan-"+name+".json", []byte(out))
	}
}

// TestPlanJSONContract checks the fields scripts rely on, and that losing
// any one center keeps quorum in the three-center example.
func TestPlanJSONContract(t *testing.T) {
	out, errs, code := runCLI(t, "plan", "-f", "../../examples/inventory/three-center.yaml", "-o", "json", "--state-dir=")
	if code != 0 {
		t.Fatal(errs)
	}
	var p struct {
		Etcd struct {
			Members []struct {
				Name, Site, Center, Rack string
			} `json:"members"`
			FailureDomains []struct {
				Kind       string `json:"kind"`
				Name       string `json:"name"`
				QuorumKept *bool  `json:"quorumKept"`
			} `json:"failureDomains"`
		} `json:"etcd"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Etcd.Members) != 5 {
		t.Fatalf("%d members", len(p.Etcd.Members))
	}
	for _, m := range p.Etcd.Members {
		if m.Name == "" || m.Site == "" || m.Center == "" || m.Rack == "" {
			t.Fatalf("member with empty fields: %+v", m)
		}
	}
	centers := 0
	for _, fd := range p.Etcd.FailureDomains {
		if fd.QuorumKept == nil {
			t.Fatalf("failure domain %s/%s without quorumKept", fd.Kind, fd.Name)
		}
		if fd.Kind == "center" {
			centers++
			if !*fd.QuorumKept {
				t.Fatalf("losing center %s loses quorum", fd.Name)
			}
		}
	}
	if centers != 3 {
		t.Fatalf("%d center failure domains", centers)
	}
}

func TestValidateCommand(t *testing.T) {
	out, _, code := runCLI(t, "validate", "-f", "../../examples/inventory/three-center.yaml")
	if code != 0 || !strings.Contains(out, "is valid: 2 sites, 3 centers, 8 racks, 48 servers") {
		t.Fatalf("exit %d: %s", code, out)
	}
	src, err := os.ReadFile("../../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Each broken copy must exit 1 and name the field path (and line).
	cases := []struct{ from, to, path string }{
		{"ssh: {address: 10.1.0.11}", "ssh: {address: 127.0.0.11}", "spec.racks[0].servers[1].ssh.address (line 58)"},
		{"tor: {name: dc2-r01-tor, asn: 65103", "tor: {name: dc2-r01-tor, asn: 23456", "spec.racks[3].tor.asn"},
		{"serviceCIDR: 10.96.0.0/12", "serviceCIDR: 10.128.0.0/16", "spec.network.serviceCIDR"},
		{"members: auto", "members: 4", "spec.etcd.members"},
		{"center: dc3\n", "center: dc9\n", "spec.racks[6].center"},
	}
	for _, tc := range cases {
		bad := strings.Replace(string(src), tc.from, tc.to, 1)
		if bad == string(src) {
			t.Fatalf("case %q does not apply to the example", tc.from)
		}
		f := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		out, _, code := runCLI(t, "validate", "-f", f)
		if code != 1 || !strings.Contains(out, tc.path) {
			t.Fatalf("%s: exit %d, output:\n%s", tc.path, code, out)
		}
		out, _, code = runCLI(t, "validate", "-f", f, "-o", "json")
		var res struct {
			Valid  bool `json:"valid"`
			Errors []struct {
				Path    string `json:"path"`
				Message string `json:"message"`
			} `json:"errors"`
			Warnings []any `json:"warnings"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Valid || len(res.Errors) == 0 || res.Warnings == nil {
			t.Fatalf("json: exit %d err %v: %s", code, err, out)
		}
		if want := strings.Fields(tc.path)[0]; res.Errors[0].Path != want || res.Errors[0].Message == "" {
			t.Fatalf("json path %q, want %q", res.Errors[0].Path, want)
		}
		if _, errs, code := runCLI(t, "plan", "-f", f); code != 1 || !strings.Contains(errs, strings.Fields(tc.path)[0]) {
			t.Fatalf("plan on a broken inventory: exit %d: %s", code, errs)
		}
	}
	if _, _, code := runCLI(t, "validate", "-f", "nope.yaml"); code != 1 {
		t.Fatalf("missing file: exit %d", code)
	}
	if _, errs, code := runCLI(t, "validate", "-f", "../../examples/inventory/lab.yaml", "-o", "yaml"); code == 0 || !strings.Contains(errs, "--output") {
		t.Fatalf("bad -o accepted: %s", errs)
	}
}

// TestPlanKeepsStateAllocations: what the last apply recorded in the state
// directory wins over a fresh allocation.
func TestPlanKeepsStateAllocations(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "prod-east"), 0o700); err != nil {
		t.Fatal(err)
	}
	prior := `{"podCIDRs": {"dc1-r01-s02": "10.128.200.0/24"}, "etcdMembers": ["dc1-r01-s01", "dc1-r02-s01", "dc2-r01-s01", "dc2-r02-s01", "dc3-r01-s01"]}`
	if err := os.WriteFile(filepath.Join(dir, "prod-east", "prior.json"), []byte(prior), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, "plan", "-f", "../../examples/inventory/three-center.yaml", "-o", "json", "--state-dir", dir)
	if code != 0 {
		t.Fatal(errs)
	}
	if !strings.Contains(out, `"podCIDR": "10.128.200.0/24"`) {
		t.Fatal("the recorded pod CIDR of dc1-r01-s02 was not kept")
	}
}
