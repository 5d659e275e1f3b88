package bgp

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/golden"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

const bgpdBin = "/usr/lib/frr/bgpd"

// TestRenderFRRGolden compares rendered router configs with reviewed golden
// files and has FRR's own parser (bgpd --dryrun) check each one.
func TestRenderFRRGolden(t *testing.T) {
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "golden-password")
	for _, tc := range []struct{ inventory, router, password string }{
		{"testdata/core.yaml", "core-a1", ""},
		{"testdata/core.yaml", "core-b1", ""},
		{"testdata/tor.yaml", "tor1", "golden-password"},
	} {
		t.Run(tc.router, func(t *testing.T) {
			_, p := loadPlan(t, tc.inventory, Options{})
			got, err := RenderFRR(p, tc.router, FRROptions{Password: tc.password})
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("golden", tc.router+".conf"), got)
			frrDryRun(t, got)
		})
	}
}

// frrDryRun has bgpd parse the configuration without starting.
func frrDryRun(t *testing.T, conf []byte) {
	t.Helper()
	if _, err := os.Stat(bgpdBin); err != nil {
		t.Logf("not checked by FRR: %s missing (install frr: make deps)", bgpdBin)
		return
	}
	if problems := frrCheck(t, conf); len(problems) > 0 {
		t.Errorf("FRR rejects the rendered configuration:\n%s", strings.Join(problems, "\n"))
	}
}

// frrCheck returns bgpd --dryrun's complaints (it exits 0 even with them).
func frrCheck(t *testing.T, conf []byte) []string {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "bgpd.conf")
	if err := os.WriteFile(f, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bgpdBin, "--dryrun", "-f", f, "-S", "-Z", "-P", "0", "--vty_socket", dir).CombinedOutput()
	if err != nil {
		return []string{err.Error(), string(out)}
	}
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "No such command") || strings.Contains(line, "Unknown command") ||
			strings.Contains(line, "config line") || strings.HasPrefix(strings.TrimSpace(line), "% ") {
			problems = append(problems, line)
		}
	}
	return problems
}

// The FRR check itself catches a bad line.
func TestFRRCheckCatchesErrors(t *testing.T) {
	testenv.RequireBinary(t, bgpdBin)
	if p := frrCheck(t, []byte("router bgp 65000\n neighbor X remote-as bogus\n")); len(p) == 0 {
		t.Error("bgpd --dryrun output with a bad line was not recognised")
	}
}

func TestRenderFRRErrors(t *testing.T) {
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "x")
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	if _, err := RenderFRR(p, "nope", FRROptions{}); !errors.Is(err, ErrUnknownRouter) || !strings.Contains(err.Error(), "core-a1, core-b1") {
		t.Errorf("unknown router: %v", err)
	}
	_, tp := loadPlan(t, "testdata/tor.yaml", Options{})
	if _, err := RenderFRR(tp, "tor1", FRROptions{}); err == nil || !strings.Contains(err.Error(), "network.bgp.password is set") {
		t.Errorf("missing password: %v", err)
	}
	if _, err := RenderFRR(p, "core-a1", FRROptions{Password: "x"}); err == nil || !strings.Contains(err.Error(), "network.bgp.password is not set") {
		t.Errorf("password without network.bgp.password: %v", err)
	}
	// Two nodes whose names give one filter name.
	cp := *tp
	cp.Nodes = append([]Node(nil), tp.Nodes...)
	for i := range cp.Nodes {
		if cp.Nodes[i].Name == "m2" {
			cp.Nodes[i].Name = "M1"
		}
	}
	cp.Routers = append([]Router(nil), tp.Routers...)
	r := &cp.Routers[0]
	r.Groups = append([]PeerGroup(nil), r.Groups...)
	r.Groups[0].Nodes = []string{"m1", "M1"}
	if _, err := RenderFRR(&cp, r.Name, FRROptions{Password: "x"}); err == nil || !strings.Contains(err.Error(), "rename one of them") {
		t.Errorf("clashing filter names: %v", err)
	}
	r.Groups[0].Nodes = []string{"m1", "ghost"}
	if _, err := RenderFRR(&cp, r.Name, FRROptions{Password: "x"}); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("unknown node in a peer group: %v", err)
	}
}

