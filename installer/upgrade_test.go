package installer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/installer/upgrade"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// upgradeEngine is an engine over the lab inventory with a state
// directory; no server is contacted by the tests that use it.
func upgradeEngine(t *testing.T) (*Engine, *state.Dir) {
	t.Helper()
	c, lines, err := inventory.Load("../examples/inventory/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return e, st
}

// TestUpgradeRecordInTheStateDirectory: the record is written atomically
// as DIR/<cluster>/upgrade.json (0600), read back, refused when damaged
// (naming the file) and removed at the end.
func TestUpgradeRecordInTheStateDirectory(t *testing.T) {
	e, st := upgradeEngine(t)
	if rec, err := e.readUpgradeRecord(); rec != nil || err != nil {
		t.Fatalf("no record yet: %v, %v", rec, err)
	}
	plan := &upgrade.Plan{Cluster: "lab", Kubernetes: "v1.37.2", Etcd: "v3.6.16", MaxUnavailablePerRack: 1,
		Steps: []upgrade.Step{{ID: "etcd/dc1-r01-s01/v3.6.16", Number: 1, Batch: 1, Component: upgrade.CompEtcd,
			Action: upgrade.ActionLeader, Host: "dc1-r01-s01", From: "v3.5.35", To: "v3.6.16", Target: "v3.6.16"}}}
	rec := upgrade.NewRecord(plan, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	b, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.saveUpgradeRecord(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(st.Path, UpgradeFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || e.upgradeRecordPath() != path {
		t.Fatalf("record file %s: %v, %v (engine says %s)", path, fi, err, e.upgradeRecordPath())
	}
	if inProgress, err := e.UpgradeInProgress(); err != nil || inProgress == nil || inProgress.Digest != plan.Digest() {
		t.Fatalf("UpgradeInProgress: %+v, %v", inProgress, err)
	}
	back, err := e.readUpgradeRecord()
	if err != nil || back.Digest != plan.Digest() || len(back.Plan.Steps) != 1 {
		t.Fatalf("read back: %+v, %v", back, err)
	}
	if err := os.WriteFile(path, []byte(`{"format":1,"digest":"x","plan":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.readUpgradeRecord(); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move it away") {
		t.Errorf("damaged record: %v", err)
	}
	for range 2 {
		if err := e.removeUpgradeRecord(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record after remove: %v", err)
	}
}

// TestUpgradeTargets: the inventory's releases by default; another target
// is a warning that names the inventory field the next apply would
// follow; a malformed one is refused.
func TestUpgradeTargets(t *testing.T) {
	e, _ := upgradeEngine(t)
	o, warns, err := e.upgradeTargets(UpgradeOptions{})
	if err != nil || o.Kubernetes.String() != e.Cluster().Spec.Kubernetes.Version || o.Etcd.String() != e.Cluster().Spec.Etcd.Version || len(warns) != 0 {
		t.Fatalf("defaults: %+v, %q, %v", o, warns, err)
	}
	o, warns, err = e.upgradeTargets(UpgradeOptions{Kubernetes: "v1.36.3", Etcd: "v3.5.35", MaxUnavailablePerRack: 3, AllowPatchDowngrade: true})
	if err != nil || o.Kubernetes.String() != "v1.36.3" || o.MaxUnavailablePerRack != 3 || !o.AllowPatchDowngrade || len(warns) != 2 ||
		!strings.Contains(warns[0], "is not the inventory's spec.kubernetes.version "+e.Cluster().Spec.Kubernetes.Version) {
		t.Fatalf("explicit targets: %+v, %q, %v", o, warns, err)
	}
	if _, _, err := e.upgradeTargets(UpgradeOptions{Etcd: "3.6"}); err == nil || !strings.Contains(err.Error(), "target etcd release") {
		t.Errorf("malformed target: %v", err)
	}
}

// TestCheckRecordedPlan: a recorded upgrade to other releases, or over a
// server that left its role or the inventory, is refused with the way out.
func TestCheckRecordedPlan(t *testing.T) {
	e, _ := upgradeEngine(t)
	opts := upgrade.Options{Kubernetes: inventory.MustVersion("v1.37.2"), Etcd: inventory.MustVersion("v3.6.16")}
	step := func(comp, host string) upgrade.Step {
		return upgrade.Step{ID: comp + "/" + host, Component: comp, Host: host, From: "v1.36.3", To: "v1.37.2", Target: "v1.37.2"}
	}
	rec := func(kube string, steps ...upgrade.Step) *upgrade.Record {
		return upgrade.NewRecord(&upgrade.Plan{Cluster: "lab", Kubernetes: kube, Etcd: "v3.6.16", Steps: steps}, time.Now())
	}
	if err := e.checkRecordedPlan(rec("v1.37.2", step(upgrade.CompControlPlane, "dc1-r01-s01"), step(upgrade.CompNode, "dc1-r01-s02")), opts); err != nil {
		t.Errorf("a fitting record: %v", err)
	}
	for _, tc := range []struct {
		rec  *upgrade.Record
		want string
	}{
		{rec("v1.36.3"), "an upgrade to Kubernetes v1.36.3 and etcd v3.6.16 is in progress"},
		{rec("v1.36.3"), "resume it with --to v1.36.3 --etcd-to v3.6.16, or plan anew from what is observed with --replan"},
		{rec("v1.37.2", step(upgrade.CompNode, "gone-s01")), "gone-s01 is no longer in the inventory"},
		{rec("v1.37.2", step(upgrade.CompEtcd, "dc1-r01-s02")), "dc1-r01-s02 is no longer an etcd member"},
		{rec("v1.37.2", step(upgrade.CompControlPlane, "dc3-r01-s02")), "dc3-r01-s02 is no longer a control-plane server: plan anew with --replan"},
	} {
		if err := e.checkRecordedPlan(tc.rec, opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
	}
}

// TestEngineAtRelease: the view names other releases; the engine itself
// is left as it was.
func TestEngineAtRelease(t *testing.T) {
	e, _ := upgradeEngine(t)
	kube, etcdV := e.Cluster().Spec.Kubernetes.Version, e.Cluster().Spec.Etcd.Version
	v := e.at("v1.36.3", "v3.5.35")
	defer v.Close()
	if got := v.Cluster().Spec; got.Kubernetes.Version != "v1.36.3" || got.Etcd.Version != "v3.5.35" {
		t.Errorf("view: %s, %s", got.Kubernetes.Version, got.Etcd.Version)
	}
	if got := e.Cluster().Spec; got.Kubernetes.Version != kube || got.Etcd.Version != etcdV {
		t.Errorf("the engine changed: %s, %s", got.Kubernetes.Version, got.Etcd.Version)
	}
	if v.Placement() != e.Placement() || v.cfg.Store != e.cfg.Store || len(v.Cluster().Hosts()) != len(e.Cluster().Hosts()) {
		t.Error("the view does not share the engine's placement, store and servers")
	}
}

// TestPlanUpgradeNeedsAnAppliedCluster: without the PKI an apply created
// there is nothing to observe: ErrNoPKI, before any server is asked.
func TestPlanUpgradeNeedsAnAppliedCluster(t *testing.T) {
	e, _ := upgradeEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.PlanUpgrade(ctx, UpgradeOptions{})
	if !errors.Is(err, ErrNoPKI) {
		t.Errorf("PlanUpgrade without PKI: %v, want ErrNoPKI", err)
	}
	if _, err := e.PlanUpgrade(ctx, UpgradeOptions{MaxUnavailablePerRack: -1}); err == nil || !strings.Contains(err.Error(), "use 1 or more") {
		t.Errorf("negative max unavailable: %v", err)
	}
}

func TestHostErrorsOf(t *testing.T) {
	a, b := errors.New("a broke"), errors.New("b broke")
	err := fmt.Errorf("phase %q: %w", "Install kubelet", errors.Join(&phase.HostError{Host: "a", Err: a}, nil, &phase.HostError{Host: "b", Err: b}))
	got := hostErrorsOf(err)
	if len(got) != 2 || !errors.Is(got["a"], a) || !errors.Is(got["b"], b) {
		t.Errorf("hostErrorsOf = %v", got)
	}
	if got := hostErrorsOf(errors.New("no host")); len(got) != 0 {
		t.Errorf("an error without a host: %v", got)
	}
}
