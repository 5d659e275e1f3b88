package inventory

import (
	"fmt"
	"slices"
	"strings"
)

// SnapshotStore is an etcd member that keeps the cluster's scheduled
// snapshots, and the members it takes them from.
type SnapshotStore struct {
	// Server is the member that takes and keeps the snapshots.
	Server Member `json:"server"`
	// Sources are the members of the other site, in the order to try:
	// production first, then local DR, then remote DR, by name within a
	// center.
	Sources []Member `json:"sources"`
	// Note says why the rule could not hold (lost centers leave no
	// member in the other site: the snapshots stay in this one).
	Note string `json:"note,omitempty"`
}

// SnapshotPlan is the snapshot schedule as a plan shows it.
type SnapshotPlan struct {
	Every  string          `json:"every"`
	Keep   int             `json:"keep"`
	Stores []SnapshotStore `json:"stores"`
}

// SnapshotStores applies the placement rule of scheduled snapshots to
// the etcd members: in every center that has members, the first member
// by name keeps snapshots, and takes them only from members of the
// other site. A snapshot taken in the local site (production, local DR)
// is therefore kept in the remote-DR center, and one taken in the remote
// site in the local site: losing a whole site always leaves a copy, and
// every center holds its own.
//
// A center whose site has no member in another site gets no store: the
// error names it (validation refuses a one-site inventory earlier).
func (c *Cluster) SnapshotStores(members []Member) ([]SnapshotStore, error) {
	rank := func(center string) int {
		if ce := c.Center(center); ce != nil {
			switch ce.Role {
			case RoleProduction:
				return 0
			case RoleLocalDR:
				return 1
			case RoleRemoteDR:
				return 2
			}
		}
		return 3
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b Member) int {
		if d := rank(a.Center) - rank(b.Center); d != 0 {
			return d
		}
		if d := strings.Compare(a.Center, b.Center); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	var out []SnapshotStore
	seen := map[string]bool{}
	for _, m := range sorted {
		if seen[m.Center] {
			continue
		}
		seen[m.Center] = true
		st := SnapshotStore{Server: m}
		for _, o := range sorted {
			if o.Site != m.Site {
				st.Sources = append(st.Sources, o)
			}
		}
		if len(st.Sources) == 0 && len(c.LostCenters()) > 0 {
			for _, o := range sorted {
				if o.Name != m.Name {
					st.Sources = append(st.Sources, o)
				}
			}
			st.Sources = append(st.Sources, m)
			st.Note = fmt.Sprintf("centers %s are lost: no etcd member is left in another site, so the snapshots taken here stay in site %s until they are back",
				strings.Join(c.LostCenters(), ", "), m.Site)
		}
		if len(st.Sources) == 0 {
			return nil, fmt.Errorf("spec.etcd.snapshots: center %s (site %s) has no etcd member in another site to take snapshots from: a snapshot must not stay only in the site it came from", m.Center, m.Site)
		}
		out = append(out, st)
	}
	return out, nil
}