// A secret FRR could not read back (whitespace, '!') is fine: only the
// racks' derived passwords reach the configuration, never the secret.
func TestRenderFRRSecretNeverWritten(t *testing.T) {
	const secret = "two words ! and more"
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", secret)
	_, p := loadPlan(t, "testdata/tor.yaml", Options{})
	out, err := RenderFRR(p, "tor1", FRROptions{Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "two words") {
		t.Error("the rendered configuration holds the cluster secret")
	}
	if want := " neighbor NODES-t1 password " + RackPassword(secret, "t1") + "\n"; !strings.Contains(string(out), want) {
		t.Errorf("missing %q in:\n%s", want, out)
	}
	frrDryRun(t, out)
}

func TestRackPassword(t *testing.T) {
	// Computed independently:
	//   printf '%s' tricenter-bgp-rack-password:t1 |
	//     openssl dgst -sha256 -hmac golden-password -binary | basenc --base64url | tr -d =
	if got, want := RackPassword("golden-password", "t1"), "8l6ZdulW4dSP-CVvvuFqF9pZwXXTaMCwd9JLOvoftBY"; got != want {
		t.Errorf("RackPassword = %q, want %q", got, want)
	}
	seen := map[string]string{}
	for _, secret := range []string{"golden-password", "golden-passwore", "x", strings.Repeat("long ", 40)} {
		for _, rack := range []string{"t1", "t2", "dc1-r01", "rack with spaces"} {
			pw := RackPassword(secret, rack)
			if len(pw) == 0 || len(pw) > 80 {
				t.Errorf("%q: length %d, want 1..80 (TCP-MD5)", rack, len(pw))
			}
			if strings.ContainsAny(pw, " \t\r\n!") || strings.TrimFunc(pw, func(r rune) bool { return r > ' ' && r < 0x7f }) != "" {
				t.Errorf("%q: %q is not printable without spaces and '!'", rack, pw)
			}
			if len(secret) > 4 && strings.Contains(pw, secret) {
				t.Errorf("%q: the password holds the secret", rack)
			}
			if prev, dup := seen[pw]; dup {
				t.Errorf("secret %q rack %q: same password as %s", secret, rack, prev)
			}
			seen[pw] = secret + "/" + rack
		}
	}
}

func TestAgentPassword(t *testing.T) {
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", "s")
	_, tp := loadPlan(t, "testdata/tor.yaml", Options{})
	for node, rack := range map[string]string{"m1": "t1", "m2": "t1", "m3": "t2", "m4": "t3"} {
		pw, err := tp.AgentPassword(node, "s")
		if err != nil || pw != RackPassword("s", rack) {
			t.Errorf("%s: %v, not rack %s's password", node, err, rack)
		}
	}
	if _, err := tp.AgentPassword("m1", ""); err == nil || !strings.Contains(err.Error(), "network.bgp.password") {
		t.Errorf("no secret: %v", err)
	}
	if _, err := tp.AgentPassword("nope", "s"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown node: %v", err)
	}
	_, cp := loadPlan(t, "testdata/core.yaml", Options{})
	if pw, err := cp.AgentPassword("n1", "s"); err != nil || pw != "" {
		t.Errorf("no network.bgp.password: %q, %v; want none", pw, err)
	}
}

// Pod CIDRs are matched exactly and a /32 pool renders without ge/le.
func TestRenderFRRExactPrefixes(t *testing.T) {
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	p.LoadBalancerPool = []netip.Prefix{netip.MustParsePrefix("198.18.46.9/32")}
	out, err := RenderFRR(p, "core-a1", FRROptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ip prefix-list TRICENTER-BGPLAB-NODE-N1-IN seq 10 permit 198.18.40.0/26\n",
		"ip prefix-list TRICENTER-BGPLAB-NODE-N1-IN seq 30 permit 198.18.46.9/32\n",
		"ip prefix-list TRICENTER-BGPLAB-NODE-N3-IN seq 20 permit 198.18.46.9/32\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	frrDryRun(t, out)
}
