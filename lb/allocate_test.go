package lb

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var (
	vip    = netip.MustParseAddr("198.19.120.0")
	static = netip.MustParseAddr("198.19.120.2")
)

// pool4 is a /30 (four addresses) with the API VIP and a static VIP
// reserved: two addresses to hand out, .1 and .3.
func pool4(t *testing.T) *Allocator {
	t.Helper()
	a, err := New(Pool{Ranges: []netip.Prefix{netip.MustParsePrefix("198.19.120.0/30")},
		Reserved: map[netip.Addr]string{vip: "the API VIP", static: "network.loadBalancerVIPs"}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func tcp(ports ...int32) []Port {
	var out []Port
	for _, p := range ports {
		out = append(out, Port{Protocol: "TCP", Port: p})
	}
	return out
}

func mustAssign(t *testing.T, a *Allocator, s Service) netip.Addr {
	t.Helper()
	addr, err := a.Assign(s)
	if err != nil {
		t.Fatalf("assign %s: %v", s.Key, err)
	}
	return addr
}

func TestAssignSkipsReservedAndExhausts(t *testing.T) {
	a := pool4(t)
	if got := a.Free(); got != 2 {
		t.Fatalf("free = %d, want 2 (four addresses, two reserved)", got)
	}
	first := mustAssign(t, a, Service{Key: "ns/a", Ports: tcp(80)})
	second := mustAssign(t, a, Service{Key: "ns/b", Ports: tcp(80)})
	if first.String() != "198.19.120.1" || second.String() != "198.19.120.3" {
		t.Fatalf("assigned %s and %s, want 198.19.120.1 and 198.19.120.3 (the reserved .0 and .2 skipped)", first, second)
	}
	if _, err := a.Assign(Service{Key: "ns/c", Ports: tcp(80)}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("third assignment: %v, want ErrExhausted", err)
	}
	// Assigning again keeps the address; releasing frees it for another.
	if again := mustAssign(t, a, Service{Key: "ns/a", Ports: tcp(80, 443)}); again != first {
		t.Fatalf("ns/a moved from %s to %s", first, again)
	}
	a.Release("ns/a")
	if got := mustAssign(t, a, Service{Key: "ns/c", Ports: tcp(80)}); got != first {
		t.Fatalf("ns/c got %s, want the released %s", got, first)
	}
	if _, ok := a.Addr("ns/a"); ok {
		t.Fatal("ns/a still holds an address after Release")
	}
}

func TestRequestedAddress(t *testing.T) {
	a := pool4(t)
	three := netip.MustParseAddr("198.19.120.3")
	if got := mustAssign(t, a, Service{Key: "ns/a", Requested: three, Ports: tcp(80)}); got != three {
		t.Fatalf("got %s, want the requested %s", got, three)
	}
	for _, tc := range []struct {
		name string
		s    Service
		want string
	}{
		{"reserved", Service{Key: "ns/b", Requested: vip}, "reserved: the API VIP"},
		{"static VIP", Service{Key: "ns/b", Requested: static}, "reserved: network.loadBalancerVIPs"},
		{"outside the pool", Service{Key: "ns/b", Requested: netip.MustParseAddr("198.19.121.1")}, "not in network.loadBalancerPool (198.19.120.0/30)"},
		{"held, no sharing key", Service{Key: "ns/b", Requested: three, Ports: tcp(443)}, "held by ns/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Assign(tc.s)
			var c *ConflictError
			if !errors.As(err, &c) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "service ns/b") {
				t.Fatalf("err = %v, want a conflict naming ns/b and %q", err, tc.want)
			}
			if _, ok := a.Addr("ns/b"); ok {
				t.Fatal("a refused Service holds an address")
			}
		})
	}
	// A Service that changes its request moves to the new address.
	one := netip.MustParseAddr("198.19.120.1")
	if got := mustAssign(t, a, Service{Key: "ns/a", Requested: one, Ports: tcp(80)}); got != one {
		t.Fatalf("got %s, want the newly requested %s", got, one)
	}
	if h := a.Holders(three); len(h) != 0 {
		t.Fatalf("%s still held by %v", three, h)
	}
}

func TestSharing(t *testing.T) {
	a := pool4(t)
	web := mustAssign(t, a, Service{Key: "ns/web", SharingKey: "front", Ports: tcp(80)})
	// Same key, disjoint ports: the same address, without asking for it.
	if got := mustAssign(t, a, Service{Key: "ns/tls", SharingKey: "front", Ports: tcp(443)}); got != web {
		t.Fatalf("ns/tls got %s, want to share %s", got, web)
	}
	if h := a.Holders(web); strings.Join(h, ",") != "ns/tls,ns/web" {
		t.Fatalf("holders of %s: %v", web, h)
	}
	// Same key, overlapping port: asking for the address is a conflict;
	// taking any gives another one.
	_, err := a.Assign(Service{Key: "ns/dup", SharingKey: "front", Requested: web, Ports: tcp(443)})
	if err == nil || !strings.Contains(err.Error(), "uses port 443/TCP too") {
		t.Fatalf("overlapping ports: %v", err)
	}
	if got := mustAssign(t, a, Service{Key: "ns/dup", SharingKey: "front", Ports: tcp(443)}); got == web {
		t.Fatalf("ns/dup shares %s with a Service on the same port", got)
	}
	// UDP and TCP on one port number do not overlap.
	a.Release("ns/dup")
	if got := mustAssign(t, a, Service{Key: "ns/dns", SharingKey: "front", Ports: []Port{{Protocol: "UDP", Port: 443}}}); got != web {
		t.Fatalf("ns/dns (443/UDP) got %s, want to share %s", got, web)
	}
	// A holder that changes its ports into a clash loses the address.
	moved := mustAssign(t, a, Service{Key: "ns/tls", SharingKey: "front", Ports: tcp(80)})
	if moved == web {
		t.Fatalf("ns/tls kept %s while clashing on 80/TCP with ns/web", web)
	}
}

// TestRestoreNeverGivesTwice: a controller that starts (or becomes
// leader) rebuilds its record from the Services' status; what they hold
// is never handed out again, and a holder that may not keep its address
// is refused.
func TestRestoreNeverGivesTwice(t *testing.T) {
	first := pool4(t)
	a := mustAssign(t, first, Service{Key: "ns/a", Ports: tcp(80)})
	b := mustAssign(t, first, Service{Key: "ns/b", Ports: tcp(80)})

	next := pool4(t) // the new leader
	for key, addr := range map[string]netip.Addr{"ns/a": a, "ns/b": b} {
		if err := next.Restore(Service{Key: key, Ports: tcp(80)}, addr); err != nil {
			t.Fatalf("restore %s: %v", key, err)
		}
	}
	if _, err := next.Assign(Service{Key: "ns/c", Ports: tcp(80)}); !errors.Is(err, ErrExhausted) {
		t.Fatalf("after restore: %v, want ErrExhausted (both addresses held)", err)
	}
	for _, tc := range []struct {
		name string
		s    Service
		addr netip.Addr
		want string
	}{
		{"held by another", Service{Key: "ns/x", Ports: tcp(81)}, a, "held by ns/a"},
		{"reserved", Service{Key: "ns/x"}, vip, "reserved"},
		{"asks for another", Service{Key: "ns/x", Requested: b}, a, "now asks for " + b.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := next.Restore(tc.s, tc.addr); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if h := next.Holders(a); strings.Join(h, ",") != "ns/a" {
		t.Fatalf("holders of %s: %v", a, h)
	}
}

func TestNewRefusesABadPool(t *testing.T) {
	if _, err := New(Pool{}); err == nil || !strings.Contains(err.Error(), "network.loadBalancerPool is empty") {
		t.Fatalf("empty pool: %v", err)
	}
	if _, err := New(Pool{Ranges: []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")}}); err == nil || !strings.Contains(err.Error(), "not an IPv4 prefix") {
		t.Fatalf("IPv6 pool: %v", err)
	}
}

// TestPoolForTheLabInventory: the nspawn lab's pool reserves its API VIP
// and its static VIP, and hands out the rest of the /24.
func TestPoolForTheLabInventory(t *testing.T) {
	c, lines, err := inventory.Load("../acceptance/testdata/nspawn-lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PoolFor(c, ips)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Free(); got != 254 {
		t.Fatalf("free = %d, want 254 (a /24 without the API VIP and one static VIP)", got)
	}
	for _, r := range []string{"198.19.120.10", "198.19.120.20"} {
		if _, err := a.Assign(Service{Key: "ns/x", Requested: netip.MustParseAddr(r)}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Fatalf("%s: %v, want reserved", r, err)
		}
	}
}
