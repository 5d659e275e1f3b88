package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var _ datasource.DataSource = (*etcdPlacementDataSource)(nil)

// NewEtcdPlacementDataSource returns the tricenter_etcd_placement data
// source.
func NewEtcdPlacementDataSource() datasource.DataSource { return &etcdPlacementDataSource{} }

type etcdPlacementDataSource struct{}

type etcdPlacementModel struct {
	ID                  types.String    `tfsdk:"id"`
	Path                types.String    `tfsdk:"path"`
	YAML                types.String    `tfsdk:"yaml"`
	Servers             types.Set       `tfsdk:"servers"`
	AllowDegraded       types.Bool      `tfsdk:"allow_degraded"`
	ClusterName         string          `tfsdk:"cluster_name"`
	Etcd                etcdModel       `tfsdk:"etcd"`
	ControlPlane        []memberModel   `tfsdk:"control_plane"`
	StackedControlPlane bool            `tfsdk:"stacked_control_plane"`
	CenterLoss          map[string]bool `tfsdk:"center_loss"`
	SiteLoss            map[string]bool `tfsdk:"site_loss"`
	Warnings            []string        `tfsdk:"warnings"`
}

func (d *etcdPlacementDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_etcd_placement"
}

func (d *etcdPlacementDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := sourceAttributes()
	attrs["servers"] = schema.SetAttribute{
		Optional:    true,
		ElementType: types.StringType,
		MarkdownDescription: "Place etcd among these servers only (names from the inventory); the others are left out as if " +
			"they were not racked. Unset: every server, as `tricenter plan` does.",
		Validators: []validator.Set{
			setvalidator.SizeAtLeast(1),
			setvalidator.ValueStringsAre(stringvalidator.LengthAtLeast(1)),
		},
	}
	attrs["allow_degraded"] = schema.BoolAttribute{
		Optional: true,
		MarkdownDescription: "Report a placement that cannot survive the loss of a center (its failure domains show " +
			"`quorum_kept = false`) instead of failing. Default false: such a placement is an error, as in `tricenter validate`.",
	}
	attrs["id"] = schema.StringAttribute{Computed: true, MarkdownDescription: "The cluster name followed by the members, comma-separated."}
	attrs["cluster_name"] = schema.StringAttribute{Computed: true, MarkdownDescription: "`metadata.name` of the inventory."}
	attrs["etcd"] = etcdSchema()
	attrs["control_plane"] = membersSchema("Servers running the control plane.")
	attrs["stacked_control_plane"] = schema.BoolAttribute{Computed: true, MarkdownDescription: "True when the etcd members run the control plane."}
	attrs["center_loss"] = schema.MapAttribute{Computed: true, ElementType: types.BoolType, MarkdownDescription: "For each center: whether etcd keeps quorum when it is lost."}
	attrs["site_loss"] = schema.MapAttribute{Computed: true, ElementType: types.BoolType, MarkdownDescription: "For each site: whether etcd keeps quorum when it is lost."}
	attrs["warnings"] = schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Placement and validation warnings."}
	resp.Schema = schema.Schema{
		MarkdownDescription: "The etcd and control-plane placement and the failure-domain report (which center, site or rack " +
			"loss keeps quorum) for an inventory, optionally restricted to a set of servers. Purely local.",
		Attributes: attrs,
	}
}

func (d *etcdPlacementDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	src, diags := readSource(ctx, req.Config)
	resp.Diagnostics.Append(diags...)
	var servers types.Set
	var allow types.Bool
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("servers"), &servers)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("allow_degraded"), &allow)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var names []string
	if !servers.IsNull() {
		resp.Diagnostics.Append(servers.ElementsAs(ctx, &names, false)...)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	p, diags := placeServers(src, names, allow.ValueBool())
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	m := placementModel(p)
	m.Path, m.YAML, m.Servers, m.AllowDegraded = src.pathValue, src.yamlValue, servers, allow
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// placeServers validates the whole inventory (so problems carry their
// YAML lines), then restricts it to names (all servers when empty) and
// derives the plan of that subset.
func placeServers(src inventorySource, names []string, allowDegraded bool) (*inventory.Plan, diag.Diagnostics) {
	c, lines, diags := src.load()
	if diags.HasError() {
		return nil, diags
	}
	if res := c.Validate(lines); !res.OK() && len(names) == 0 && !allowDegraded {
		diags.Append(problemDiags(src, res.Errors, res.Warnings)...)
		return nil, diags
	}
	sub, err := subset(c, names)
	if err != nil {
		diags.AddAttributeError(path.Root("servers"), "Unknown servers", err.Error())
		return nil, diags
	}
	if allowDegraded && sub.Spec.Etcd.AllowDegradedPlacement == nil {
		sub.Spec.Etcd.AllowDegradedPlacement = &inventory.Degraded{Reason: "report requested with allow_degraded"}
	}
	if len(names) > 0 || allowDegraded {
		// Indices moved: line numbers of the file no longer apply.
		lines = nil
	}
	res := sub.Validate(lines)
	if !res.OK() {
		at := src
		if len(names) > 0 {
			at.attr, at.name = path.Root("servers"), src.name+" restricted to "+strings.Join(names, ", ")
		}
		diags.Append(problemDiags(at, res.Errors, nil)...)
		return nil, diags
	}
	p, err := inventory.BuildPlan(sub, lines, nil)
	if err != nil {
		diags.AddAttributeError(src.attr, "Invalid inventory", fmt.Sprintf("%s: %v", src.name, err))
		return nil, diags
	}
	diags.Append(problemDiags(src, nil, p.Warnings)...)
	return p, diags
}

// subset copies c keeping only the named servers, in file order. Racks
// left empty stay (their TORs still exist).
func subset(c *inventory.Cluster, names []string) (*inventory.Cluster, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("copying the inventory: %w", err)
	}
	var out inventory.Cluster
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("copying the inventory: %w", err)
	}
	if len(names) == 0 {
		return &out, nil
	}
	keep := map[string]bool{}
	for _, n := range names {
		keep[n] = true
	}
	for i := range out.Spec.Racks {
		r := &out.Spec.Racks[i]
		kept := r.Servers[:0]
		for _, s := range r.Servers {
			if keep[s.Name] {
				kept = append(kept, s)
				delete(keep, s.Name)
			}
		}
		r.Servers = kept
	}
	if len(keep) > 0 {
		return nil, fmt.Errorf("servers %s are not in the inventory: use names from its racks[].servers[].name", strings.Join(slices.Sorted(maps.Keys(keep)), ", "))
	}
	return &out, nil
}

func placementModel(p *inventory.Plan) etcdPlacementModel {
	m := etcdPlacementModel{
		ClusterName:         p.Cluster,
		Etcd:                etcdModelOf(p.Etcd),
		ControlPlane:        membersOf(p.ControlPlane),
		StackedControlPlane: p.Stacked,
		CenterLoss:          map[string]bool{},
		SiteLoss:            map[string]bool{},
		Warnings:            []string{},
	}
	var members []string
	for _, x := range p.Etcd.Members {
		members = append(members, x.Name)
	}
	m.ID = types.StringValue(p.Cluster + ":" + strings.Join(members, ","))
	for _, fd := range p.Etcd.FailureDomains {
		switch fd.Kind {
		case "center":
			m.CenterLoss[fd.Name] = fd.QuorumKept
		case "site":
			m.SiteLoss[fd.Name] = fd.QuorumKept
		}
	}
	for _, w := range p.Warnings {
		m.Warnings = append(m.Warnings, w.String())
	}
	return m
}
