package provider

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// A version 0 state's engine state: the bare JSON object of files.
const v0Blob = `{"pki/etcd/ca.crt":"C","pki/etcd/ca.key":"K","prior.json":"{}\n"}`

// v0Cluster is a tricenter_cluster state as the provider wrote it at
// schema version 0 (no skip_phases yet).
func v0Cluster(blob string) map[string]any {
	return map[string]any{
		"id": "tf-lab", "path": "/etc/tricenter/lab.yaml", "yaml": nil, "components": []string{"etcd"},
		"node_servers": []string{"tf-dc2-w01"}, "inventory_sha256": strings.Repeat("a", 64), "state": blob,
		"kubeconfig": "apiVersion: v1\n", "ca_certificate": "-----BEGIN CERTIFICATE-----\n",
		"api_server_url": "https://198.19.64.10:6443", "etcd_members": map[string]string{"tf-dc1-s01": "dc1"},
		"etcd_members_per_center": map[string]int{"dc1": 1}, "gates": []string{"etcd: ok (3 members)"},
		"changed_hosts": []string{"tf-dc1-s01"}, "healthy": true, "problems": []string{}, "timeouts": nil,
		"wait_reachable": nil, "accept_transient_risk": nil,
	}
}

// v0Node is a tricenter_node state at schema version 0.
func v0Node(blob, clusterBlob string) map[string]any {
	return map[string]any{
		"id": "tf-dc2-w01", "server": "tf-dc2-w01", "path": "/etc/tricenter/lab.yaml", "yaml": nil,
		"cluster_state": clusterBlob, "state": blob, "center": "dc2", "rack": "tf-dc2-r02", "pod_cidr": "198.19.128.0/24",
		"changed_hosts": []string{"tf-dc2-w01"}, "gates": []string{}, "ready": true, "problems": []string{},
		"timeouts": nil, "wait_reachable": nil,
	}
}

// protoServer is the provider as Terraform talks to it (protocol 6) and
// the schemas it announces.
func protoServer(t *testing.T) (tfprotov6.ProviderServer, *tfprotov6.GetProviderSchemaResponse) {
	t.Helper()
	srv, err := testAccProtoV6ProviderFactories["tricenter"]()
	if err != nil {
		t.Fatal(err)
	}
	sch, err := srv.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, sch
}

