package inventory_test

import (
	"fmt"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The placement rule of scheduled snapshots, over the member splits the
// placement makes: one store per center with members; every store takes
// snapshots only from the other site, production first; so a snapshot
// is never only in the site it came from, and losing either site
// leaves a store holding snapshots of it.
func TestSnapshotStoresNeverInTheSiteTheyCameFrom(t *testing.T) {
	for _, split := range [][3]int{{1, 1, 1}, {2, 2, 1}, {3, 3, 1}, {2, 1, 2}} {
		t.Run(fmt.Sprint(split), func(t *testing.T) {
			o := invgen.Default()
			o.Racks = [3]int{3, 3, 3}
			o.EtcdPerCenter = split
			c := invgen.Generate(o)
			c.Spec.Etcd.Snapshots = &inventory.EtcdSnapshots{Every: "1h"}
			c.SetDefaults()
			if res := c.Validate(nil); !res.OK() {
				t.Fatal(res.Err())
			}
			p, err := inventory.Place(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			stores, err := c.SnapshotStores(p.Etcd.Members)
			if err != nil {
				t.Fatal(err)
			}
			if len(stores) != 3 {
				t.Fatalf("%d stores, want one per center: %+v", len(stores), stores)
			}
			sitesWithStore := map[string]bool{}
			for _, st := range stores {
				if !p.IsEtcdMember(st.Server.Name) {
					t.Errorf("store %s is not an etcd member", st.Server.Name)
				}
				sitesWithStore[st.Server.Site] = true
				if len(st.Sources) == 0 {
					t.Errorf("store %s has no source", st.Server.Name)
				}
				for _, src := range st.Sources {
					if src.Site == st.Server.Site {
						t.Errorf("store %s (site %s) takes snapshots from %s in its own site", st.Server.Name, st.Server.Site, src.Name)
					}
				}
				// The remote site's store tries production first.
				if c.Center(st.Server.Center).Role == inventory.RoleRemoteDR && c.Center(st.Sources[0].Center).Role != inventory.RoleProduction {
					t.Errorf("store %s tries %s (%s) first, want a production member", st.Server.Name, st.Sources[0].Name, st.Sources[0].Center)
				}
			}
			if len(sitesWithStore) != 2 {
				t.Errorf("stores in sites %v, want both", sitesWithStore)
			}
		})
	}
}

// A one-site member set has nowhere to keep a snapshot: the error names
// the center and why.
func TestSnapshotStoresOneSite(t *testing.T) {
	c := invgen.Generate(invgen.Default())
	c.SetDefaults()
	members := []inventory.Member{{Name: "a", Site: "local", Center: "dc1"}, {Name: "b", Site: "local", Center: "dc2"}}
	_, err := c.SnapshotStores(members)
	if err == nil || err.Error() != "spec.etcd.snapshots: center dc1 (site local) has no etcd member in another site to take snapshots from: a snapshot must not stay only in the site it came from" {
		t.Fatalf("err = %v", err)
	}
}
