package inventory_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestAllocateIPsWellKnownAddresses(t *testing.T) {
	c := base()
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ips.KubernetesServiceIP.String() != "10.96.0.1" || ips.ClusterDNSIP.String() != "10.96.0.10" {
		t.Fatalf("service IPs %s %s", ips.KubernetesServiceIP, ips.ClusterDNSIP)
	}
	if ips.APIVIP.String() != "10.250.0.10" || ips.LoadBalancerFree != 255 {
		t.Fatalf("VIP %s free %d", ips.APIVIP, ips.LoadBalancerFree)
	}
	pod := netip.MustParsePrefix(c.Spec.Network.PodCIDR)
	seen := map[netip.Prefix]string{}
	for _, h := range c.Hosts() {
		p, ok := ips.PodCIDR(h.Name)
		if !ok {
			t.Fatalf("%s has no pod CIDR", h.Name)
		}
		if p.Bits() != 24 || !pod.Contains(p.Addr()) || p.Masked() != p {
			t.Fatalf("%s: bad block %s", h.Name, p)
		}
		if other, dup := seen[p]; dup {
			t.Fatalf("%s and %s share %s", h.Name, other, p)
		}
		seen[p] = h.Name
	}
	// Deterministic without prior.
	again, _ := inventory.AllocateIPs(c, nil)
	for name, p := range ips.PodCIDRs {
		if again.PodCIDRs[name] != p {
			t.Fatalf("not deterministic for %s", name)
		}
	}
}

// TestAllocateIPsStable: with the previous allocation as prior, removing and
// adding servers anywhere never renumbers a surviving server.
func TestAllocateIPsStable(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	c := base()
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 50 {
		prior := &inventory.Prior{PodCIDRs: map[string]string{}}
		for n, p := range ips.PodCIDRs {
			prior.PodCIDRs[n] = p.String()
		}
		// Remove a random server, insert a new one at a random position.
		k := r.IntN(len(c.Spec.Racks))
		rk := &c.Spec.Racks[k]
		if len(rk.Servers) > 1 {
			i := r.IntN(len(rk.Servers))
			rk.Servers = append(rk.Servers[:i], rk.Servers[i+1:]...)
		}
		add := rk.Servers[0]
		add.Name = "added-" + itoa(round)
		a := netip.MustParsePrefix(rk.Subnet).Addr().As4()
		a[3] = byte(100 + round)
		add.SSH.Address = netip.AddrFrom4(a).String()
		add.BMC = nil
		add.PodCIDR = ""
		pos := r.IntN(len(rk.Servers) + 1)
		rk.Servers = append(rk.Servers[:pos], append([]inventory.Server{add}, rk.Servers[pos:]...)...)
		next, err := inventory.AllocateIPs(c, prior)
		if err != nil {
			t.Fatal(err)
		}
		for name, p := range next.PodCIDRs {
			if old, ok := prior.PodCIDRs[name]; ok && old != p.String() {
				t.Fatalf("round %d: %s renumbered from %s to %s", round, name, old, p)
			}
		}
		ips = next
	}
}

func TestAllocateIPsPinnedAndExhausted(t *testing.T) {
	c := base()
	c.Spec.Racks[0].Servers[1].PodCIDR = "10.128.0.0/24"
	ips, err := inventory.AllocateIPs(c, &inventory.Prior{PodCIDRs: map[string]string{
		c.Spec.Racks[0].Servers[0].Name: "10.128.0.0/24", // collides with the pin: reallocated
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ips.PodCIDRs[c.Spec.Racks[0].Servers[1].Name].String(); got != "10.128.0.0/24" {
		t.Fatalf("pinned block lost: %s", got)
	}
	if got := ips.PodCIDRs[c.Spec.Racks[0].Servers[0].Name].String(); got == "10.128.0.0/24" {
		t.Fatal("a recorded block won over a pinned one")
	}
	c = base()
	c.Spec.Network.PodCIDR = "10.128.0.0/19" // 32 blocks for 48 servers
	if _, err := inventory.AllocateIPs(c, nil); err == nil {
		t.Fatal("exhausted pod CIDR accepted")
	}
}
