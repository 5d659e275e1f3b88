package provider

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// TestPlanRenewal: a prior state that says due plans false (an update),
// unless the apply is partial or the prior is null (a state an older
// provider wrote: nothing planned); a prior that says not due plans a
// renewal when the certificates of the state are due at plan time (a
// plan with -refresh=false), and nothing when they are not or cannot be
// read.
func TestPlanRenewal(t *testing.T) {
	at := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	due := func() (bool, time.Time, string, error) {
		return true, at, "kubelet client (kubernetes/kubelet-client-w1.crt)", nil
	}
	notDue := func() (bool, time.Time, string, error) { return false, at, "x", nil }
	broken := func() (bool, time.Time, string, error) { return false, time.Time{}, "", errors.New("unreadable") }
	for _, tc := range []struct {
		name         string
		prior        types.Bool
		partial      bool
		f            renewalFunc
		wantDue      types.Bool
		wantUnknown  bool // earliest planned unknown
		wantMessage  string
		earliestKept bool
	}{
		{"prior null", types.BoolNull(), false, due, types.BoolNull(), false, "", true},
		{"prior due", types.BoolValue(true), false, nil, types.BoolValue(false), false, "refresh found them due", true},
		{"prior due, partial", types.BoolValue(true), true, due, types.BoolValue(true), false, "", true},
		{"due at plan time", types.BoolValue(false), false, due, types.BoolValue(false), true, "kubelet client (kubernetes/kubelet-client-w1.crt) expires 2027-01-02T03:04:05Z", false},
		{"not due", types.BoolValue(false), false, notDue, types.BoolValue(false), false, "", true},
		{"unreadable", types.BoolValue(false), false, broken, types.BoolValue(false), false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			planDue, earliest := tc.prior, types.StringValue("2026-12-01T00:00:00Z")
			if tc.prior.IsNull() {
				earliest = types.StringNull()
			}
			before := earliest
			msg := planRenewal(tc.prior, tc.partial, tc.f, &planDue, &earliest)
			if !planDue.Equal(tc.wantDue) {
				t.Errorf("planned due %v, want %v", planDue, tc.wantDue)
			}
			if earliest.IsUnknown() != tc.wantUnknown || (tc.earliestKept && !earliest.Equal(before)) {
				t.Errorf("planned earliest %v (was %v)", earliest, before)
			}
			if (tc.wantMessage == "") != (msg == "") || !strings.Contains(msg, tc.wantMessage) {
				t.Errorf("message %q, want one with %q", msg, tc.wantMessage)
			}
		})
	}
}

// TestReadRenewal: refresh records the judgement with a warning naming
// what expires when; an error is a warning and keeps the last values.
func TestReadRenewal(t *testing.T) {
	at := time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	due, earliest := types.BoolValue(false), types.StringValue("old")
	var diags diag.Diagnostics
	readRenewal(func() (bool, time.Time, string, error) { return true, at, "etcd peer (etcd/peer-a.crt)", nil }, &due, &earliest, &diags)
	if !due.ValueBool() || earliest.ValueString() != "2027-01-02T02:04:05Z" {
		t.Fatalf("due %v, earliest %v", due, earliest)
	}
	if len(diags) != 1 || diags.HasError() || !strings.Contains(diags[0].Detail(), "Certificates due for renewal: etcd peer (etcd/peer-a.crt) expires 2027-01-02T02:04:05Z") {
		t.Fatalf("diagnostics %v", diags)
	}
	diags = nil
	readRenewal(func() (bool, time.Time, string, error) { return false, time.Time{}, "", errors.New("bad certificate") }, &due, &earliest, &diags)
	if !due.ValueBool() || earliest.ValueString() != "2027-01-02T02:04:05Z" || len(diags) != 1 || diags.HasError() ||
		!strings.Contains(diags[0].Detail(), "bad certificate") {
		t.Fatalf("on error: due %v, earliest %v, diagnostics %v", due, earliest, diags)
	}
	diags = nil
	readRenewal(func() (bool, time.Time, string, error) { return false, at, "x", nil }, &due, &earliest, &diags)
	if due.ValueBool() || len(diags) != 0 {
		t.Fatalf("not due: %v %v", due, diags)
	}
}

