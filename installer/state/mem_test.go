package state

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var members = []pki.EtcdMember{{Name: "m1", Address: "198.19.41.10"}, {Name: "m2", Address: "198.19.42.10"}}

// TestMemReadsAndWritesWhatDirDoes: a state directory's snapshot loaded
// into Mem gives the same PKI and allocations, converges without
// reissuing, and Mem's snapshot restored into a directory reads the same
// there: the two backends hold one format.
func TestMemReadsAndWritesWhatDirDoes(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PKI().EnsureEtcd(members[:1]); err != nil {
		t.Fatal(err)
	}
	if err := d.SavePrior(&inventory.Prior{EtcdMembers: []string{"m1"}, PodCIDRs: map[string]string{"w1": "198.19.128.0/24"}}); err != nil {
		t.Fatal(err)
	}
	// What an imported CLI directory may hold besides: kept as it is.
	if err := os.WriteFile(filepath.Join(d.Path, "drill.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := Snapshot(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMem(snap, "/var/cache/tricenter")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Snapshot(); !reflect.DeepEqual(got, snap) {
		t.Fatalf("Mem's snapshot of a directory snapshot differs:\n got %v\nwant %v", keys(got), keys(snap))
	}
	if m.ArtifactCache() != "/var/cache/tricenter" {
		t.Errorf("ArtifactCache = %q", m.ArtifactCache())
	}
	p, err := m.Prior()
	if err != nil || p == nil || p.PodCIDRs["w1"] != "198.19.128.0/24" {
		t.Fatalf("Prior = %+v, %v", p, err)
	}
	again, err := m.PKI().EnsureEtcd(members[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changed) != 0 {
		t.Fatalf("the memory store reissued %v of the directory's certificates", again.Changed)
	}
	grown, err := m.PKI().EnsureEtcd(members)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(grown.Changed, []string{"etcd-peer/peer-m2", "etcd/server-m2"}) {
		t.Fatalf("adding m2 issued %v", grown.Changed)
	}
	if err := m.SavePrior(&inventory.Prior{EtcdMembers: []string{"m1", "m2"}}); err != nil {
		t.Fatal(err)
	}
	out := m.Snapshot()
	if out["drill.json"] != "{}\n" {
		t.Errorf("a file outside pki/ was not kept: %q", out["drill.json"])
	}
	for _, name := range []string{"pki/etcd-peer/peer-m2.crt", "pki/etcd-peer/peer-m2.key"} {
		if out[name] == "" {
			t.Errorf("snapshot lacks %s", name)
		}
	}
	// Back into a directory: the CLI reads what the memory store wrote.
	d2 := &Dir{Path: filepath.Join(t.TempDir(), "lab")}
	if err := Restore(d2.Path, out); err != nil {
		t.Fatal(err)
	}
	back, err := d2.PKI().EnsureEtcd(members)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Changed) != 0 {
		t.Fatalf("the directory reissued %v of what the memory store wrote", back.Changed)
	}
	if p, err := d2.Prior(); err != nil || !slices.Equal(p.EtcdMembers, []string{"m1", "m2"}) {
		t.Fatalf("prior from the memory store: %+v, %v", p, err)
	}
	if b, err := os.ReadFile(filepath.Join(d2.Path, PriorFile)); err != nil || string(b) != out[PriorFile] {
		t.Fatalf("Mem and Dir write prior.json differently: %q vs %q (%v)", out[PriorFile], b, err)
	}
}

// TestMemWritesNoFile: a memory state used for everything an engine run
// asks of its store (PKI of every component, allocations) creates no file
// under HOME or TMPDIR, and hands its keys out only through Snapshot.
func TestMemWritesNoFile(t *testing.T) {
	home, tmp := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("TMPDIR", tmp)
	m, err := NewMem(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := m.Prior(); err != nil || p != nil {
		t.Fatalf("empty state: prior %+v, %v", p, err)
	}
	s := m.PKI()
	if _, err := s.EnsureEtcd(members); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureBreakGlass(); err != nil {
		t.Fatal(err)
	}
	if err := m.SavePrior(&inventory.Prior{EtcdMembers: []string{"m1", "m2"}}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{home, tmp} {
		if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
			t.Fatalf("%s holds %d entries after a memory state was used (%v)", dir, len(entries), err)
		}
	}
	snap := m.Snapshot()
	if snap["pki/etcd/ca.key"] == "" || snap["pki/kubernetes/admin-break-glass.key"] == "" || snap[PriorFile] == "" {
		t.Fatalf("snapshot lacks what was made: %v", slices.Sorted(maps.Keys(snap)))
	}
}

func TestMemRefusesUnsafeNames(t *testing.T) {
	for _, name := range []string{"../x", "/abs", "artifacts/etcd", "snapshots/s.db", "pki/../../x"} {
		if _, err := NewMem(map[string]string{name: "x"}, ""); err == nil {
			t.Errorf("NewMem accepted %q", name)
		}
	}
}

func TestMemCorruptPrior(t *testing.T) {
	m, err := NewMem(map[string]string{PriorFile: "{"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Prior(); err == nil {
		t.Fatal("a corrupt prior.json was accepted")
	}
}

// TestMemIncompleteCA: half an authority in a memory state is the same
// refusal as in a directory.
func TestMemIncompleteCA(t *testing.T) {
	m, err := NewMem(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PKI().EnsureEtcd(members[:1]); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()
	delete(snap, "pki/etcd/ca.key")
	half, err := NewMem(snap, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = half.PKI().EnsureEtcd(members[:1])
	if !errors.Is(err, pki.ErrIncompleteCA) {
		t.Fatalf("EnsureEtcd without ca.key: %v, want ErrIncompleteCA", err)
	}
}
