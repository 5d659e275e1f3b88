package installer

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/backup"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The snapshot rule of status: per store the newest snapshot whose
// sealed file matches its record and its age; a store not read, holding
// none, holding a damaged file, or whose newest is older than two
// intervals is a problem; the newest successful rehearsal is shown, and a
// rehearsal that differs is a problem.
func TestJudgeSnapshots(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	snap := func(id string, age time.Duration, check string, r *backup.Rehearsal) StoredSnapshot {
		return StoredSnapshot{Meta: backup.Meta{ID: id, TakenAt: now.Add(-age), Revision: 100, Keys: 10}, Check: check, Rehearsal: r}
	}
	rehearsed := &backup.Rehearsal{ID: "b", At: now.Add(-2 * time.Hour), Revision: 101, Keys: 10, OK: true}
	stores := []SnapshotStoreStatus{
		{Center: "dc1", Server: "s1", Snapshots: []StoredSnapshot{
			snap("a", time.Hour, "sealed file differs from its record: size", nil),
			snap("b", 5*time.Hour, "ok", rehearsed),
		}},
		{Center: "dc2", Server: "s2", Snapshots: []StoredSnapshot{snap("c", 10*time.Minute, "ok", &backup.Rehearsal{ID: "c", OK: false, Detail: "9 keys"})}},
		{Center: "dc3", Server: "s3", Error: "no route to host"},
		{Center: "dc4", Server: "s4"},
	}
	cs, problems := judgeSnapshots(stores, inventory.EtcdSnapshots{Every: "2h"}, now)
	if len(cs) != 4 || cs[0].Newest == nil || cs[0].Newest.ID != "b" || cs[0].Age != 5*time.Hour || cs[0].Rehearsed == nil ||
		!strings.HasPrefix(cs[0].Restored, "rehearsed 2h0m0s ago") {
		t.Fatalf("dc1: %+v", cs[0])
	}
	if cs[1].Newest == nil || cs[1].Newest.ID != "c" || cs[1].Rehearsed != nil || !strings.HasPrefix(cs[1].Restored, "not verified") {
		t.Fatalf("dc2: %+v", cs[1])
	}
	want := []string{
		"etcd snapshot a on s1: sealed file differs from its record: size",
		"etcd snapshots in dc1 (s1): the newest is 5h0m0s old, more than two intervals (every 2h): look at journalctl -u tricenter-snapshot.service there",
		"etcd snapshot c on s2: its restore rehearsal differs from its record: 9 keys",
		"etcd snapshots in dc3 (s3): not verified (no route to host)",
		"etcd snapshots in dc4 (s4): none",
	}
	if !slices.Equal(problems, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// pickSnapshot: the newest good snapshot of a store, or the one named;
// a damaged one, an unread store and an unknown server are errors.
func TestPickSnapshot(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	stores := []SnapshotStoreStatus{
		{Center: "dc1", Server: "s1", Snapshots: []StoredSnapshot{
			{Meta: backup.Meta{ID: "a", TakenAt: now}, Check: "sealed file differs from its record: size"},
			{Meta: backup.Meta{ID: "b", TakenAt: now.Add(-time.Hour)}, Check: "ok"},
		}},
		{Center: "dc3", Server: "s3", Error: "no route to host"},
	}
	for _, tc := range []struct{ server, id, want, err string }{
		{"s1", "", "b", ""},
		{"s1", "b", "b", ""},
		{"s1", "a", "", "snapshot a on s1: sealed file differs"},
		{"s1", "zz", "", "s1 holds no snapshot zz"},
		{"s3", "", "", "listing the snapshots on s3: no route to host"},
		{"s9", "", "", "s9 keeps no snapshots"},
	} {
		got, err := pickSnapshot(stores, tc.server, tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s/%q: err %v, want %q", tc.server, tc.id, err, tc.err)
			}
			continue
		}
		if err != nil || got.ID != tc.want {
			t.Errorf("%s/%q: %s, %v; want %s", tc.server, tc.id, got.ID, err, tc.want)
		}
	}
}
