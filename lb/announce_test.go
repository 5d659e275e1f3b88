package lb

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The lab's shape: a worker and a control-plane-only server in dc1
// (production), a worker in dc2 (local DR) and in dc3 (remote DR).
var (
	w1  = Node{Name: "dc1-w01", Center: "dc1", Role: inventory.RoleProduction, Worker: true}
	cp1 = Node{Name: "dc1-s01", Center: "dc1", Role: inventory.RoleProduction}
	w2  = Node{Name: "dc2-w01", Center: "dc2", Role: inventory.RoleLocalDR, Worker: true}
	w3  = Node{Name: "dc3-w01", Center: "dc3", Role: inventory.RoleRemoteDR, Worker: true}
	all = []Node{w1, cp1, w2, w3}
	lbA = netip.MustParseAddr("198.19.120.1")
)

func ep(n Node, ready bool) Endpoint { return Endpoint{Node: n.Name, Center: n.Center, Ready: ready} }

// routes is who announces what: "dc1-w01:0 dc2-w01:1" (node:prepends).
func routes(svcs ...ServiceView) string {
	var out []string
	for _, n := range all {
		for _, r := range Announcements(n, svcs) {
			out = append(out, fmt.Sprintf("%s:%d", n.Name, r.Prepends))
		}
	}
	return strings.Join(out, " ")
}

func TestAnnouncements(t *testing.T) {
	everywhere := []Endpoint{ep(w1, true), ep(w2, true), ep(w3, true)}
	for _, tc := range []struct {
		name string
		svc  ServiceView
		want string
	}{
		{"no ready endpoint: nobody", ServiceView{Endpoints: []Endpoint{ep(w1, false)}}, ""},
		{"cluster, no preference: every worker alike", ServiceView{Endpoints: []Endpoint{ep(w3, true)}, Prefer: PreferNone},
			"dc1-w01:0 dc2-w01:0 dc3-w01:0"},
		{"cluster, chosen nodes", ServiceView{Endpoints: everywhere, Nodes: []string{cp1.Name, w3.Name}, Prefer: PreferNone},
			"dc1-s01:0 dc3-w01:0"},
		{"local: only nodes with a ready endpoint of their own", ServiceView{Local: true, Prefer: PreferNone,
			Endpoints: []Endpoint{ep(w1, true), ep(w2, false), ep(w3, true)}}, "dc1-w01:0 dc3-w01:0"},
		{"production preferred: DR centers prepend", ServiceView{Endpoints: everywhere, Prefer: PreferProduction},
			"dc1-w01:0 dc2-w01:1 dc3-w01:2"},
		{"production preferred, production has no ready endpoint: it stops announcing",
			ServiceView{Endpoints: []Endpoint{ep(w1, false), ep(w2, true), ep(w3, true)}, Prefer: PreferProduction}, "dc2-w01:1 dc3-w01:2"},
		{"local site preferred: only the remote center prepends", ServiceView{Endpoints: everywhere, Prefer: PreferLocal},
			"dc1-w01:0 dc2-w01:0 dc3-w01:1"},
		{"local policy with a preference", ServiceView{Local: true, Endpoints: everywhere, Prefer: PreferProduction},
			"dc1-w01:0 dc2-w01:1 dc3-w01:2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.svc.Key, tc.svc.Addrs = "ns/web", []netip.Addr{lbA}
			if got := routes(tc.svc); got != tc.want {
				t.Fatalf("announced by %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSharedAddressAnnouncedOnce: two Services on one address give one
// route, with the fewer prepends of the two.
func TestSharedAddressAnnouncedOnce(t *testing.T) {
	a := ServiceView{Key: "ns/a", Addrs: []netip.Addr{lbA}, Endpoints: []Endpoint{ep(w3, true)}, Prefer: PreferProduction}
	b := ServiceView{Key: "ns/b", Addrs: []netip.Addr{lbA}, Endpoints: []Endpoint{ep(w3, true)}, Prefer: PreferLocal}
	rs := Announcements(w3, []ServiceView{a, b})
	if len(rs) != 1 || rs[0].Addr != lbA || rs[0].Prepends != 1 {
		t.Fatalf("routes %+v, want one route to %s with 1 prepend", rs, lbA)
	}
	if rs := Announcements(w3, []ServiceView{{Key: "ns/pending", Endpoints: []Endpoint{ep(w3, true)}}}); len(rs) != 0 {
		t.Fatalf("a Service without an address announced %+v", rs)
	}
}

func TestParsePreference(t *testing.T) {
	for _, s := range []string{"production", "local", "none"} {
		if p, err := ParsePreference(s); err != nil || string(p) != s {
			t.Fatalf("%s: %v %v", s, p, err)
		}
	}
	if _, err := ParsePreference("dc1"); err == nil || !strings.Contains(err.Error(), "use production, local or none") {
		t.Fatalf("unknown preference: %v", err)
	}
}
