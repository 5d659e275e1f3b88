package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var _ datasource.DataSource = (*inventoryDataSource)(nil)

// NewInventoryDataSource returns the tricenter_inventory data source.
func NewInventoryDataSource() datasource.DataSource { return &inventoryDataSource{} }

type inventoryDataSource struct{}

type inventoryDataSourceModel struct {
	ID                  types.String           `tfsdk:"id"`
	Path                types.String           `tfsdk:"path"`
	YAML                types.String           `tfsdk:"yaml"`
	ClusterName         string                 `tfsdk:"cluster_name"`
	Summary             summaryModel           `tfsdk:"summary"`
	Centers             []centerModel          `tfsdk:"centers"`
	Servers             map[string]serverModel `tfsdk:"servers"`
	Etcd                etcdModel              `tfsdk:"etcd"`
	ControlPlane        []memberModel          `tfsdk:"control_plane"`
	StackedControlPlane bool                   `tfsdk:"stacked_control_plane"`
	IPAM                ipamModel              `tfsdk:"ipam"`
	Warnings            []string               `tfsdk:"warnings"`
	ModelJSON           string                 `tfsdk:"model_json"`
	PlanJSON            string                 `tfsdk:"plan_json"`
}

type summaryModel struct {
	Sites   int64 `tfsdk:"sites"`
	Centers int64 `tfsdk:"centers"`
	Racks   int64 `tfsdk:"racks"`
	Servers int64 `tfsdk:"servers"`
}

type centerModel struct {
	Name  string   `tfsdk:"name"`
	Site  string   `tfsdk:"site"`
	Role  string   `tfsdk:"role"`
	Racks []string `tfsdk:"racks"`
}

type serverModel struct {
	Name         string            `tfsdk:"name"`
	Site         string            `tfsdk:"site"`
	Center       string            `tfsdk:"center"`
	Rack         string            `tfsdk:"rack"`
	Roles        []string          `tfsdk:"roles"`
	Address      string            `tfsdk:"address"`
	PodCIDR      string            `tfsdk:"pod_cidr"`
	Etcd         bool              `tfsdk:"etcd"`
	ControlPlane bool              `tfsdk:"control_plane"`
	Labels       map[string]string `tfsdk:"labels"`
	BMC          *serverBMCModel   `tfsdk:"bmc"`
}

type serverBMCModel struct {
	Address      string  `tfsdk:"address"`
	Port         int64   `tfsdk:"port"`
	User         string  `tfsdk:"user"`
	PasswordEnv  *string `tfsdk:"password_env"`
	PasswordFile *string `tfsdk:"password_file"`
	CipherSuites []int64 `tfsdk:"cipher_suites"`
}

type memberModel struct {
	Name    string `tfsdk:"name"`
	Site    string `tfsdk:"site"`
	Center  string `tfsdk:"center"`
	Rack    string `tfsdk:"rack"`
	Address string `tfsdk:"address"`
}

type failureDomainModel struct {
	Kind       string   `tfsdk:"kind"`
	Name       string   `tfsdk:"name"`
	Lost       []string `tfsdk:"lost"`
	Remaining  []string `tfsdk:"remaining"`
	QuorumKept bool     `tfsdk:"quorum_kept"`
	Note       string   `tfsdk:"note"`
}

type etcdModel struct {
	Count              int64                `tfsdk:"count"`
	Quorum             int64                `tfsdk:"quorum"`
	PerCenter          map[string]int64     `tfsdk:"per_center"`
	Members            []memberModel        `tfsdk:"members"`
	HeartbeatMs        int64                `tfsdk:"heartbeat_ms"`
	ElectionTimeoutMs  int64                `tfsdk:"election_timeout_ms"`
	MaxRTTMs           float64              `tfsdk:"max_rtt_ms"`
	TimersSource       string               `tfsdk:"timers_source"`
	SurvivesCenterLoss bool                 `tfsdk:"survives_center_loss"`
	LocalSiteQuorum    bool                 `tfsdk:"local_site_quorum"`
	Degraded           bool                 `tfsdk:"degraded"`
	FailureDomains     []failureDomainModel `tfsdk:"failure_domains"`
}

