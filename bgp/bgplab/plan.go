package bgplab

import (
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// LoadPlan reads a test inventory, validates and plans it (placement and
// IPAM, once) and derives its BGP plan; any failure fails the test.
func LoadPlan(t testing.TB, file string, opts bgp.Options) (*inventory.Cluster, *bgp.Plan) {
	t.Helper()
	c, lines, err := inventory.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := inventory.BuildPlan(c, lines, opts.Prior)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Placement == nil {
		opts.Placement = pl.Placement()
	}
	p, err := bgp.Derive(c, pl.IPs(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}
