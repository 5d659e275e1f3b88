package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// With network.bgp.password, render-frr writes each rack's derived
// password, never the cluster's secret, and never prints either on
// stderr; a missing secret fails naming the field.
func TestBGPRenderFRRRackPassword(t *testing.T) {
	const secret = "render-frr-cluster-secret"
	t.Setenv("TRICENTER_STATE_DIR", t.TempDir())
	t.Setenv("TRICENTER_TEST_BGP_PASSWORD", secret)
	inv := "../../bgp/testdata/tor.yaml"
	file := filepath.Join(t.TempDir(), "bgpd.conf")
	out, stderr, code := runCLI(t, "bgp", "render-frr", "-f", inv, "--router", "tor1", "--output-file", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("--output-file mode: %v, %v", st, err)
	}
	rack := bgp.RackPassword(secret, "t1")
	if !strings.Contains(string(data), " neighbor NODES-t1 password "+rack+"\n") {
		t.Errorf("rack t1's password is not in:\n%s", data)
	}
	for _, s := range []string{secret, bgp.RackPassword(secret, "t2")} {
		if strings.Contains(string(data), s) {
			t.Error("the configuration of tor1 holds the cluster secret or another rack's password")
		}
	}
	if strings.Contains(out+stderr, rack) || strings.Contains(out+stderr, secret) {
		t.Error("a password was printed")
	}

	os.Unsetenv("TRICENTER_TEST_BGP_PASSWORD")
	_, stderr, code = runCLI(t, "bgp", "render-frr", "-f", inv, "--router", "tor1")
	if code == 0 || !strings.Contains(stderr, "spec.network.bgp.password") {
		t.Errorf("missing secret: exit %d, %s", code, stderr)
	}
}