type ipamModel struct {
	PodCIDR             string   `tfsdk:"pod_cidr"`
	PodMaskSize         int64    `tfsdk:"pod_mask_size"`
	ServiceCIDR         string   `tfsdk:"service_cidr"`
	KubernetesServiceIP string   `tfsdk:"kubernetes_service_ip"`
	ClusterDNSIP        string   `tfsdk:"cluster_dns_ip"`
	APIVIP              string   `tfsdk:"api_vip"`
	LoadBalancerPool    []string `tfsdk:"load_balancer_pool"`
	LoadBalancerFree    int64    `tfsdk:"load_balancer_free"`
}

func (d *inventoryDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_inventory"
}

func (d *inventoryDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := sourceAttributes()
	attrs["id"] = schema.StringAttribute{Computed: true, MarkdownDescription: "The cluster name (`metadata.name`)."}
	attrs["cluster_name"] = schema.StringAttribute{Computed: true, MarkdownDescription: "`metadata.name` of the inventory."}
	attrs["summary"] = schema.SingleNestedAttribute{
		Computed:            true,
		MarkdownDescription: "What the inventory holds.",
		Attributes: map[string]schema.Attribute{
			"sites":   schema.Int64Attribute{Computed: true, MarkdownDescription: "Number of sites."},
			"centers": schema.Int64Attribute{Computed: true, MarkdownDescription: "Number of centers."},
			"racks":   schema.Int64Attribute{Computed: true, MarkdownDescription: "Number of racks."},
			"servers": schema.Int64Attribute{Computed: true, MarkdownDescription: "Number of servers."},
		},
	}
	attrs["centers"] = schema.ListNestedAttribute{
		Computed:            true,
		MarkdownDescription: "The centers in inventory order.",
		NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
			"name":  schema.StringAttribute{Computed: true, MarkdownDescription: "Center name (the Kubernetes zone)."},
			"site":  schema.StringAttribute{Computed: true, MarkdownDescription: "Site holding the center (the Kubernetes region)."},
			"role":  schema.StringAttribute{Computed: true, MarkdownDescription: "`production`, `local-dr` or `remote-dr`."},
			"racks": schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Racks of the center."},
		}},
	}
	attrs["servers"] = schema.MapNestedAttribute{
		Computed: true,
		MarkdownDescription: "Every server keyed by its name, so that `for_each = data.tricenter_inventory.x.servers` " +
			"drives one resource per server (keys never shift when servers are added or removed).",
		NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
			"name":          schema.StringAttribute{Computed: true, MarkdownDescription: "Server name."},
			"site":          schema.StringAttribute{Computed: true, MarkdownDescription: "Site of the server."},
			"center":        schema.StringAttribute{Computed: true, MarkdownDescription: "Center of the server."},
			"rack":          schema.StringAttribute{Computed: true, MarkdownDescription: "Rack of the server."},
			"roles":         schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Roles given in the inventory (`etcd`, `control-plane`, `worker`)."},
			"address":       schema.StringAttribute{Computed: true, MarkdownDescription: "Node address (`ssh.address`)."},
			"pod_cidr":      schema.StringAttribute{Computed: true, MarkdownDescription: "Pod CIDR assigned by IPAM."},
			"etcd":          schema.BoolAttribute{Computed: true, MarkdownDescription: "Whether the placement made the server an etcd member."},
			"control_plane": schema.BoolAttribute{Computed: true, MarkdownDescription: "Whether the server runs the control plane."},
			"labels":        schema.MapAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Node labels from the inventory."},
			"bmc": schema.SingleNestedAttribute{
				Computed:            true,
				MarkdownDescription: "The server's BMC, null when the inventory has none. The password is a reference (environment variable or file), never the secret.",
				Attributes: map[string]schema.Attribute{
					"address":       schema.StringAttribute{Computed: true, MarkdownDescription: "BMC address."},
					"port":          schema.Int64Attribute{Computed: true, MarkdownDescription: "BMC UDP port."},
					"user":          schema.StringAttribute{Computed: true, MarkdownDescription: "BMC user."},
					"password_env":  schema.StringAttribute{Computed: true, MarkdownDescription: "Environment variable holding the password, if the inventory names one."},
					"password_file": schema.StringAttribute{Computed: true, MarkdownDescription: "File holding the password, if the inventory names one."},
					"cipher_suites": schema.ListAttribute{Computed: true, ElementType: types.Int64Type, MarkdownDescription: "Cipher suites tried in order."},
				},
			},
		}},
	}
	attrs["etcd"] = etcdSchema()
	attrs["control_plane"] = membersSchema("Servers running the control plane.")
	attrs["stacked_control_plane"] = schema.BoolAttribute{Computed: true, MarkdownDescription: "True when no server has the control-plane role and the etcd members run it."}
	attrs["ipam"] = schema.SingleNestedAttribute{
		Computed:            true,
		MarkdownDescription: "The cluster-wide IP plan.",
		Attributes: map[string]schema.Attribute{
			"pod_cidr":              schema.StringAttribute{Computed: true, MarkdownDescription: "Cluster pod CIDR."},
			"pod_mask_size":         schema.Int64Attribute{Computed: true, MarkdownDescription: "Prefix length of each node's pod CIDR."},
			"service_cidr":          schema.StringAttribute{Computed: true, MarkdownDescription: "Service CIDR."},
			"kubernetes_service_ip": schema.StringAttribute{Computed: true, MarkdownDescription: "Address of the `kubernetes` Service."},
			"cluster_dns_ip":        schema.StringAttribute{Computed: true, MarkdownDescription: "Address of the cluster DNS Service."},
			"api_vip":               schema.StringAttribute{Computed: true, MarkdownDescription: "Kubernetes API virtual IP announced over BGP."},
			"load_balancer_pool":    schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "LoadBalancer pool ranges."},
			"load_balancer_free":    schema.Int64Attribute{Computed: true, MarkdownDescription: "Pool addresses left for services (capped at the largest 64-bit integer)."},
		},
	}
	attrs["warnings"] = schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Validation warnings (also reported as Terraform warnings)."}
	attrs["model_json"] = schema.StringAttribute{Computed: true, MarkdownDescription: "The validated inventory with its defaults applied, as JSON (`jsondecode` it). Secrets appear only as references."}
	attrs["plan_json"] = schema.StringAttribute{Computed: true, MarkdownDescription: "The plan as `tricenter plan -o json` prints it for a first apply (placement, IPAM, failure domains), as JSON."}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a tricenter inventory (a file or inline YAML), validates it and exposes the model, the etcd and " +
			"control-plane placement and the IP plan, exactly as `tricenter plan` computes them for a first apply. Purely local: " +
			"no network access. Validation problems are reported with the inventory field path and YAML line.",
		Attributes: attrs,
	}
}

