package etcd

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
	}
}

var testMember = inventory.Member{Name: "dc1-r01-s01", Site: "site-a", Center: "dc1", Rack: "dc1-r01", Address: "198.19.1.10"}

func TestRenderedFilesGolden(t *testing.T) {
	s := Settings{ClusterName: "lab", Timers: inventory.Timers{HeartbeatMs: 100, ElectionTimeoutMs: 1000}}
	golden(t, "etcd.env", RenderEnv(s, testMember))
	shared := s
	shared.SharedPeerCA = true
	golden(t, "etcd-shared-peer-ca.env", RenderEnv(shared, testMember))
	golden(t, "etcd.service", RenderUnit())
	golden(t, "bootstrap-new.env", RenderBootstrap(s, []InitialMember{
		{"dc3-r01-s01", PeerURL("198.19.5.10")}, {"dc1-r01-s01", PeerURL("198.19.1.10")},
	}, false))
	golden(t, "bootstrap-existing.env", RenderBootstrap(s, []InitialMember{{"dc1-r01-s01", PeerURL("198.19.1.10")}}, true))
}

func TestEnvHasNoInitialCluster(t *testing.T) {
	// Membership changes must never rewrite (and so restart) other members.
	env := string(RenderEnv(Settings{ClusterName: "x"}, testMember))
	if strings.Contains(env, "INITIAL_CLUSTER") {
		t.Fatal("etcd.env carries the initial cluster")
	}
}
