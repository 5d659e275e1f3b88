package provider

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Default timeouts of tricenter_node, overridden by its timeouts block.
const (
	DefaultNodeCreateTimeout = 20 * time.Minute
	DefaultNodeReadTimeout   = 2 * time.Minute
	DefaultNodeUpdateTimeout = 20 * time.Minute
	DefaultNodeDeleteTimeout = 15 * time.Minute
)

// nodeComponents are what joining one worker runs: its BGP agent, its
// node agents and its labels and taints.
var nodeComponents = []string{string(installer.BGP), string(installer.Nodes), string(installer.Addons)}

var (
	_ resource.ResourceWithConfigure    = (*nodeResource)(nil)
	_ resource.ResourceWithModifyPlan   = (*nodeResource)(nil)
	_ resource.ResourceWithImportState  = (*nodeResource)(nil)
	_ resource.ResourceWithUpgradeState = (*nodeResource)(nil)
)

// NewNodeResource returns the tricenter_node resource.
func NewNodeResource() resource.Resource { return &nodeResource{} }

type nodeResource struct {
	data *providerData
}

type nodeResourceModel struct {
	ID             types.String   `tfsdk:"id"`
	Server         types.String   `tfsdk:"server"`
	Path           types.String   `tfsdk:"path"`
	YAML           types.String   `tfsdk:"yaml"`
	ClusterState   types.String   `tfsdk:"cluster_state"`
	State          types.String   `tfsdk:"state"`
	Center         types.String   `tfsdk:"center"`
	Rack           types.String   `tfsdk:"rack"`
	PodCIDR        types.String   `tfsdk:"pod_cidr"`
	ChangedHosts   types.List     `tfsdk:"changed_hosts"`
	Gates          types.List     `tfsdk:"gates"`
	Ready          types.Bool     `tfsdk:"ready"`
	Problems       types.List     `tfsdk:"problems"`
	Timeouts       timeouts.Value `tfsdk:"timeouts"`
	WaitReachable  types.String   `tfsdk:"wait_reachable"`
	RenewDue       types.Bool     `tfsdk:"certificates_renew_due"`
	EarliestExpiry types.String   `tfsdk:"earliest_certificate_expiry"`
}

// ownFiles are the node's own files of the engine state run holds now
// (its certificates and keys, not the cluster's).
func ownFiles(run *engineRun) map[string]string {
	if len(run.inputs) == 0 {
		return run.files()
	}
	return nodeFiles(run.inputs[0], run.files())
}

func (m nodeResourceModel) input() inventoryInput { return inventoryInput{Path: m.Path, YAML: m.YAML} }

// engineRequest builds the engine over the cluster's state with this
// node's files on top.
func (m nodeResourceModel) engineRequest() engineRequest {
	return engineRequest{Inventory: m.input(), States: []stateInput{
		{Value: m.ClusterState, Attr: path.Root("cluster_state"), What: "cluster state"},
		{Value: m.State, Attr: path.Root("state"), What: "node state"},
	}, FollowReleases: true, PKISubdir: filepath.Join("nodes", m.Server.ValueString())}
}

// configured reports whether the inventory is known: false right after an
// import, before a plan with the configuration.
func (m nodeResourceModel) configured() bool { return !m.Path.IsNull() || !m.YAML.IsNull() }

func (r *nodeResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_node"
}