// upgrade runs Terraform's UpgradeResourceState on the provider server
// (the framework's own path) and returns the upgraded state's attributes
// and the diagnostics.
func upgrade(t *testing.T, typ string, version int64, raw map[string]any) (map[string]tftypes.Value, []*tfprotov6.Diagnostic) {
	t.Helper()
	ctx := context.Background()
	srv, sch := protoServer(t)
	rs := sch.ResourceSchemas[typ]
	if rs == nil {
		t.Fatalf("no schema for %s", typ)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.UpgradeResourceState(ctx, &tfprotov6.UpgradeResourceStateRequest{TypeName: typ, Version: version, RawState: &tfprotov6.RawState{JSON: b}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.UpgradedState == nil {
		return nil, resp.Diagnostics
	}
	v, err := resp.UpgradedState.Unmarshal(rs.ValueType())
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]tftypes.Value{}
	if err := v.As(&attrs); err != nil {
		t.Fatal(err)
	}
	return attrs, resp.Diagnostics
}

func stringAttr(t *testing.T, attrs map[string]tftypes.Value, name string) string {
	t.Helper()
	var s *string
	if err := attrs[name].As(&s); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if s == nil {
		return "<null>"
	}
	return *s
}

func TestSchemaVersions(t *testing.T) {
	_, sch := protoServer(t)
	for typ, want := range map[string]int64{"tricenter_cluster": clusterSchemaVersion, "tricenter_node": nodeSchemaVersion, "tricenter_server": 0} {
		if got := sch.ResourceSchemas[typ].Version; got != want {
			t.Errorf("%s schema version %d, want %d", typ, got, want)
		}
	}
	if clusterSchemaVersion != 1 || nodeSchemaVersion != 1 {
		t.Error("a new schema version needs an upgrader from the last one and a test of it")
	}
}

// TestClusterUpgradeFromV0: a version 0 tricenter_cluster state reads
// with its engine state rewritten in the current format (same files) and
// every other attribute as it was; skip_phases, new, is null.
func TestClusterUpgradeFromV0(t *testing.T) {
	attrs, diags := upgrade(t, "tricenter_cluster", 0, v0Cluster(v0Blob))
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags[0].Detail)
	}
	st := stringAttr(t, attrs, "state")
	files, format, err := state.DecodeBlob(st)
	if err != nil || format != state.BlobFormat {
		t.Fatalf("upgraded state %q: format %d, %v", st, format, err)
	}
	if len(files) != 3 || files["pki/etcd/ca.key"] != "K" || files["prior.json"] != "{}\n" {
		t.Fatalf("upgraded files %v", files)
	}
	if want, _ := state.EncodeBlob(files); st != want {
		t.Errorf("upgraded state %q, want the canonical %q", st, want)
	}
	for name, want := range map[string]string{"id": "tf-lab", "path": "/etc/tricenter/lab.yaml", "api_server_url": "https://198.19.64.10:6443",
		"kubeconfig": "apiVersion: v1\n", "yaml": "<null>"} {
		if got := stringAttr(t, attrs, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	var comps []tftypes.Value
	if err := attrs["components"].As(&comps); err != nil || len(comps) != 1 {
		t.Errorf("components: %v, %v", comps, err)
	}
	if !attrs["skip_phases"].IsNull() {
		t.Errorf("skip_phases = %v, want null", attrs["skip_phases"])
	}
	var healthy bool
	if err := attrs["healthy"].As(&healthy); err != nil || !healthy {
		t.Errorf("healthy: %v, %v", healthy, err)
	}
	// A state already in the current format stays as it is.
	again, diags := upgrade(t, "tricenter_cluster", 0, v0Cluster(st))
	if len(diags) != 0 || stringAttr(t, again, "state") != st {
		t.Errorf("upgrading a current state changed it (%v)", diags)
	}
}

// TestNodeUpgradeFromV0: a version 0 tricenter_node state gets its own
// engine state and its copy of the cluster's in the current format — the
// same string the cluster's upgrade writes, so the node plans no change.
func TestNodeUpgradeFromV0(t *testing.T) {
	own := `{"pki/kubernetes/kubelet-client-tf-dc2-w01.crt":"N"}`
	attrs, diags := upgrade(t, "tricenter_node", 0, v0Node(own, v0Blob))
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags[0].Detail)
	}
	cluster, _ := upgrade(t, "tricenter_cluster", 0, v0Cluster(v0Blob))
	if got, want := stringAttr(t, attrs, "cluster_state"), stringAttr(t, cluster, "state"); got != want {
		t.Errorf("cluster_state %q, want the cluster's upgraded state %q", got, want)
	}
	files, format, err := state.DecodeBlob(stringAttr(t, attrs, "state"))
	if err != nil || format != state.BlobFormat || files["pki/kubernetes/kubelet-client-tf-dc2-w01.crt"] != "N" || len(files) != 1 {
		t.Fatalf("node state: %v, format %d, %v", files, format, err)
	}
	for name, want := range map[string]string{"server": "tf-dc2-w01", "center": "dc2", "pod_cidr": "198.19.128.0/24"} {
		if got := stringAttr(t, attrs, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// A node that never joined has no state of its own: it stays null.
	raw := v0Node("", v0Blob)
	raw["state"] = nil
	attrs, diags = upgrade(t, "tricenter_node", 0, raw)
	if len(diags) != 0 || !attrs["state"].IsNull() {
		t.Errorf("null node state: %v, %v", attrs["state"], diags)
	}
}

// TestUpgradeRefusesWhatItCannotRead: a state blob from a newer provider,
// or a broken one, fails the upgrade with the attribute named; nothing is
// rewritten.
func TestUpgradeRefusesWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct{ blob, want string }{
		{`{"format":3,"files":{}}`, "written by a newer provider: upgrade the provider"},
		{`[1]`, "not a JSON object"},
	} {
		attrs, diags := upgrade(t, "tricenter_cluster", 0, v0Cluster(tc.blob))
		if attrs != nil || len(diags) == 0 {
			t.Fatalf("%s: upgraded", tc.blob)
		}
		d := diags[0]
		if d.Severity != tfprotov6.DiagnosticSeverityError || !strings.Contains(d.Detail, tc.want) {
			t.Errorf("%s: %s: %s, want %q", tc.blob, d.Summary, d.Detail, tc.want)
		}
		if d.Attribute == nil || !d.Attribute.Equal(tftypes.NewAttributePath().WithAttributeName("state")) {
			t.Errorf("%s: diagnostic on %v, want state", tc.blob, d.Attribute)
		}
	}
}