// clusterPlanRequest is the ModifyPlan request of a plan that changes
// nothing in the configuration over prior (as terraform plan after a
// refresh that stored prior).
func clusterPlanRequest(t *testing.T, prior clusterResourceModel) (resource.ModifyPlanRequest, *resource.ModifyPlanResponse) {
	t.Helper()
	ctx := context.Background()
	var sr resource.SchemaResponse
	(&clusterResource{}).Schema(ctx, resource.SchemaRequest{}, &sr)
	if sr.Diagnostics.HasError() {
		t.Fatal(sr.Diagnostics)
	}
	null := tftypes.NewValue(sr.Schema.Type().TerraformType(ctx), nil)
	st := tfsdk.State{Schema: sr.Schema, Raw: null}
	if d := st.Set(ctx, &prior); d.HasError() {
		t.Fatal(d)
	}
	cfg := tfsdk.State{Schema: sr.Schema, Raw: null}
	if d := cfg.SetAttribute(ctx, path.Root("yaml"), prior.YAML); d.HasError() {
		t.Fatal(d)
	}
	plan := tfsdk.Plan{Schema: sr.Schema, Raw: st.Raw.Copy()}
	req := resource.ModifyPlanRequest{State: st, Plan: plan, Config: tfsdk.Config{Schema: sr.Schema, Raw: cfg.Raw}}
	return req, &resource.ModifyPlanResponse{Plan: plan}
}

