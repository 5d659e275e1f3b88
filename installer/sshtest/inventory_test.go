package sshtest

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestClusterIsValid checks the lab inventory passes validation for the
// lab sizes the tests and the benchmark use (no sshd needed).
func TestClusterIsValid(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 50, 150} {
		for _, jump := range []bool{false, true} {
			l := &Lab{ClientKey: "/k", KnownHosts: "/kh"}
			seg := netip.MustParseAddr("198.18.17.0")
			if jump {
				l.Jump = &Host{Name: "jump", Addr: netip.MustParseAddr("198.18.16.2"),
					Extra: []netip.Addr{netip.MustParseAddr("198.18.16.3"), netip.MustParseAddr("198.18.16.4")}, Fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}
			}
			for i := range n {
				b := seg.As4()
				b[3] = byte(CenterOf(i)*64 + 10 + i/3)
				l.Hosts = append(l.Hosts, &Host{Name: "node" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Addr: netip.AddrFrom4(b),
					Fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"})
			}
			path := filepath.Join(t.TempDir(), "inv.yaml")
			if err := l.WriteInventory(path, ClusterOptions{PinHostKeys: jump}); err != nil {
				t.Fatal(err)
			}
			c, lines, err := inventory.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			res := c.Validate(lines)
			if err := res.Err(); n >= 3 && err != nil {
				t.Errorf("%d hosts, jump=%v: %v", n, jump, err)
			}
			if got := len(l.Cluster(ClusterOptions{}).Hosts()); got != n {
				t.Errorf("%d hosts in the inventory, want %d", got, n)
			}
		}
	}
}
