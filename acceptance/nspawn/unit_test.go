package nspawn

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/internal/golden"
)

func loadTestInventory(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The lab router's bgpd.conf is what `tricenter bgp render-frr` renders,
// with every rack's TOR merged into the one router namespace.
func TestRouterConfigGolden(t *testing.T) {
	for _, tc := range []struct{ file, golden string }{
		{"testdata/two-nodes.yaml", "two-nodes-bgpd.conf"},
		{"testdata/three-centers.yaml", "three-centers-bgpd.conf"},
		{"../testdata/nspawn-lab.yaml", "nspawn-lab-bgpd.conf"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			c, err := ParseInventory(loadTestInventory(t, tc.file), map[string]string{"KEYFILE": "/k", "KNOWNHOSTS": "/kh"})
			if err != nil {
				t.Fatal(err)
			}
			conf, p, err := routerConfig(c)
			if err != nil {
				t.Fatal(err)
			}
			s := string(conf)
			for _, h := range c.Hosts() {
				if !strings.Contains(s, " neighbor "+h.SSH.Address+" peer-group NODES-") {
					t.Errorf("server %s (%s) is not a neighbor of the router:\n%s", h.Name, h.SSH.Address, s)
				}
			}
			if len(p.Nodes) != len(c.Hosts()) {
				t.Errorf("plan has %d nodes, inventory %d servers", len(p.Nodes), len(c.Hosts()))
			}
			golden.Check(t, "golden/"+tc.golden, conf)
		})
	}
}

func TestMergeRoutersRefusesWhatOneNamespaceCannotPlay(t *testing.T) {
	tor := func(name string, asn uint32) bgp.Router {
		return bgp.Router{Name: name, Kind: bgp.RouterTOR, ASN: asn, Site: "s", Groups: []bgp.PeerGroup{{Name: "G" + name}}}
	}
	for _, tc := range []struct {
		name    string
		routers []bgp.Router
		err     string
		groups  int
	}{
		{"none", nil, "no node peers with any router", 0},
		{"different ASNs", []bgp.Router{tor("a", 65000), tor("b", 65001)}, "give every racks[].tor.asn the same value", 0},
		{"core", []bgp.Router{{Name: "c", Kind: bgp.RouterCore, ASN: 65000}}, "use network.bgp.mode tor", 0},
		{"merged", []bgp.Router{tor("a", 65000), tor("b", 65000)}, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := mergeRouters(tc.routers)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != labRouterName || r.ASN != 65000 || len(r.Groups) != tc.groups {
				t.Fatalf("merged %+v", r)
			}
		})
	}
}