// TestClusterRenewalPlan: after an apply (stopping after the certificates,
// as TestClusterApplyKeepsPartialProgress does) the leaves are not due and
// the earliest expiry is a year out; at a clock within renewBefore of it
// refresh says due, and ModifyPlan over that state plans an update (the
// attributes unknown, the state too); with the prior saying not due
// (terraform plan -refresh=false) it still plans the renewal from the
// state's certificates, and before renewBefore it plans nothing.
func TestClusterRenewalPlan(t *testing.T) {
	now := time.Now()
	data := &providerData{Concurrency: DefaultConcurrency, Clock: func() time.Time { return now }}
	r := &clusterResource{data: data}
	m := clusterResourceModel{Path: types.StringNull(), YAML: types.StringValue(labInventory(t)),
		Components: types.ListNull(types.StringType), SkipPhases: types.ListNull(types.StringType), NodeServers: types.SetNull(types.StringType)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var diags diag.Diagnostics
	if !r.apply(ctx, &m, types.StringNull(), &diags) {
		t.Fatalf("apply reports nothing to save: %q", summary(diags))
	}
	if m.RenewDue.IsNull() || m.RenewDue.ValueBool() {
		t.Fatalf("after apply certificates_renew_due = %v", m.RenewDue)
	}
	earliest, err := time.Parse(time.RFC3339, m.EarliestExpiry.ValueString())
	if err != nil || earliest.Before(now.Add(364*24*time.Hour)) || earliest.After(now.Add(366*24*time.Hour)) {
		t.Fatalf("after apply earliest_certificate_expiry = %v (%v), want a year out", m.EarliestExpiry, err)
	}

	// Refresh within renewBefore (30 days by default) of that expiry.
	now = earliest.Add(-10 * 24 * time.Hour)
	run, d := openEngine(ctx, data, m.engineRequest(m.State))
	if d.HasError() {
		t.Fatal(summary(d))
	}
	var rd diag.Diagnostics
	readRenewal(run.eng.RenewalDue, &m.RenewDue, &m.EarliestExpiry, &rd)
	run.Close()
	if !m.RenewDue.ValueBool() || len(rd) != 1 || !strings.Contains(rd[0].Detail(), "Certificates due for renewal: ") ||
		!strings.Contains(rd[0].Detail(), earliest.UTC().Format(time.RFC3339)) {
		t.Fatalf("refresh within renewBefore: due %v, diagnostics %v", m.RenewDue, rd)
	}

	// The plan over the refreshed state: an update.
	m.Healthy, m.Problems = types.BoolValue(true), stringList(nil)
	m.Timeouts = timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
		"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType})}
	planned := func(prior clusterResourceModel) (clusterResourceModel, *resource.ModifyPlanResponse) {
		t.Helper()
		req, resp := clusterPlanRequest(t, prior)
		r.ModifyPlan(ctx, req, resp)
		if resp.Diagnostics.HasError() {
			t.Fatalf("ModifyPlan: %s", summary(resp.Diagnostics))
		}
		var p clusterResourceModel
		if d := resp.Plan.Get(ctx, &p); d.HasError() {
			t.Fatal(d)
		}
		return p, resp
	}
	p, resp := planned(m)
	if !p.RenewDue.IsUnknown() || !p.EarliestExpiry.IsUnknown() || !p.State.IsUnknown() {
		t.Fatalf("plan over a due state: due %v, earliest %v, state unknown %v", p.RenewDue, p.EarliestExpiry, p.State.IsUnknown())
	}
	if !hasWarning(resp.Diagnostics, "This update renews certificates") {
		t.Errorf("plan warnings: %v", resp.Diagnostics)
	}

	// -refresh=false: the prior says not due, the state's certificates are.
	stale := m
	stale.RenewDue, stale.EarliestExpiry = renewalValues(false, earliest)
	if p, _ := planned(stale); !p.RenewDue.IsUnknown() || !p.EarliestExpiry.IsUnknown() || !p.State.IsUnknown() {
		t.Fatalf("plan without refresh over due certificates: due %v, earliest %v", p.RenewDue, p.EarliestExpiry)
	}

	// Before renewBefore: no change planned.
	now = earliest.Add(-60 * 24 * time.Hour)
	if p, resp := planned(stale); p.RenewDue.IsUnknown() || p.RenewDue.ValueBool() || p.State.IsUnknown() || hasWarning(resp.Diagnostics, "renews") {
		t.Fatalf("plan before renewBefore: due %v, state unknown %v, %v", p.RenewDue, p.State.IsUnknown(), resp.Diagnostics)
	}
	// A prior without the attributes (an older provider's): nothing.
	old := m
	old.RenewDue, old.EarliestExpiry = types.BoolNull(), types.StringNull()
	now = earliest
	if p, _ := planned(old); !p.RenewDue.IsNull() || !p.EarliestExpiry.IsNull() || p.State.IsUnknown() {
		t.Fatalf("plan over an older provider's state: due %v, earliest %v, state unknown %v", p.RenewDue, p.EarliestExpiry, p.State.IsUnknown())
	}
}

func hasWarning(d diag.Diagnostics, summary string) bool {
	for _, w := range d.Warnings() {
		if strings.Contains(w.Summary(), summary) {
			return true
		}
	}
	return false
}

// TestNodeRenewal: a node's renewal is judged on its own certificates
// only (not the cluster's), at the provider's clock.
func TestNodeRenewal(t *testing.T) {
	c := parseLab(t, labInventory(t))
	now := time.Now()
	run, err := newEngineRun(context.Background(), engineOptions{Cluster: c, Files: map[string]string{},
		Data: &providerData{Concurrency: 1, Clock: func() time.Time { return now }}})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if _, err := run.eng.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	if _, err := run.store.PKI().CA(pki.KubernetesCA, pki.KubernetesCACommonName); err != nil {
		t.Fatal(err)
	}
	cluster := run.files()
	if _, _, err := run.store.PKI().EnsureKubelet("tf-dc2-w01", []net.IP{net.ParseIP("198.19.0.5")}); err != nil {
		t.Fatal(err)
	}
	run.inputs = []map[string]string{cluster}
	own := ownFiles(run)
	if len(own) == 0 || len(own) > 4 {
		t.Fatalf("the node's own files: %v", keysOf(own))
	}
	for k := range own {
		if !strings.Contains(k, "tf-dc2-w01") {
			t.Errorf("%s is not the node's", k)
		}
	}
	due, at, what, err := nodeRenewal(own, c, now)()
	if err != nil || due || !strings.Contains(what, "kubelet") {
		t.Fatalf("fresh node: due %v at %v (%q): %v", due, at, what, err)
	}
	due, _, what, err = nodeRenewal(own, c, at.Add(-24*time.Hour))()
	if err != nil || !due || !strings.Contains(what, "kubelet") {
		t.Fatalf("a day before expiry: due %v (%q): %v", due, what, err)
	}
}

// TestNodeRenewalPlan: tricenter_node's ModifyPlan over a node whose
// kubelet certificates are within renewBefore at plan time plans an
// update (even when the prior says not due: -refresh=false), and plans
// nothing before.
func TestNodeRenewalPlan(t *testing.T) {
	ctx := context.Background()
	inv, clusterState := clusterStateWithPKI(t)
	now := time.Now()
	data := &providerData{Concurrency: 1, Clock: func() time.Time { return now }}
	const server = "tf-dc2-w01"
	m := nodeResourceModel{Server: types.StringValue(server), Path: types.StringValue(inv), YAML: types.StringNull(),
		ClusterState: types.StringValue(clusterState), State: types.StringNull()}
	run, d := openEngine(ctx, data, m.engineRequest())
	if d.HasError() {
		t.Fatal(summary(d))
	}
	if _, _, err := run.store.PKI().EnsureKubelet(server, []net.IP{net.ParseIP("198.19.0.5")}); err != nil {
		t.Fatal(err)
	}
	st, err := run.stateValue(func(after map[string]string) map[string]string { return nodeFiles(run.inputs[0], after) })
	if err != nil {
		t.Fatal(err)
	}
	cidr, _ := run.eng.IPs().PodCIDR(server)
	h, _ := run.eng.Cluster().Host(server)
	applyRenewal(nodeRenewal(ownFiles(run), run.eng.Cluster(), now), &m.RenewDue, &m.EarliestExpiry)
	run.Close()
	earliest, err := time.Parse(time.RFC3339, m.EarliestExpiry.ValueString())
	if err != nil || m.RenewDue.ValueBool() {
		t.Fatalf("fresh kubelet certificates: due %v, earliest %v (%v)", m.RenewDue, m.EarliestExpiry, err)
	}
	m.ID, m.State, m.Center, m.Rack = types.StringValue(server), st, types.StringValue(h.Center.Name), types.StringValue(h.Rack.Name)
	m.PodCIDR, m.Ready = types.StringValue(cidr.String()), types.BoolValue(true)
	m.ChangedHosts, m.Gates, m.Problems = stringList(nil), stringList(nil), stringList(nil)
	m.WaitReachable = types.StringNull()
	m.Timeouts = timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
		"create": types.StringType, "read": types.StringType, "update": types.StringType, "delete": types.StringType})}

	var sr resource.SchemaResponse
	(&nodeResource{}).Schema(ctx, resource.SchemaRequest{}, &sr)
	null := tftypes.NewValue(sr.Schema.Type().TerraformType(ctx), nil)
	prior := tfsdk.State{Schema: sr.Schema, Raw: null}
	if d := prior.Set(ctx, &m); d.HasError() {
		t.Fatal(d)
	}
	r := &nodeResource{data: data}
	plan := func() (nodeResourceModel, *resource.ModifyPlanResponse) {
		t.Helper()
		p := tfsdk.Plan{Schema: sr.Schema, Raw: prior.Raw.Copy()}
		resp := &resource.ModifyPlanResponse{Plan: p}
		r.ModifyPlan(ctx, resource.ModifyPlanRequest{State: prior, Plan: p, Config: tfsdk.Config{Schema: sr.Schema, Raw: prior.Raw.Copy()}}, resp)
		if resp.Diagnostics.HasError() {
			t.Fatalf("ModifyPlan: %s", summary(resp.Diagnostics))
		}
		var out nodeResourceModel
		if d := resp.Plan.Get(ctx, &out); d.HasError() {
			t.Fatal(d)
		}
		return out, resp
	}
	if p, resp := plan(); p.State.IsUnknown() || p.RenewDue.IsUnknown() || hasWarning(resp.Diagnostics, "renews") {
		t.Fatalf("plan of fresh certificates: state unknown %v, due %v, %v", p.State.IsUnknown(), p.RenewDue, resp.Diagnostics)
	}
	now = earliest.Add(-24 * time.Hour)
	p, resp := plan()
	if !p.State.IsUnknown() || !p.RenewDue.IsUnknown() || !p.EarliestExpiry.IsUnknown() || !hasWarning(resp.Diagnostics, "This update renews "+server) {
		t.Fatalf("plan a day before the kubelet certificates expire: state unknown %v, due %v, earliest %v, %v",
			p.State.IsUnknown(), p.RenewDue, p.EarliestExpiry, resp.Diagnostics)
	}
}
