package bgp

import (
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// loadPlan loads, validates and derives an inventory from testdata.
func loadPlan(t testing.TB, file string, opts Options) (*inventory.Cluster, *Plan) {
	t.Helper()
	c, lines, err := inventory.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	ip, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Derive(c, ip, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}