func TestParseCgroups(t *testing.T) {
	mountinfo := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 /sub /mnt/cg\040x rw - cgroup cgroup rw,pids
`
	self := `9:name=systemd:/
5:memory:/process_api/abc
3:cpuset:/
1:cpu:/
8:pids:/sub/a
0::/
`
	got, err := parseCgroups(self, mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	want := []hierarchy{
		{"pids", "/mnt/cg x/a"},
		{"cpu", "/sys/fs/cgroup/cpu"},
		{"cpuset", "/sys/fs/cgroup/cpuset"},
		{"memory", "/sys/fs/cgroup/memory/process_api/abc"},
		{"name=systemd", "/sys/fs/cgroup/systemd"},
		{"", "/sys/fs/cgroup/unified"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []struct{ self, err string }{
		{"4:blkio:/\n", `hierarchy "blkio"`},
		{"8:pids:/other\n", "lies outside its mount"},
		{"", "no cgroup hierarchy"},
	} {
		if _, err := parseCgroups(bad.self, mountinfo); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%q: err %v, want %q", bad.self, err, bad.err)
		}
	}
}

func FuzzParseCgroups(f *testing.F) {
	f.Add("0::/\n1:cpu:/a\n", "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n32 31 0:29 / /c rw - cgroup cgroup rw,cpu\n")
	f.Fuzz(func(t *testing.T, self, mi string) {
		hs, err := parseCgroups(self, mi)
		if err == nil && len(hs) == 0 {
			t.Fatal("no hierarchies and no error")
		}
	})
}

func TestParseRouterOutput(t *testing.T) {
	sum := `{"ipv4Unicast":{"routerId":"198.19.24.1","peers":{"198.19.25.10":{"remoteAs":4212981017,"state":"Established","pfxRcd":1,"dynamicPeer":true},"198.19.24.10":{"remoteAs":4212981016,"state":"Active","pfxRcd":0}}}}`
	ns, err := parseNeighbors([]byte(sum))
	if err != nil {
		t.Fatal(err)
	}
	want := []BGPNeighbor{{"198.19.24.10", 4212981016, "Active", 0}, {"198.19.25.10", 4212981017, "Established", 1}}
	if !reflect.DeepEqual(ns, want) || ns[0].Established() || !ns[1].Established() {
		t.Fatalf("neighbors %+v", ns)
	}
	if ns, err := parseNeighbors([]byte("{}")); err != nil || len(ns) != 0 {
		t.Fatalf("empty summary: %v %v", ns, err)
	}
	table := `{"routerId":"198.19.24.1","routes":{"198.19.160.0/24":[{"valid":true,"nexthops":[{"ip":"198.19.24.10"}]}],"198.19.113.10/32":[{"valid":true,"nexthops":[{"ip":"198.19.25.10"}]},{"valid":true,"nexthops":[{"ip":"198.19.24.10"}]}],"198.19.161.0/24":[{"valid":false,"nexthops":[{"ip":"198.19.25.10"}]}]}}`
	rt, err := parseBGPTable([]byte(table))
	if err != nil {
		t.Fatal(err)
	}
	wantRT := map[string][]string{"198.19.160.0/24": {"198.19.24.10"}, "198.19.113.10/32": {"198.19.24.10", "198.19.25.10"}}
	if !reflect.DeepEqual(rt, wantRT) {
		t.Fatalf("table %v", rt)
	}
	kern := `[{"dst":"198.19.160.0/24","gateway":"198.19.24.10","dev":"r0","protocol":"bgp"},{"dst":"198.19.113.10","nexthops":[{"gateway":"198.19.25.10"},{"gateway":"198.19.24.10"}]}]`
	kr, err := parseKernelRoutes([]byte(kern))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(kr, wantRT) {
		t.Fatalf("kernel routes %v", kr)
	}
	for _, bad := range []string{"{", "[1]"} {
		if _, err := parseBGPTable([]byte(bad)); err == nil {
			t.Errorf("parseBGPTable(%q) accepted", bad)
		}
	}
}

func FuzzParseRouterOutput(f *testing.F) {
	f.Add([]byte(`{"peers":{"a":{"state":"Established"}}}`))
	f.Add([]byte(`{"routes":{"p":[{"valid":true,"nexthops":[{"ip":"x"}]}]}}`))
	f.Add([]byte(`[{"dst":"1.2.3.4"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if ns, err := parseNeighbors(data); err == nil {
			for i := 1; i < len(ns); i++ {
				if ns[i-1].Address > ns[i].Address {
					t.Fatalf("neighbors not sorted: %+v", ns)
				}
			}
		}
		if rt, err := parseBGPTable(data); err == nil {
			for p, hops := range rt {
				if len(hops) == 0 {
					t.Fatalf("prefix %s without next hops", p)
				}
			}
		}
		if kr, err := parseKernelRoutes(data); err == nil {
			for p := range kr {
				if !strings.Contains(p, "/") {
					t.Fatalf("kernel route %q without a prefix length", p)
				}
			}
		}
	})
}

// A rack subnet already on one of the host's interfaces (another lab's
// bridge) is refused; a free one is not.
func TestCheckHostFree(t *testing.T) {
	c, err := ParseInventory(loadTestInventory(t, "testdata/two-nodes.yaml"), map[string]string{"KEYFILE": "/k", "KNOWNHOSTS": "/kh"})
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Racks[0].Subnet = "198.18.255.0/24" // no lab uses it
	if err := checkHostFree(c); err != nil {
		t.Fatalf("free subnets refused: %v", err)
	}
	c.Spec.Racks[1].Subnet = "127.0.0.0/8" // loopback is on every host
	err = checkHostFree(c)
	if err == nil || !strings.Contains(err.Error(), "rack dc2-r1: subnet 127.0.0.0/8 is already in use on this host") {
		t.Fatalf("subnet in use: %v", err)
	}
}
