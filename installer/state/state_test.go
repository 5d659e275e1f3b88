package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func TestPriorRoundTripAndEtcdRecord(t *testing.T) {
	d, err := Open(t.TempDir(), "lab")
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.Prior()
	if err != nil || p != nil {
		t.Fatalf("first run: prior %v, err %v; want nil, nil", p, err)
	}
	if err := d.SavePrior(&inventory.Prior{PodCIDRs: map[string]string{"a": "198.19.128.0/24"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.RecordEtcd([]inventory.Member{{Name: "a"}, {Name: "b"}}); err != nil {
		t.Fatal(err)
	}
	p, err = d.Prior()
	if err != nil {
		t.Fatal(err)
	}
	if p.PodCIDRs["a"] != "198.19.128.0/24" || len(p.EtcdMembers) != 2 || p.EtcdMembers[1] != "b" {
		t.Fatalf("prior after RecordEtcd: %+v", p)
	}
	st, _ := os.Stat(filepath.Join(d.Path, "prior.json"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("prior.json mode %v", st.Mode().Perm())
	}
}

func TestBadNamesAndCorruptPrior(t *testing.T) {
	if _, err := Open(t.TempDir(), "../x"); err == nil {
		t.Fatal("a cluster name with a path separator was accepted")
	}
	d, _ := Open(t.TempDir(), "c")
	if err := os.WriteFile(filepath.Join(d.Path, "prior.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Prior(); err == nil {
		t.Fatal("corrupt prior.json was accepted")
	}
}
