package acceptance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcdsnap"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// labSnapshots is the lab's snapshot schedule: often enough that the
// timer runs several times during TestKubernetes, and prunes.
var labSnapshots = inventory.EtcdSnapshots{Every: "1m", Keep: 3}

// checkSnapshotSchedule: the apply scheduled snapshots on one etcd member
// per center, each holding snapshots taken from the other site only; the
// timer (not the apply) takes a new one after a ConfigMap is written; that
// snapshot, fetched from the remote-DR store and opened with the state's
// key, holds the ConfigMap, while its sealed file on the server does not
// contain it; members that are no store have no timer.
func checkSnapshotSchedule(t *testing.T, ctx context.Context, e *installer.Engine) {
	t.Helper()
	c := e.Cluster()
	siteOf := func(center string) string { return c.Center(center).Site }
	stores, err := e.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stores) != len(c.Spec.Centers) {
		t.Fatalf("%d stores, want one per center: %+v", len(stores), stores)
	}
	var remote installer.SnapshotStoreStatus
	for _, s := range stores {
		if s.Error != "" || s.Newest() == nil {
			t.Fatalf("store %s (%s): error %q, %d snapshots", s.Server, s.Center, s.Error, len(s.Snapshots))
		}
		for _, x := range s.Snapshots {
			if x.Check != "ok" {
				t.Errorf("%s on %s: %s", x.ID, s.Server, x.Check)
			}
			if siteOf(x.MemberCenter) == siteOf(s.Center) {
				t.Errorf("%s on %s (%s) was taken from %s in the same site", x.ID, s.Server, s.Center, x.Member)
			}
		}
		if c.Center(s.Center).Role == inventory.RoleRemoteDR {
			remote = s
		}
		t.Logf("store %s (%s): %d snapshots, newest %s from %s, revision %d, %d keys, %d bytes sealed",
			s.Server, s.Center, len(s.Snapshots), s.Newest().ID, s.Newest().Member, s.Newest().Revision, s.Newest().Keys, s.Newest().SealedBytes)
	}

	// A marker written now is in the timer's next snapshot.
	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	marker := "snapshot-marker-" + hex.EncodeToString(b)
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "snapshot-marker"}, Data: map[string]string{"marker": marker}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cs.CoreV1().ConfigMaps("default").Delete(context.Background(), cm.Name, metav1.DeleteOptions{})
	}()
	written := time.Now()
	var fresh *installer.StoredSnapshot
	if err := pollUntil(ctx, 3*time.Minute, func() error {
		stores, err := e.ListSnapshots(ctx)
		if err != nil {
			return err
		}
		for _, s := range stores {
			if s.Server == remote.Server && s.Newest() != nil && s.Newest().TakenAt.After(written) {
				fresh = s.Newest()
				return nil
			}
		}
		return fmt.Errorf("no snapshot on %s taken after %s", remote.Server, written.UTC().Format(time.RFC3339))
	}); err != nil {
		t.Fatalf("the timer took no new snapshot (every %s): %v", labSnapshots.Every, err)
	}
	t.Logf("the timer's snapshot %s came %v after the write", fresh.ID, fresh.TakenAt.Sub(written).Round(time.Second))
	var plain bytes.Buffer
	rec, err := e.OpenSnapshot(ctx, remote.Server, fresh.ID, &plain)
	if err != nil {
		t.Fatal(err)
	}
	if int64(plain.Len()) != rec.PlainBytes || !bytes.Contains(plain.Bytes(), []byte(marker)) {
		t.Fatalf("opened snapshot %s: %d bytes (record %d), marker present %v", rec.ID, plain.Len(), rec.PlainBytes, bytes.Contains(plain.Bytes(), []byte(marker)))
	}

	// A restore rehearsal of that store's newest snapshot, here, matches
	// its record, and status shows it.
	vs, err := e.VerifySnapshots(ctx, installer.VerifyOptions{Servers: []string{remote.Server}})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || !vs[0].OK() || vs[0].Snapshot.Revision < fresh.Revision {
		t.Fatalf("snapshot verify: %+v", vs)
	}
	t.Logf("rehearsal of %s: revision %d (recorded %d), %d keys, etcd %s, %v", vs[0].Snapshot.ID, vs[0].Result.Revision,
		vs[0].Snapshot.Revision, vs[0].Result.Keys, vs[0].Result.EtcdVersion, vs[0].Result.Took)
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Snapshots {
		if c.Server == remote.Server && (c.Rehearsed == nil || c.Rehearsed.ID != vs[0].Snapshot.ID) {
			t.Errorf("status of %s after the rehearsal: %+v", c.Server, c)
		}
	}

	// At rest the marker is nowhere in the store's files; the members that
	// are no store have no timer.
	m := e.Manager(true)
	defer m.Close()
	var members []string
	for _, mb := range e.Placement().Etcd.Members {
		members = append(members, mb.Name)
	}
	hosts, err := m.Hosts(inventory.Selector{Servers: members})
	if err != nil {
		t.Fatal(err)
	}
	var storeNames []string
	for _, s := range stores {
		storeNames = append(storeNames, s.Server)
	}
	for _, h := range hosts {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		timer, _ := h.Query(qctx, "systemctl is-active "+etcdsnap.TimerName)
		found, _ := h.Query(qctx, "grep -rlF "+marker+" "+etcdsnap.Dir+" 2>/dev/null || true")
		cancel()
		isStore := slices.Contains(storeNames, h.Name)
		if got := strings.TrimSpace(timer); (got == "active") != isStore {
			t.Errorf("%s: timer %s (store: %v)", h.Name, got, isStore)
		}
		if strings.TrimSpace(found) != "" {
			t.Errorf("%s: the marker is readable at rest in %s", h.Name, found)
		}
	}
}

// checkSnapshotsPruned: after the timer ran more often than keep, every
// store holds exactly keep snapshots.
func checkSnapshotsPruned(t *testing.T, ctx context.Context, e *installer.Engine) {
	t.Helper()
	stores, err := e.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		if s.Error != "" || len(s.Snapshots) != labSnapshots.Keep {
			var ids []string
			for _, x := range s.Snapshots {
				ids = append(ids, x.ID)
			}
			t.Errorf("store %s: error %q, snapshots %v, want %d", s.Server, s.Error, ids, labSnapshots.Keep)
		}
	}
}
