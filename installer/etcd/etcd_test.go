package etcd

import (
	"errors"
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

// fakeMembers builds a member list (a fake cluster view for planning).
func fakeMembers(addrs ...string) []Member {
	var out []Member
	for i, a := range addrs {
		out = append(out, Member{ID: uint64(i + 1), Name: "m" + a, PeerURLs: []string{PeerURL(a)}, ClientURLs: []string{ClientURL(a)}})
	}
	return out
}

func planOf(addrs ...string) []inventory.Member {
	var out []inventory.Member
	for _, a := range addrs {
		out = append(out, inventory.Member{Name: "m" + a, Address: a})
	}
	return out
}

func allHealthy(ms []Member) map[uint64]bool {
	h := map[uint64]bool{}
	for _, m := range ms {
		h[m.ID] = true
	}
	return h
}

func kinds(steps []Step) string {
	var k []string
	for _, s := range steps {
		k = append(k, string(s.Kind)+":"+s.Member.Address+s.Name)
	}
	return strings.Join(k, " ")
}

func TestPlanMembership(t *testing.T) {
	five := fakeMembers("a", "b", "c", "d", "e")
	three := fakeMembers("a", "c", "e")
	tests := []struct {
		name    string
		current []Member
		healthy func([]Member) map[uint64]bool
		plan    []inventory.Member
		want    string
		err     error
	}{
		{"converged", five, allHealthy, planOf("a", "b", "c", "d", "e"), "", nil},
		{"scale down removes after nothing else", five, allHealthy, planOf("a", "c", "e"), "remove:mb remove:md", nil},
		{"scale up adds learners one by one", three, allHealthy, planOf("a", "b", "c", "d", "e"), "add:b add:d", nil},
		{"dead member replaced: remove first, then add", five,
			func(ms []Member) map[uint64]bool { h := allHealthy(ms); h[2] = false; return h },
			planOf("a", "x", "c", "d", "e"), "remove-dead:mb add:x", nil},
		{"continue an added learner that never started",
			append(fakeMembers("a", "c", "e"), Member{ID: 9, PeerURLs: []string{PeerURL("b")}, IsLearner: true}),
			allHealthy, planOf("a", "b", "c", "e"), "add:b", nil},
		{"removing healthy members while two are down loses quorum", five,
			func(ms []Member) map[uint64]bool { h := allHealthy(ms); h[1], h[3] = false, false; return h },
			planOf("a", "c", "d"), "", ErrQuorumRisk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := PlanMembership(tc.current, tc.healthy(tc.current), tc.plan)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && kinds(steps) != tc.want {
				t.Fatalf("steps = %q, want %q", kinds(steps), tc.want)
			}
		})
	}
}

func TestCheckRemove(t *testing.T) {
	ms := fakeMembers("a", "b", "c")
	h := allHealthy(ms)
	if err := CheckRemove(ms, h, 1); err != nil {
		t.Fatalf("removing one of three healthy: %v", err)
	}
	h[2] = false
	if err := CheckRemove(ms, h, 1); !errors.Is(err, ErrQuorumRisk) {
		t.Fatalf("removing a healthy member with another down: err = %v, want ErrQuorumRisk", err)
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
