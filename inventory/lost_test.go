package inventory_test

import (
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// A site lost (production and local DR): the installer works with the
// servers left, etcd goes where it can, and snapshots stay in the one
// site left, saying so.
func TestLostCenters(t *testing.T) {
	o := invgen.Default()
	o.Racks = [3]int{2, 2, 2}
	o.EtcdPerCenter = [3]int{2, 2, 3}
	c := invgen.Generate(o)
	c.Spec.Etcd.Members = 5
	c.Spec.Etcd.Snapshots = &inventory.EtcdSnapshots{Every: "1h"}
	c.SetDefaults()
	all := len(c.Hosts())
	if err := c.MarkLost([]string{"dc1", "nowhere"}); err == nil || !strings.Contains(err.Error(), `--lost nowhere`) {
		t.Fatalf("unknown center: %v", err)
	}
	if err := c.MarkLost([]string{"dc1", "dc2"}); err != nil {
		t.Fatal(err)
	}
	if res := c.Validate(nil); !res.OK() {
		t.Fatal(res.Err())
	}
	if got := c.LostCenters(); strings.Join(got, ",") != "dc1,dc2" {
		t.Fatalf("lost centers %v", got)
	}
	left, lost := c.Hosts(), c.LostHosts()
	if len(left)+len(lost) != all || len(c.AllHosts()) != all || len(lost) == 0 {
		t.Fatalf("%d left + %d lost, %d in all", len(left), len(lost), all)
	}
	for _, h := range left {
		if h.Center.Lost {
			t.Errorf("%s of lost %s is among the servers worked with", h.Name, h.Center.Name)
		}
	}
	if _, ok := c.Host(lost[0].Name); ok {
		t.Errorf("a lost server is found by Host")
	}
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := perCenter(p); got != [3]int{0, 0, 3} || p.Etcd.Count != 3 || !p.Etcd.Degraded {
		t.Fatalf("placement with dc1 and dc2 lost: %v, %d members, degraded %v", got, p.Etcd.Count, p.Etcd.Degraded)
	}
	stores, err := c.SnapshotStores(p.Etcd.Members)
	if err != nil {
		t.Fatal(err)
	}
	if len(stores) != 1 || stores[0].Server.Center != "dc3" || !strings.Contains(stores[0].Note, "dc1, dc2 are lost") || len(stores[0].Sources) != 3 {
		t.Fatalf("stores: %+v", stores)
	}
	pl, err := inventory.BuildPlan(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var warned bool
	for _, w := range pl.Warnings {
		warned = warned || strings.Contains(w.Message, "are lost")
	}
	if !warned {
		t.Errorf("the plan does not warn about the lost centers: %+v", pl.Warnings)
	}
}
