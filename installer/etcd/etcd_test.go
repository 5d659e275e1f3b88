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

func TestParseFileStates(t *testing.T) {
	out := "755 9b26d025f1d07134a3cabc002329d343e4b6aaed6d480ae00c04b2ff47642b87 /usr/local/bin/etcd\n" +
		"stat 26882210 1795256175 /usr/local/bin/etcd\n" +
		"600 aa /etc/etcd/pki/peer.key\n" +
		"rec 9b26 26882210 1795256175 /usr/local/bin/etcd\n"
	fs := parseFileStates(out)
	if f := fs.files["/usr/local/bin/etcd"]; f.mode != 0o755 || f.sum[:4] != "9b26" {
		t.Fatalf("etcd: %+v", f)
	}
	if fs.files["/etc/etcd/pki/peer.key"].mode != 0o600 {
		t.Fatalf("peer.key: %+v", fs.files["/etc/etcd/pki/peer.key"])
	}
	if fs.stat["/usr/local/bin/etcd"] != "26882210 1795256175" {
		t.Fatalf("stat: %v", fs.stat)
	}
	if fs.record != "9b26 26882210 1795256175 /usr/local/bin/etcd\n" {
		t.Fatalf("record: %q", fs.record)
	}
}

func FuzzParseFileStates(f *testing.F) {
	f.Add("755 ab /usr/local/bin/etcd\nstat 1 2 /x\nrec a 1 2 /x\n")
	f.Fuzz(func(t *testing.T, s string) {
		fs := parseFileStates(s)
		for p, st := range fs.files {
			if p == "" || st.mode > 0o7777 {
				t.Fatalf("bad entry %q %+v", p, st)
			}
		}
	})
}