// sourceAttributes are the inventory inputs shared by the data sources.
func sourceAttributes() map[string]schema.Attribute {
	return map[string]schema.Attribute{
		"path": schema.StringAttribute{
			Optional:            true,
			MarkdownDescription: "Path of the inventory file (apiVersion `" + inventory.APIVersion + "`, kind `" + inventory.Kind + "`). Exactly one of `path` and `yaml`.",
			Validators: []validator.String{
				stringvalidator.LengthAtLeast(1),
				stringvalidator.ExactlyOneOf(path.MatchRoot("path"), path.MatchRoot("yaml")),
			},
		},
		"yaml": schema.StringAttribute{
			Optional:            true,
			MarkdownDescription: "The inventory document inline, e.g. from `file()` or `templatefile()`.",
			Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
		},
	}
}

func membersSchema(desc string) schema.ListNestedAttribute {
	return schema.ListNestedAttribute{
		Computed:            true,
		MarkdownDescription: desc,
		NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
			"name":    schema.StringAttribute{Computed: true, MarkdownDescription: "Server name."},
			"site":    schema.StringAttribute{Computed: true, MarkdownDescription: "Site of the server."},
			"center":  schema.StringAttribute{Computed: true, MarkdownDescription: "Center of the server."},
			"rack":    schema.StringAttribute{Computed: true, MarkdownDescription: "Rack of the server."},
			"address": schema.StringAttribute{Computed: true, MarkdownDescription: "Node address."},
		}},
	}
}

func etcdSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Computed:            true,
		MarkdownDescription: "Where etcd runs and which failures it survives.",
		Attributes: map[string]schema.Attribute{
			"count":                schema.Int64Attribute{Computed: true, MarkdownDescription: "Number of members."},
			"quorum":               schema.Int64Attribute{Computed: true, MarkdownDescription: "Members needed for quorum."},
			"per_center":           schema.MapAttribute{Computed: true, ElementType: types.Int64Type, MarkdownDescription: "Members by center name."},
			"members":              membersSchema("The members with their site, center and rack."),
			"heartbeat_ms":         schema.Int64Attribute{Computed: true, MarkdownDescription: "Raft heartbeat interval in milliseconds."},
			"election_timeout_ms":  schema.Int64Attribute{Computed: true, MarkdownDescription: "Raft election timeout in milliseconds."},
			"max_rtt_ms":           schema.Float64Attribute{Computed: true, MarkdownDescription: "Largest inter-center RTT the timers were derived from."},
			"timers_source":        schema.StringAttribute{Computed: true, MarkdownDescription: "`derived` (from the RTTs) or `override` (set in `spec.etcd`)."},
			"survives_center_loss": schema.BoolAttribute{Computed: true, MarkdownDescription: "Losing any one center keeps quorum."},
			"local_site_quorum":    schema.BoolAttribute{Computed: true, MarkdownDescription: "The site with two centers holds a quorum alone, so commits never wait on the remote center."},
			"degraded":             schema.BoolAttribute{Computed: true, MarkdownDescription: "The placement breaks an invariant, accepted by `allowDegradedPlacement`."},
			"failure_domains": schema.ListNestedAttribute{
				Computed:            true,
				MarkdownDescription: "For every center, site and rack: the members its loss takes away and whether quorum survives.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"kind":        schema.StringAttribute{Computed: true, MarkdownDescription: "`center`, `site` or `rack`."},
					"name":        schema.StringAttribute{Computed: true, MarkdownDescription: "Name of the center, site or rack."},
					"lost":        schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Members lost with it."},
					"remaining":   schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: "Members left."},
					"quorum_kept": schema.BoolAttribute{Computed: true, MarkdownDescription: "Whether the remaining members hold a quorum."},
					"note":        schema.StringAttribute{Computed: true, MarkdownDescription: "What a lost quorum means and how to recover or fix it."},
				}},
			},
		},
	}
}

