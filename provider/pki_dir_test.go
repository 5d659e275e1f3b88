package provider

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// TestClusterApplyPKIDir: tricenter_cluster's apply with pki_dir (here
// stopping after the certificates, as TestClusterApplyKeepsPartialProgress
// does) keeps no private key and no certificate in the state and leaves
// the deprecated kubeconfig null; the next apply continues from the
// directory (same CA); the plan's engine (ModifyPlan's openEngine) over a
// state whose directory is gone is an error naming it; unsetting pki_dir
// brings the PKI back into the state.
func TestClusterApplyPKIDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	r := &clusterResource{}
	m := clusterResourceModel{Path: types.StringNull(), YAML: types.StringValue(labInventory(t)),
		Components: types.ListNull(types.StringType), NodeServers: types.SetNull(types.StringType), PKIDir: types.StringValue(dir)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var diags diag.Diagnostics
	if !r.apply(ctx, &m, types.StringNull(), &diags) {
		t.Fatalf("apply reports nothing to save: %q", summary(diags))
	}
	st := m.State.ValueString()
	if strings.Contains(st, "PRIVATE KEY") || strings.Contains(st, "CERTIFICATE") || !strings.Contains(st, pkiRefFile) {
		t.Fatalf("the state holds PKI content or no reference: %.300s", st)
	}
	if !m.Kubeconfig.IsNull() {
		t.Error("kubeconfig is set with pki_dir: it would put the admin key in the state")
	}
	ca, err := os.ReadFile(filepath.Join(dir, "kubernetes", "ca.crt"))
	if err != nil || m.CACertificate.ValueString() != string(ca) {
		t.Fatalf("the CA is not in pki_dir (%v) or ca_certificate differs", err)
	}
	etcdKey, err := os.ReadFile(filepath.Join(dir, "etcd", "ca.key"))
	if err != nil || !strings.Contains(string(etcdKey), "PRIVATE KEY") {
		t.Fatalf("etcd CA key in pki_dir: %v", err)
	}

	// An apply that bound the admin group leaves an admin certificate
	// (here issued with a fake verification: no API server).
	bound, d := openEngine(ctx, nil, m.engineRequest(m.State))
	if d.HasError() {
		t.Fatalf("openEngine over the pki_dir state: %s", summary(d))
	}
	if _, _, err := bound.store.PKI().SwitchAdmin(func(*pki.KeyPair) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if m.State, err = bound.stateValue(nil); err != nil {
		t.Fatal(err)
	}
	bound.Close()

	m2 := m
	var diags2 diag.Diagnostics
	if !r.apply(ctx, &m2, m.State, &diags2) {
		t.Fatalf("second apply reports nothing to save: %q", summary(diags2))
	}
	if !m2.Kubeconfig.IsNull() || strings.Contains(m2.State.ValueString(), "PRIVATE KEY") {
		t.Fatal("with pki_dir the admin kubeconfig (its private key) reached the state")
	}
	if _, err := os.Stat(filepath.Join(dir, "kubernetes", pki.Admin+".key")); err != nil {
		t.Fatalf("the admin key is not in pki_dir: %v", err)
	}
	if m2.CACertificate.ValueString() != string(ca) {
		t.Fatal("the second apply did not continue from pki_dir: the CA changed")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etcd", "ca.key")); string(b) != string(etcdKey) {
		t.Fatal("the second apply rewrote the etcd CA key")
	}

	// The node and kubeconfig resources follow the directory the state
	// names.
	run, d := openEngine(ctx, nil, engineRequest{Inventory: m.input(), States: []stateInput{{Value: m2.State, What: "cluster state"}}})
	if d.HasError() {
		t.Fatalf("openEngine over a pki_dir state: %s", summary(d))
	}
	if run.pkiDir != dir || run.files()["pki/kubernetes/ca.crt"] != string(ca) {
		t.Errorf("engine over the cluster state: pki dir %q, CA read back %v", run.pkiDir, run.files()["pki/kubernetes/ca.crt"] != "")
	}
	run.Close()

	// Unsetting pki_dir brings the PKI back into the state.
	m3 := m2
	m3.PKIDir = types.StringNull()
	var diags3 diag.Diagnostics
	if !r.apply(ctx, &m3, m2.State, &diags3) {
		t.Fatalf("apply without pki_dir: %q", summary(diags3))
	}
	files, err := decodeFiles(m3.State)
	if err != nil || files["pki/etcd/ca.key"] != string(etcdKey) || files[pkiRefFile] != "" {
		t.Fatalf("without pki_dir the state does not hold the PKI again (%v): %v", err, keysOf(files))
	}
	if m3.Kubeconfig.IsNull() {
		t.Error("without pki_dir the deprecated kubeconfig attribute is null")
	}

	// The directory is gone: the plan is an error naming it.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_, d = openEngine(ctx, nil, m2.engineRequest(m2.State))
	if !d.HasError() || !strings.Contains(summary(d), dir) || !strings.Contains(summary(d), "Restore the directory") {
		t.Fatalf("plan over a missing pki_dir: %q", summary(d))
	}
	var rd diag.Diagnostics
	r.read(ctx, &m2, &rd)
	if !rd.HasError() || !strings.Contains(summary(rd), dir) {
		t.Fatalf("refresh over a missing pki_dir: %q, want an error naming it", summary(rd))
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("planning over a missing pki_dir re-created it")
	}
}

// TestNodeFollowsClusterPKIDir: a tricenter_node's engine over a cluster
// state kept in pki_dir reads the cluster's PKI from that directory and
// writes the node's own new keys under it (nodes/<server>: never over a
// file the cluster's fingerprints cover), its state holding only their
// fingerprints; the node's state reads back over the cluster's, and the
// cluster's state still reads (nothing of it rewritten).
func TestNodeFollowsClusterPKIDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ctx := context.Background()
	c := parseLab(t, labInventory(t))
	cl, err := newEngineRun(ctx, engineOptions{Cluster: c, Files: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.eng.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	cl.pkiDir = dir
	clusterState, err := cl.stateValue(nil)
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	in := inventoryInput{Path: types.StringNull(), YAML: types.StringValue(labInventory(t))}
	node := nodeResourceModel{Path: in.Path, YAML: in.YAML, ClusterState: clusterState, State: types.StringNull(), Server: types.StringValue("tf-dc2-w01")}
	run, d := openEngine(ctx, nil, node.engineRequest())
	if d.HasError() {
		t.Fatalf("node engine over a pki_dir cluster state: %s", summary(d))
	}
	if want := filepath.Join(dir, "nodes", "tf-dc2-w01"); run.pkiDir != want {
		t.Fatalf("node engine pki dir %q, want %q under the cluster's", run.pkiDir, want)
	}
	if _, _, err := run.store.PKI().EnsureKubelet("tf-dc2-w01", []net.IP{net.ParseIP("198.19.46.20")}); err != nil {
		t.Fatal(err)
	}
	st, err := run.stateValue(func(after map[string]string) map[string]string { return nodeFiles(run.inputs[0], after) })
	run.Close()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(st.ValueString(), "PRIVATE KEY") || strings.Contains(st.ValueString(), "CERTIFICATE") {
		t.Fatalf("the node's state holds PKI content: %.300s", st.ValueString())
	}
	files, err := decodeFiles(st)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := internalizePKI(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) == 0 {
		t.Fatal("the node's state names no file of its own")
	}
	for name := range back {
		if !strings.HasPrefix(name, "pki/") || !strings.Contains(name, "tf-dc2-w01") {
			t.Errorf("the node's state holds %s", name)
		}
	}
	node.State = st
	again, d := openEngine(ctx, nil, node.engineRequest())
	if d.HasError() {
		t.Fatalf("node engine over its own pki_dir state: %s", summary(d))
	}
	defer again.Close()
	for name, content := range back {
		if again.files()[name] != content {
			t.Errorf("%s not read back from pki_dir", name)
		}
	}
	clf, _ := decodeFiles(clusterState)
	if _, _, err := internalizePKI(clf); err != nil {
		t.Fatalf("the cluster's state after the node's run: %v", err)
	}
}
