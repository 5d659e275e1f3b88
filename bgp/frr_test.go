package bgp

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

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
			golden := filepath.Join("testdata", "golden", tc.router+".conf")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("rendered %s differs from %s (go test -update rewrites it):\n%s", tc.router, golden, got)
			}
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
	if _, err := RenderFRR(tp, "tor1", FRROptions{Password: "two words"}); err == nil || strings.Contains(err.Error(), "two words") {
		t.Errorf("password with a space: %v (must fail without echoing it)", err)
	}
}

// A pod CIDR as long as the pod mask and a /32 pool render without ge/le.
func TestRenderFRRExactPrefixes(t *testing.T) {
	_, p := loadPlan(t, "testdata/core.yaml", Options{})
	p.PodMaskSize = p.PodCIDR.Bits()
	p.LoadBalancerPool = []netip.Prefix{netip.MustParsePrefix("198.18.46.1/32")}
	out, err := RenderFRR(p, "core-a1", FRROptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"seq 10 permit 198.18.40.0/22\n", "seq 20 permit 198.18.46.1/32\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	frrDryRun(t, out)
}