func (d *inventoryDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	src, diags := readSource(ctx, req.Config)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	c, p, diags := planInventory(src)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	m, err := inventoryModel(c, p)
	if err != nil {
		resp.Diagnostics.AddError("Cannot render the inventory", err.Error())
		return
	}
	m.Path, m.YAML = src.pathValue, src.yamlValue
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// inventorySource is where an inventory comes from: a file or inline YAML.
type inventorySource struct {
	pathValue, yamlValue types.String
	// attr is the attribute diagnostics point at.
	attr path.Path
	// name is how messages name the document.
	name string
}

func readSource(ctx context.Context, cfg tfsdk.Config) (inventorySource, diag.Diagnostics) {
	var s inventorySource
	var diags diag.Diagnostics
	diags.Append(cfg.GetAttribute(ctx, path.Root("path"), &s.pathValue)...)
	diags.Append(cfg.GetAttribute(ctx, path.Root("yaml"), &s.yamlValue)...)
	if diags.HasError() {
		return s, diags
	}
	switch {
	case !s.pathValue.IsNull():
		s.attr, s.name = path.Root("path"), s.pathValue.ValueString()
	case !s.yamlValue.IsNull():
		s.attr, s.name = path.Root("yaml"), "the inline inventory"
	default:
		diags.AddAttributeError(path.Root("path"), "No inventory", "Set path (an inventory file) or yaml (the document inline).")
	}
	return s, diags
}

// load reads, parses and defaults the inventory, without validating.
func (s inventorySource) load() (*inventory.Cluster, *inventory.Lines, diag.Diagnostics) {
	var diags diag.Diagnostics
	var c *inventory.Cluster
	var lines *inventory.Lines
	var err error
	if s.attr.Equal(path.Root("path")) {
		c, lines, err = inventory.Load(s.pathValue.ValueString())
	} else {
		c, lines, err = inventory.Parse([]byte(s.yamlValue.ValueString()))
	}
	if err != nil {
		diags.AddAttributeError(s.attr, "Cannot read the inventory", fmt.Sprintf("%s: %v", s.name, err))
		return nil, nil, diags
	}
	return c, lines, diags
}

// planInventory loads and validates the inventory and derives the plan
// the way `tricenter plan` does on a first apply. Every validation
// problem becomes a diagnostic on the source attribute that names the
// inventory field path and its line.
func planInventory(s inventorySource) (*inventory.Cluster, *inventory.Plan, diag.Diagnostics) {
	c, lines, diags := s.load()
	if diags.HasError() {
		return nil, nil, diags
	}
	res := c.Validate(lines)
	if !res.OK() {
		diags.Append(problemDiags(s, res.Errors, res.Warnings)...)
		return nil, nil, diags
	}
	p, err := inventory.BuildPlan(c, lines, nil)
	if err != nil {
		diags.AddAttributeError(s.attr, "Invalid inventory", fmt.Sprintf("%s: %v", s.name, err))
		return nil, nil, diags
	}
	diags.Append(problemDiags(s, nil, p.Warnings)...)
	return c, p, diags
}

// problemDiags turns validation problems into diagnostics. The summary
// names the inventory field; the detail adds the line and the fix.
func problemDiags(s inventorySource, errs, warns []inventory.Problem) diag.Diagnostics {
	var diags diag.Diagnostics
	detail := func(p inventory.Problem) string {
		if p.Line > 0 {
			return fmt.Sprintf("%s, line %d, %s: %s", s.name, p.Line, p.Path, p.Message)
		}
		return fmt.Sprintf("%s, %s: %s", s.name, p.Path, p.Message)
	}
	for _, p := range errs {
		diags.AddAttributeError(s.attr, "Invalid inventory: "+p.Path, detail(p))
	}
	for _, p := range warns {
		diags.AddAttributeWarning(s.attr, "Inventory warning: "+p.Path, detail(p))
	}
	return diags
}

// inventoryModel translates a cluster and its plan into the data source's
// attributes.
func inventoryModel(c *inventory.Cluster, p *inventory.Plan) (inventoryDataSourceModel, error) {
	m := inventoryDataSourceModel{
		ID:          types.StringValue(c.Metadata.Name),
		ClusterName: c.Metadata.Name,
		Summary: summaryModel{
			Sites: int64(p.Summary.Sites), Centers: int64(p.Summary.Centers),
			Racks: int64(p.Summary.Racks), Servers: int64(p.Summary.Servers),
		},
		Centers:             []centerModel{},
		Servers:             map[string]serverModel{},
		Etcd:                etcdModelOf(p.Etcd),
		ControlPlane:        membersOf(p.ControlPlane),
		StackedControlPlane: p.Stacked,
		Warnings:            []string{},
	}
	for _, ctr := range p.Centers {
		cm := centerModel{Name: ctr.Name, Site: ctr.Site, Role: string(ctr.Role), Racks: []string{}}
		for _, r := range ctr.Racks {
			cm.Racks = append(cm.Racks, r.Name)
		}
		m.Centers = append(m.Centers, cm)
	}
	pl := p.Placement()
	for _, h := range c.Hosts() {
		sm := serverModel{
			Name: h.Name, Rack: h.Rack.Name, Address: h.SSH.Address,
			Roles:        []string{},
			Etcd:         pl.IsEtcdMember(h.Name),
			ControlPlane: pl.IsControlPlane(h.Name),
			Labels:       h.Labels,
		}
		if h.Center != nil {
			sm.Center = h.Center.Name
		}
		if h.Site != nil {
			sm.Site = h.Site.Name
		}
		for _, r := range h.Roles {
			sm.Roles = append(sm.Roles, string(r))
		}
		if cidr, ok := p.IPs().PodCIDR(h.Name); ok {
			sm.PodCIDR = cidr.String()
		}
		if b := h.BMC; b != nil {
			sm.BMC = &serverBMCModel{
				Address: b.Address, Port: int64(b.Port), User: b.User,
				PasswordEnv: optString(b.Password.Env), PasswordFile: optString(b.Password.File),
				CipherSuites: int64sOf(b.CipherSuites),
			}
		}
		m.Servers[h.Name] = sm
	}
	ip := p.IPAM
	m.IPAM = ipamModel{
		PodCIDR: ip.PodCIDR, PodMaskSize: int64(ip.PodMaskSize), ServiceCIDR: ip.ServiceCIDR,
		KubernetesServiceIP: ip.KubernetesServiceIP, ClusterDNSIP: ip.ClusterDNSIP, APIVIP: ip.APIVIP,
		LoadBalancerPool: append([]string{}, ip.LoadBalancerPool...),
		LoadBalancerFree: int64(min(ip.LoadBalancerFree, math.MaxInt64)),
	}
	for _, w := range p.Warnings {
		m.Warnings = append(m.Warnings, w.String())
	}
	model, err := json.Marshal(c)
	if err != nil {
		return m, fmt.Errorf("encoding the inventory model: %w", err)
	}
	plan, err := json.Marshal(p)
	if err != nil {
		return m, fmt.Errorf("encoding the plan: %w", err)
	}
	m.ModelJSON, m.PlanJSON = string(model), string(plan)
	return m, nil
}

func etcdModelOf(e inventory.EtcdPlan) etcdModel {
	m := etcdModel{
		Count: int64(e.Count), Quorum: int64(e.Quorum),
		PerCenter:         map[string]int64{},
		Members:           membersOf(e.Members),
		HeartbeatMs:       int64(e.Timers.HeartbeatMs),
		ElectionTimeoutMs: int64(e.Timers.ElectionTimeoutMs),
		MaxRTTMs:          e.Timers.MaxRTTMs, TimersSource: e.Timers.Source,
		SurvivesCenterLoss: e.SurvivesCenterLoss, LocalSiteQuorum: e.LocalSiteQuorum,
		Degraded: e.Degraded, FailureDomains: []failureDomainModel{},
	}
	for k, v := range e.PerCenter {
		m.PerCenter[k] = int64(v)
	}
	for _, fd := range e.FailureDomains {
		m.FailureDomains = append(m.FailureDomains, failureDomainModel{
			Kind: fd.Kind, Name: fd.Name, QuorumKept: fd.QuorumKept, Note: fd.Note,
			Lost: append([]string{}, fd.Lost...), Remaining: append([]string{}, fd.Remaining...),
		})
	}
	return m
}

func membersOf(ms []inventory.Member) []memberModel {
	out := make([]memberModel, 0, len(ms))
	for _, x := range ms {
		out = append(out, memberModel{Name: x.Name, Site: x.Site, Center: x.Center, Rack: x.Rack, Address: x.Address})
	}
	return out
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func int64sOf(xs []int) []int64 {
	out := make([]int64, len(xs))
	for i, x := range xs {
		out[i] = int64(x)
	}
	return out
}