func (r *nodeResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Version: nodeSchemaVersion,
		MarkdownDescription: "One worker of a `tricenter_cluster`, joined on its own: its BGP agent (announcing its pod CIDR), " +
			"containerd, kubelet and kube-proxy, and its labels and taints. **Create** runs the engine for this server " +
			"only (components `" + strings.Join(nodeComponents, "`, `") + "`): no other server is touched. **Refresh** " +
			"reads the Node from the API and the agent's BGP sessions: a Node that is gone or not Ready, or a session not " +
			"Established, sets `ready = false` and the next plan shows an update that converges it; an unreachable API " +
			"gives a warning and keeps the last state. **Destroy** drains the Node, deletes it, stops the node agents " +
			"and the BGP agent (the routers withdraw the pod CIDR) and removes their files.\n\n" +
			"Key node resources by server name with `for_each` over a map or set, never `count` over a list: then adding " +
			"or removing one never shifts another. List the same names in the cluster's `node_servers` so the cluster " +
			"leaves them to these resources. The server must be a worker: etcd members and control-plane servers belong " +
			"to the cluster.\n\n" +
			"The node runs the Kubernetes and etcd releases its cluster's `state` records (the cluster's " +
			"`kubernetes_version` or the inventory's, as its last apply or upgrade left it), not the inventory's: an " +
			"upgrade of the cluster drains and upgrades these workers with the rest, one at a time, and the node's " +
			"update that follows changes nothing.\n\n" +
			"**Import** takes the server name (`terraform import tricenter_node.NAME SERVER`): the next plan fills in " +
			"what the configuration says and shows an update, and that apply converges with no change on the server " +
			"(the kubelet certificates the server holds, signed by the cluster's CA, are kept).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The server name.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"server": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "Name of the worker in the inventory (typically `each.key`). Changing it replaces the resource.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"path": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Path of the inventory file, the cluster's. Exactly one of `path` and `yaml`.",
				Validators: []validator.String{
					stringvalidator.LengthAtLeast(1),
					stringvalidator.ExactlyOneOf(path.MatchRoot("path"), path.MatchRoot("yaml")),
				},
			},
			"yaml": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "The inventory document inline, the cluster's.",
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"wait_reachable": waitReachableAttribute(),
			"cluster_state": schema.StringAttribute{
				Required:  true,
				Sensitive: true,
				MarkdownDescription: "The cluster's engine state: `tricenter_cluster.<name>.state`. Referring to it orders the node after " +
					"the cluster and shares its PKI and allocations.",
			},
			"state": schema.StringAttribute{
				Computed:  true,
				Sensitive: true,
				MarkdownDescription: "What joining this node added to the cluster's engine state (its certificates and keys), in the format of the cluster's `state`. " +
					"When the cluster's `pki_dir` is set they are written to `nodes/<server>` under that directory and this attribute holds only their fingerprints.",
			},
			"center": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "Center of the server (its Kubernetes zone).",
			},
			"rack": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "Rack of the server.",
			},
			"pod_cidr": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "Pod CIDR of the node, announced by its BGP agent.",
			},
			"changed_hosts": schema.ListAttribute{
				Computed:            true,
				ElementType:         types.StringType,
				MarkdownDescription: "Servers the last apply changed something on: only this one.",
			},
			"gates": schema.ListAttribute{
				Computed:            true,
				ElementType:         types.StringType,
				MarkdownDescription: "The verification gates of the last apply: `name: ok|FAILED (detail)`.",
			},
			"ready": schema.BoolAttribute{
				Computed:            true,
				MarkdownDescription: "Whether the last refresh found the Node Ready and the agent's BGP sessions Established.",
			},
			"problems": schema.ListAttribute{
				Computed:            true,
				ElementType:         types.StringType,
				MarkdownDescription: "What the last refresh found not as planned.",
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{
				Create: true, Read: true, Update: true, Delete: true,
				CreateDescription: fmt.Sprintf("How long joining may take, gates included (default %s).", DefaultNodeCreateTimeout),
				ReadDescription:   fmt.Sprintf("How long a refresh may take (default %s).", DefaultNodeReadTimeout),
				UpdateDescription: fmt.Sprintf("How long a re-converging update may take (default %s).", DefaultNodeUpdateTimeout),
				DeleteDescription: fmt.Sprintf("How long draining and removal may take (default %s).", DefaultNodeDeleteTimeout),
			}),
		},
	}
	maps.Copy(resp.Schema.Attributes, renewalAttributes("this node's own kubelet"))
}

