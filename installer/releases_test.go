package installer

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// An apply never changes the releases a cluster runs: with the recorded
// releases different from the inventory's, the runs that would install
// them are refused naming both and tricenter upgrade; runs that do not
// touch that component go on; the releases a run installs are recorded.
func TestApplyRefusesAnotherRelease(t *testing.T) {
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Kubernetes.Version, c.Spec.Etcd.Version = "v1.37.2", "v3.6.16"
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	all, err := Select(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.checkReleases(all); err != nil {
		t.Fatalf("no recorded releases (first install): %v", err)
	}
	e.prior = &inventory.Prior{Kubernetes: "v1.36.3", Etcd: "v3.6.16"}
	err = e.checkReleases(all)
	if err == nil || !strings.Contains(err.Error(), "runs Kubernetes v1.36.3 and spec.kubernetes.version is v1.37.2") ||
		!strings.Contains(err.Error(), "tricenter upgrade") {
		t.Fatalf("a Kubernetes release change: %v", err)
	}
	etcdOnly, err := Select([]string{"etcd"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.checkReleases(etcdOnly); err != nil {
		t.Fatalf("an etcd-only apply does not touch Kubernetes: %v", err)
	}
	e.prior = &inventory.Prior{Kubernetes: "v1.37.2", Etcd: "v3.5.35"}
	if err := e.checkReleases(etcdOnly); err == nil || !strings.Contains(err.Error(), "runs etcd v3.5.35 and spec.etcd.version is v3.6.16") {
		t.Fatalf("an etcd release change: %v", err)
	}
	kube, etcdRelease := e.installedReleases(etcdOnly)
	if kube != "" || etcdRelease != "v3.6.16" {
		t.Fatalf("an etcd-only run installs %q / %q", kube, etcdRelease)
	}
	if err := e.record(false, kube, etcdRelease); err != nil {
		t.Fatal(err)
	}
	if p := e.Prior(); p.Kubernetes != "v1.37.2" || p.Etcd != "v3.6.16" {
		t.Fatalf("recorded %+v: the run's etcd release and the Kubernetes release kept", p)
	}
	if err := e.checkReleases(all); err != nil {
		t.Fatalf("after the record: %v", err)
	}
}

func TestCheckRecordedReleases(t *testing.T) {
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(t.TempDir(), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ kube, etcd, recKube, recEtcd, err string }{
		{"v1.37.2", "v3.6.16", "", "", ""},
		{"v1.37.2", "v3.6.16", "v1.36.3", "v3.5.35", ""},
		{"v1.37.2", "v3.6.16", "v1.37.0", "v3.6.16", ""},
		{"v1.37.2", "v3.6.16", "v1.35.4", "v3.6.16", "Kubernetes v1.35.4 → v1.37.2 skips a minor: upgrade to v1.36.x first"},
		{"v1.36.3", "v3.6.16", "v1.37.2", "v3.6.16", "minor downgrade"},
		{"v1.37.2", "v3.5.35", "v1.37.2", "v3.6.16", "etcd v3.6.16 → v3.5.35 is a minor downgrade"},
	} {
		e.cfg.Cluster.Spec.Kubernetes.Version, e.cfg.Cluster.Spec.Etcd.Version = tc.kube, tc.etcd
		e.prior = &inventory.Prior{Kubernetes: tc.recKube, Etcd: tc.recEtcd}
		err := e.CheckRecordedReleases()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s/%s recorded, %s/%s wanted: %v, want %q", tc.recKube, tc.recEtcd, tc.kube, tc.etcd, err, tc.err)
		}
		need, err := e.UpgradeNeeded()
		if want := (tc.recKube != "" && tc.recKube != tc.kube) || (tc.recEtcd != "" && tc.recEtcd != tc.etcd); need != want || err != nil {
			t.Errorf("%+v: UpgradeNeeded %v, %v", tc, need, err)
		}
	}
}
