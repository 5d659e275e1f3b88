package provider

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/hashicorp/terraform-plugin-testing/config"
	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func nodeSchema(t *testing.T) tfsdk.State {
	t.Helper()
	var sr resource.SchemaResponse
	(&nodeResource{}).Schema(context.Background(), resource.SchemaRequest{}, &sr)
	if sr.Diagnostics.HasError() {
		t.Fatal(sr.Diagnostics)
	}
	return tfsdk.State{Schema: sr.Schema, Raw: tftypes.NewValue(sr.Schema.Type().TerraformType(context.Background()), nil)}
}

// TestNodeImportState: the import ID is the server name; it sets id and
// server and nothing else. Anything that is not a server name is refused
// with the expected form.
func TestNodeImportState(t *testing.T) {
	ctx := context.Background()
	r := &nodeResource{}
	resp := &resource.ImportStateResponse{State: nodeSchema(t)}
	r.ImportState(ctx, resource.ImportStateRequest{ID: "tf-dc2-w01"}, resp)
	if resp.Diagnostics.HasError() {
		t.Fatal(resp.Diagnostics)
	}
	var m nodeResourceModel
	if d := resp.State.Get(ctx, &m); d.HasError() {
		t.Fatal(d)
	}
	if m.ID.ValueString() != "tf-dc2-w01" || m.Server.ValueString() != "tf-dc2-w01" {
		t.Fatalf("imported id %v, server %v", m.ID, m.Server)
	}
	if m.configured() || !m.State.IsNull() || !m.ClusterState.IsNull() || !m.Ready.IsNull() {
		t.Fatalf("import set more than id and server: %+v", m)
	}
	// Read right after the import has no inventory to observe with: it
	// keeps the state, quietly.
	rr := &resource.ReadResponse{State: resp.State}
	r.Read(ctx, resource.ReadRequest{State: resp.State}, rr)
	if len(rr.Diagnostics) != 0 || !rr.State.Raw.Equal(resp.State.Raw) {
		t.Fatalf("Read after import: %v", rr.Diagnostics)
	}
	for _, id := range []string{"", "DC2-W01", "tf-dc2-w01 ", "dc1/w01", "lab#w01", "-w01", strings.Repeat("a", 64)} {
		resp := &resource.ImportStateResponse{State: nodeSchema(t)}
		r.ImportState(ctx, resource.ImportStateRequest{ID: id}, resp)
		if !resp.Diagnostics.HasError() {
			t.Errorf("import ID %q accepted", id)
			continue
		}
		d := resp.Diagnostics.Errors()[0]
		if d.Summary() != "Invalid import ID" || !strings.Contains(d.Detail(), "use the name of the worker in the inventory") ||
			!strings.Contains(d.Detail(), "terraform import tricenter_node.") {
			t.Errorf("import ID %q: %s: %s", id, d.Summary(), d.Detail())
		}
		var server types.String
		_ = resp.State.GetAttribute(ctx, path.Root("server"), &server)
		if !server.IsNull() {
			t.Errorf("import ID %q: server set to %v", id, server)
		}
	}
}

// TestNodeImportPlan imports a worker with an import block and plans it
// with its configuration (no host is contacted): the import reads the
// server name, the plan fills in what the configuration gives and shows
// an update (the apply that converges), not a replacement.
func TestNodeImportPlan(t *testing.T) {
	terraformForUnitTests(t)
	inv, enc := clusterStateWithPKI(t)
	cfg := func(id string) string {
		return `
variable "cluster_state" {
  type      = string
  sensitive = true
}

import {
  to = tricenter_node.w
  id = "` + id + `"
}

resource "tricenter_node" "w" {
  server        = "tf-dc2-w01"
  path          = "` + inv + `"
  cluster_state = var.cluster_state
}
`
	}
	vars := config.Variables{"cluster_state": config.StringVariable(enc)}
	tfresource.UnitTest(t, tfresource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []tfresource.TestStep{
			{
				Config:             cfg("tf-dc2-w01"),
				ConfigVariables:    vars,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: tfresource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("tricenter_node.w", plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue("tricenter_node.w", tfjsonpath.New("id"), knownvalue.StringExact("tf-dc2-w01")),
					plancheck.ExpectKnownValue("tricenter_node.w", tfjsonpath.New("center"), knownvalue.StringExact("dc2")),
					plancheck.ExpectKnownValue("tricenter_node.w", tfjsonpath.New("rack"), knownvalue.StringExact("tf-dc2-r02")),
					plancheck.ExpectKnownValue("tricenter_node.w", tfjsonpath.New("pod_cidr"), knownvalue.StringRegexp(regexp.MustCompile(`^198\.19\.`))),
				}},
			},
			{
				Config:          cfg("TF-DC2-W01"),
				ConfigVariables: vars,
				PlanOnly:        true,
				ExpectError:     regexp.MustCompile(`Invalid import ID(?s:.*)use the name of the worker`),
			},
		},
	})
}