func (r *nodeResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// checkWorker refuses a server that is not in the inventory or that the
// placement gives etcd or the control plane.
func checkWorker(c *inventory.Cluster, p *inventory.Placement, name string) diag.Diagnostics {
	var diags diag.Diagnostics
	switch {
	case !hasHost(c, name):
		diags.AddAttributeError(path.Root("server"), "Unknown server",
			fmt.Sprintf("%q is not in the inventory: add it to a rack first.", name))
	case p.IsEtcdMember(name) || p.IsControlPlane(name):
		diags.AddAttributeError(path.Root("server"), "Not a worker",
			fmt.Sprintf("%q is an etcd member or control-plane server in the placement: it is part of tricenter_cluster, not a tricenter_node.", name))
	}
	return diags
}

// engine builds the engine over the cluster's state with this node's
// files on top, and checks the server is one of its workers.
func (r *nodeResource) engine(ctx context.Context, m nodeResourceModel) (*engineRun, diag.Diagnostics) {
	run, diags := openEngine(ctx, r.data, m.engineRequest())
	if diags.HasError() {
		return nil, diags
	}
	diags.Append(checkWorker(run.eng.Cluster(), run.eng.Placement(), m.Server.ValueString())...)
	if diags.HasError() {
		run.Close()
		return nil, diags
	}
	return run, diags
}

func (r *nodeResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan, prior nodeResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if !req.State.Raw.IsNull() {
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	}
	if resp.Diagnostics.HasError() || plan.input().unknown() || plan.Server.IsUnknown() {
		return
	}
	name := plan.Server.ValueString()
	c, _, diags := loadCluster(plan.input(), r.data)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	h, ok := c.Host(name)
	if !ok {
		resp.Diagnostics.AddAttributeError(path.Root("server"), "Unknown server", fmt.Sprintf("%q is not in the inventory: add it to a rack first.", name))
		return
	}
	plan.ID = types.StringValue(name)
	plan.Center = types.StringValue(h.Center.Name)
	plan.Rack = types.StringValue(h.Rack.Name)
	plan.Ready = types.BoolValue(true)
	if !plan.ClusterState.IsUnknown() {
		run, d := r.engine(ctx, plan)
		resp.Diagnostics.Append(d...)
		if resp.Diagnostics.HasError() {
			return
		}
		if cidr, ok := run.eng.IPs().PodCIDR(name); ok {
			plan.PodCIDR = types.StringValue(cidr.String())
		}
		if msg := planRenewal(prior.RenewDue, false, nodeRenewal(ownFiles(run), run.eng.Cluster(), r.data.now()),
			&plan.RenewDue, &plan.EarliestExpiry); msg != "" && !req.State.Raw.IsNull() {
			resp.Diagnostics.AddAttributeWarning(path.Root(attrRenewDue), "This update renews "+name+"'s certificates", msg)
		}
		run.Close()
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() || req.State.Raw.IsNull() || resp.Plan.Raw.Equal(req.State.Raw) {
		return
	}
	plan.RenewDue = types.BoolUnknown()
	plan.EarliestExpiry = types.StringUnknown()
	plan.State = types.StringUnknown()
	plan.ChangedHosts = types.ListUnknown(types.StringType)
	plan.Gates = types.ListUnknown(types.StringType)
	plan.Problems = types.ListUnknown(types.StringType)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func (r *nodeResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m nodeResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Create, DefaultNodeCreateTimeout, &resp.Diagnostics, func(ctx context.Context) {
		m.State = types.StringNull()
		if !r.apply(ctx, &m, false, &resp.Diagnostics) {
			return // nothing was done: no state to keep
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	})
}

func (r *nodeResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior nodeResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Update, DefaultNodeUpdateTimeout, &resp.Diagnostics, func(ctx context.Context) {
		m.State = prior.State
		// An imported node has no state of its own yet: keep the kubelet
		// certificates its server holds rather than issue new ones.
		imported := prior.State.IsNull() || prior.State.ValueString() == ""
		if !r.apply(ctx, &m, imported, &resp.Diagnostics) {
			// The engine did not run: the state stays as it was.
			resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
			return
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	})
}

// apply joins (or re-converges) the one server and records in m what it
// did; the node's own files are kept even when the apply fails. adopt
// first keeps the kubelet certificates the server holds (an imported
// node). It reports whether m was filled (false: the engine did not run).
func (r *nodeResource) apply(ctx context.Context, m *nodeResourceModel, adopt bool, diags *diag.Diagnostics) bool {
	run, d := r.engine(ctx, *m)
	diags.Append(d...)
	if diags.HasError() {
		return false
	}
	defer run.Close()
	e := run.eng
	name := m.Server.ValueString()
	if adopt {
		adopted, err := e.AdoptNodeCertificates(ctx, name)
		if err != nil {
			tflog.Info(ctx, "Kubelet certificates not adopted: the apply issues them", map[string]any{"server": name, "reason": err.Error()})
		} else if len(adopted) > 0 {
			tflog.Info(ctx, "Kept the kubelet certificates the server holds", map[string]any{"server": name, "certificates": adopted})
		}
	}
	tflog.Info(ctx, "Joining the node", map[string]any{"server": name})
	res, applyErr := e.Apply(ctx, installer.Options{Only: nodeComponents, Servers: []string{name}, WaitReachable: waitReachable(m.WaitReachable)})
	st, err := run.stateValue(func(after map[string]string) map[string]string { return nodeFiles(run.inputs[0], after) })
	if err != nil {
		diags.AddError("Cannot save the node's engine state", err.Error())
		return false
	}
	h, _ := e.Cluster().Host(name)
	m.ID = types.StringValue(name)
	m.State = st
	m.Center = types.StringValue(h.Center.Name)
	m.Rack = types.StringValue(h.Rack.Name)
	m.PodCIDR = types.StringNull()
	if cidr, ok := e.IPs().PodCIDR(name); ok {
		m.PodCIDR = types.StringValue(cidr.String())
	}
	m.ChangedHosts = stringList(changedHosts(res))
	m.Gates = stringList(gateLines(res))
	applyRenewal(nodeRenewal(ownFiles(run), e.Cluster(), r.data.now()), &m.RenewDue, &m.EarliestExpiry)
	if applyErr != nil {
		m.Ready = types.BoolValue(false)
		m.Problems = stringList([]string{applyErr.Error()})
		diags.AddError("Joining "+name+" failed", engineErrorDetail("joining "+name, applyErr)+" What was done so far is saved.")
		return true
	}
	m.Ready = types.BoolValue(true)
	m.Problems = stringList(nil)
	return true
}

// nodeFiles keeps what a node's apply added to or changed in the PKI;
// prior.json stays the cluster's.
func nodeFiles(base, after map[string]string) map[string]string {
	out := diffFiles(base, after)
	for k := range out {
		if !strings.HasPrefix(k, "pki/") {
			delete(out, k)
		}
	}
	return out
}

func (r *nodeResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m nodeResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !m.configured() {
		// Just imported: nothing tells which inventory and cluster the
		// server belongs to until a plan brings the configuration.
		return
	}
	withTimeout(ctx, m.Timeouts.Read, DefaultNodeReadTimeout, &resp.Diagnostics, func(ctx context.Context) {
		run, d := r.engine(ctx, m)
		if d.HasError() {
			resp.Diagnostics.AddWarning("Node not checked", "The node's inventory or state cannot be used, so the last state is kept: "+summary(d))
			return
		}
		defer run.Close()
		// Its certificates are judged from the state (no host), whether
		// or not the node answers.
		readRenewal(nodeRenewal(ownFiles(run), run.eng.Cluster(), r.data.now()), &m.RenewDue, &m.EarliestExpiry, &resp.Diagnostics)
		rep := run.eng.ObserveNode(ctx, m.Server.ValueString())
		if !rep.Reached {
			resp.Diagnostics.AddWarning("Node not checked", strings.Join(rep.Problems, "; ")+". The last state is kept.")
			resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
			return
		}
		m.Ready = types.BoolValue(len(rep.Problems) == 0)
		m.Problems = stringList(rep.Problems)
		if len(rep.Problems) > 0 {
			resp.Diagnostics.AddWarning("Node "+m.Server.ValueString()+" is not as planned", strings.Join(rep.Problems, "; "))
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	})
}

func (r *nodeResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m nodeResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Delete, DefaultNodeDeleteTimeout, &resp.Diagnostics, func(ctx context.Context) {
		run, d := r.engine(ctx, m)
		resp.Diagnostics.Append(d...)
		if resp.Diagnostics.HasError() {
			return
		}
		defer run.Close()
		name := m.Server.ValueString()
		tflog.Info(ctx, "Removing the node", map[string]any{"server": name})
		if _, err := run.eng.Reset(ctx, installer.Options{Servers: []string{name}}); err != nil {
			resp.Diagnostics.AddError("Removing "+name+" failed", engineErrorDetail("removing "+name, err)+
				" The resource stays in state; destroy again to continue.")
		}
	})
}

// serverName is what a server's name looks like in an inventory (a DNS
// label).
var serverName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ImportState takes the server's name: `terraform import
// tricenter_node.NAME SERVER`. The rest comes with the next plan.
func (r *nodeResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if !serverName.MatchString(req.ID) {
		resp.Diagnostics.AddError("Invalid import ID",
			fmt.Sprintf("%q: use the name of the worker in the inventory, e.g. `terraform import tricenter_node.dc1_r01_w01 dc1-r01-w01` "+
				"(a server name: lowercase letters, digits and '-', at most 63).", req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("server"), req.ID)...)
}
