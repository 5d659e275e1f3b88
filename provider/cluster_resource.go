package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
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
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Default timeouts of tricenter_cluster, overridden by its timeouts block.
const (
	DefaultClusterCreateTimeout = 60 * time.Minute
	DefaultClusterReadTimeout   = 3 * time.Minute
	DefaultClusterUpdateTimeout = 60 * time.Minute
	DefaultClusterDeleteTimeout = 30 * time.Minute
)

var (
	_ resource.ResourceWithConfigure      = (*clusterResource)(nil)
	_ resource.ResourceWithImportState    = (*clusterResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*clusterResource)(nil)
	_ resource.ResourceWithUpgradeState   = (*clusterResource)(nil)
	_ resource.ResourceWithValidateConfig = (*clusterResource)(nil)
)

// NewClusterResource returns the tricenter_cluster resource.
func NewClusterResource() resource.Resource { return &clusterResource{} }

type clusterResource struct {
	data *providerData
}

type clusterResourceModel struct {
	ID              types.String   `tfsdk:"id"`
	Path            types.String   `tfsdk:"path"`
	YAML            types.String   `tfsdk:"yaml"`
	Components      types.List     `tfsdk:"components"`
	SkipPhases      types.List     `tfsdk:"skip_phases"`
	KubeVersion     types.String   `tfsdk:"kubernetes_version"`
	NodeServers     types.Set      `tfsdk:"node_servers"`
	InventorySHA256 types.String   `tfsdk:"inventory_sha256"`
	State           types.String   `tfsdk:"state"`
	Kubeconfig      types.String   `tfsdk:"kubeconfig"`
	CACertificate   types.String   `tfsdk:"ca_certificate"`
	APIServerURL    types.String   `tfsdk:"api_server_url"`
	EtcdMembers     types.Map      `tfsdk:"etcd_members"`
	EtcdPerCenter   types.Map      `tfsdk:"etcd_members_per_center"`
	Gates           types.List     `tfsdk:"gates"`
	ChangedHosts    types.List     `tfsdk:"changed_hosts"`
	Healthy         types.Bool     `tfsdk:"healthy"`
	Problems        types.List     `tfsdk:"problems"`
	Timeouts        timeouts.Value `tfsdk:"timeouts"`
	WaitReachable   types.String   `tfsdk:"wait_reachable"`
	AcceptRisk      types.Bool     `tfsdk:"accept_transient_risk"`
	PKIDir          types.String   `tfsdk:"pki_dir"`
	RenewDue        types.Bool     `tfsdk:"certificates_renew_due"`
	EarliestExpiry  types.String   `tfsdk:"earliest_certificate_expiry"`
	RestoreFrom     types.String   `tfsdk:"restore_from"`
}

// restoreFrom is the snapshot restore_from names ("" for the newest) and
// whether it is set.
func (m clusterResourceModel) restoreFrom() (string, bool) {
	if m.RestoreFrom.IsNull() || m.RestoreFrom.IsUnknown() {
		return "", false
	}
	if v := m.RestoreFrom.ValueString(); v != restoreNewest {
		return v, true
	}
	return "", true
}

// restoreNewest is restore_from's value for the newest good snapshot.
const restoreNewest = "newest"

func (m clusterResourceModel) input() inventoryInput {
	return inventoryInput{Path: m.Path, YAML: m.YAML}
}

// nodeServers is node_servers as a sorted slice.
func (m clusterResourceModel) nodeServers(ctx context.Context) ([]string, diag.Diagnostics) {
	var out []string
	if m.NodeServers.IsNull() || m.NodeServers.IsUnknown() {
		return out, nil
	}
	diags := m.NodeServers.ElementsAs(ctx, &out, false)
	sort.Strings(out)
	return out, diags
}

func (m clusterResourceModel) components(ctx context.Context) ([]string, diag.Diagnostics) {
	return stringsOf(ctx, m.Components)
}

func (m clusterResourceModel) skipPhases(ctx context.Context) ([]string, diag.Diagnostics) {
	return stringsOf(ctx, m.SkipPhases)
}

// partial reports whether the configuration limits what apply runs.
func (m clusterResourceModel) partial() bool { return !m.Components.IsNull() || !m.SkipPhases.IsNull() }

// engineRequest builds the engine from this configuration with the
// engine state st.
func (m clusterResourceModel) engineRequest(st types.String) engineRequest {
	r := engineRequest{Inventory: m.input(), States: []stateInput{{Value: st, Attr: path.Root("state"), What: "engine state"}},
		VersionAttr: path.Root("kubernetes_version")}
	if !m.KubeVersion.IsNull() && !m.KubeVersion.IsUnknown() {
		r.KubernetesVersion = m.KubeVersion.ValueString()
	}
	if !m.PKIDir.IsUnknown() {
		dir := m.PKIDir.ValueString() // null: in the state
		r.PKIDir = &dir
	}
	return r
}

// pkiOutside reports whether pki_dir keeps the PKI out of the state.
func (m clusterResourceModel) pkiOutside() bool {
	return !m.PKIDir.IsNull() && m.PKIDir.ValueString() != ""
}

// stringsOf is a list of strings as a slice (nil when null or unknown).
func stringsOf(ctx context.Context, l types.List) ([]string, diag.Diagnostics) {
	var out []string
	if l.IsNull() || l.IsUnknown() {
		return out, nil
	}
	diags := l.ElementsAs(ctx, &out, false)
	return out, diags
}

func (r *clusterResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster"
}

func componentNames() []string {
	var out []string
	for _, c := range installer.Components() {
		out = append(out, string(c))
	}
	return out
}

// phaseIDsMarkdown lists the engine's phase IDs, in order, for the schema.
func phaseIDsMarkdown() string { return "`" + strings.Join(installer.PhaseIDs(), "`, `") + "`" }

// selectionValidator checks each element is a name the engine selects
// (a component, or a phase ID that is not preflight), as
// installer.CheckSelection does; ValidateConfig checks the combination.
type selectionValidator struct{}

var _ validator.List = selectionValidator{}

func (v selectionValidator) Description(context.Context) string {
	return "each element is a component or a phase ID the engine selects"
}

func (v selectionValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v selectionValidator) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	var names []types.String
	resp.Diagnostics.Append(req.ConfigValue.ElementsAs(ctx, &names, true)...)
	if resp.Diagnostics.HasError() {
		return
	}
	for i, n := range names {
		if n.IsUnknown() || n.IsNull() {
			continue
		}
		if err := checkSelectable(n.ValueString()); err != nil {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Unknown component or phase", err.Error()+".")
		}
	}
}

// checkSelectable is installer.CheckSelection of one name: known, and not
// a phase that runs on every apply.
func checkSelectable(name string) error {
	err := installer.CheckSelection([]string{name}, nil)
	if u := errors.Unwrap(err); u != nil {
		return u // without Select's "only: "
	}
	return err
}

func (r *clusterResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	strList := func(desc string) schema.ListAttribute {
		return schema.ListAttribute{Computed: true, ElementType: types.StringType, MarkdownDescription: desc}
	}
	resp.Schema = schema.Schema{
		Version: clusterSchemaVersion,
		MarkdownDescription: "The Kubernetes cluster of one inventory: PKI, etcd across the three centers, the BGP agents, " +
			"the control plane, the node agents and the add-ons, built by the same engine as `tricenter apply`.\n\n" +
			"**Create and update** run the engine over the whole inventory (or the `components` given) and then its " +
			"verification gates (etcd quorum per center, `/readyz` through the API VIP, nodes Ready, BGP sessions " +
			"Established, pod-to-pod traffic); etcd membership changes are quorum-safe, one member at a time. The plan " +
			"names the etcd members an update adds or removes, with the windows during which the loss of one center " +
			"would lose quorum (those need `accept_transient_risk`), and a change the placement rules forbid is refused at " +
			"plan time. **Refresh** observes the cluster (etcd members per center, the API through every control-plane " +
			"server and the VIP, the Nodes, the BGP agents): what is not as planned becomes `healthy = false` and " +
			"`problems` (and a warning), so the next plan shows an update that converges it again; an unreachable " +
			"center gives a warning, never an error, and the resource is never dropped from state for it. " +
			"**Destroy** resets every server in a quorum-safe order (node agents, API VIP and control plane, BGP agents, etcd last).\n\n" +
			"The engine's state (certificate authorities and keys, the last apply's allocations) is kept in the " +
			"Sensitive `state` attribute: protect the Terraform state as you would the cluster's CA (an encrypted, " +
			"access-controlled backend), or set `pki_dir` to keep the PKI in a directory and only its fingerprints in the state. " +
			"When an apply fails half-way the state reached so far is saved with the error, and the next apply continues " +
			"from it (after a failed *create* Terraform marks the resource tainted: `terraform untaint` it to continue " +
			"instead of resetting and rebuilding).\n\n" +
			"Workers listed in `node_servers` are left to `tricenter_node` resources (one per server, `for_each` over a " +
			"map or set keyed by server name), so adding one touches only that server.",
		Attributes: map[string]schema.Attribute{
			"wait_reachable": waitReachableAttribute(),
			"restore_from": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "After a disaster: `newest`, or a snapshot ID (`tricenter snapshot list`). When an apply finds " +
					"that no etcd member serves a linearizable read (etcd lost its quorum, e.g. with the local site), it restores " +
					"etcd from that snapshot instead of failing, as `tricenter restore` does: the newest good snapshot on the servers " +
					"left (or this one), rehearsed in a throw-away etcd first, rebuilt on the etcd members the inventory places now " +
					"(mark the lost centers `lost: true` and add replacement servers with new names and addresses), then the control " +
					"plane, a fence of the lost centers and a full apply. Writes after the snapshot are lost. While a quorum answers " +
					"it is ignored: leaving it set never restores a healthy cluster. The engine state (certificate authorities, " +
					"snapshot key) is this resource's `state`.",
				Validators: []validator.String{stringvalidator.RegexMatches(regexp.MustCompile(`^(newest|[A-Za-z0-9][A-Za-z0-9._-]*)$`),
					"must be newest or a snapshot ID")},
			},
			"accept_transient_risk": schema.BoolAttribute{
				Optional: true,
				MarkdownDescription: "Let an update run etcd membership changes that pass through states where the loss of one " +
					"center would lose quorum. Growing or shrinking etcd (3, 5, 7 members) and moving members between servers " +
					"pass through such windows (e.g. 3 → 5 has 4 voting members, 2 of them in one center, from the first " +
					"promotion until the second). The plan warns with each window (which step, which center, how long it may " +
					"last); without this attribute set to `true` the apply fails before any membership change.",
			},
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The cluster name (`metadata.name`).",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"path": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Path of the inventory file (apiVersion `" + inventory.APIVersion + "`, kind `" + inventory.Kind + "`). Exactly one of `path` and `yaml`. Edits of the file show up in the plan through `inventory_sha256`.",
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
			"components": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Limit create and update to these components (`" + strings.Join(componentNames(), "`, `") +
					"`) or phases, run in the engine's order whatever the order here; the same names as `tricenter apply --only`. " +
					"The phase IDs, in order: " + phaseIDsMarkdown() + " (the `preflight/` phases run on every apply and " +
					"cannot be named). A phase brings the read-only phases it needs. Default: all of them.",
				Validators: []validator.List{
					listvalidator.SizeAtLeast(1),
					listvalidator.UniqueValues(),
					selectionValidator{},
				},
			},
			"kubernetes_version": schema.StringAttribute{
				Optional: true,
				Computed: true,
				MarkdownDescription: "The Kubernetes release of the cluster (e.g. `" + inventory.DefaultKubernetesVersion + "`; supported minors: " +
					"`v" + strings.Join(inventory.SupportedKubernetesMinors, ".x`, `v") + ".x`). Overrides the inventory's " +
					"`spec.kubernetes.version` when set; otherwise it is the inventory's. Changing it (or the inventory's version) " +
					"on an installed cluster is an in-place update that upgrades the cluster one minor at a time, as `tricenter " +
					"upgrade` does: the plan lists the upgrade steps per host in a warning, and a skip of a minor is refused at plan time.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"skip_phases": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Leave these phases (or components) out of create and update; the same names as " +
					"`tricenter apply --skip-phases` (see `components` for the phase IDs). Skipping a phase another selected " +
					"phase needs is refused.",
				Validators: []validator.List{
					listvalidator.SizeAtLeast(1),
					listvalidator.UniqueValues(),
					selectionValidator{},
				},
			},
			"node_servers": schema.SetAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Workers of the inventory that `tricenter_node` resources join, one resource per server: " +
					"this resource's apply and health checks leave them out. Use the same names as the `for_each` keys of " +
					"those resources. They must be workers (neither etcd members nor control plane).",
				Validators: []validator.Set{setvalidator.ValueStringsAre(stringvalidator.LengthAtLeast(1))},
			},
			"inventory_sha256": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "SHA-256 of the inventory document the last apply used; a different one in the plan means the inventory changed.",
			},
			"state": schema.StringAttribute{
				Computed:  true,
				Sensitive: true,
				MarkdownDescription: "The engine's state: the files of the CLI's state directory (PKI with its private keys — with `pki_dir`, " +
					"only the directory and the SHA-256 of each of its files —, " +
					"`prior.json`) as JSON, `{\"format\":2,\"files\":{...}}` (the bare object of files older versions wrote is " +
					"read and rewritten). Pass it to `tricenter_node` and `tricenter_kubeconfig` as `cluster_state`.",
			},
			"kubeconfig": schema.StringAttribute{
				Computed:  true,
				Sensitive: true,
				MarkdownDescription: "Admin kubeconfig for the API VIP (cluster-admin through a ClusterRoleBinding group), with its private key: " +
					"it is kept in the state. **Deprecated**: use the ephemeral `tricenter_kubeconfig`, which keeps the credential out " +
					"of the state, plans and outputs. Null when `pki_dir` is set.",
				DeprecationMessage: "The kubeconfig attribute keeps an admin private key in the Terraform state. Use the ephemeral " +
					"tricenter_kubeconfig resource (cluster_state = tricenter_cluster.<name>.state) instead; this attribute will be removed.",
			},
			"pki_dir": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Keep the PKI out of the Terraform state: the certificate authorities and their keys, the " +
					"service-account key, the Secrets encryption keys and every leaf certificate and key live in this directory " +
					"(created 0700; each file 0600, written atomically; the layout of the CLI's `DIR/<cluster>/pki`, plus `nodes/<server>` for what each " +
					"`tricenter_node` added), and `state` " +
					"holds only their SHA-256 fingerprints, so a plan still sees a changed or missing PKI: a missing directory or " +
					"file, or one whose content changed, is an error that names it (restore it from its backup), never new CAs. " +
					"`tricenter_node` and `tricenter_kubeconfig` read the directory `state` names, so it must be reachable wherever " +
					"Terraform runs; back it up. Use an absolute path. Setting it on an installed cluster moves the PKI there on the " +
					"next apply; unsetting it brings the PKI back into `state`. Default: unset, the PKI is in `state`.",
				Validators: []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"ca_certificate": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "PEM of the Kubernetes cluster CA.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"api_server_url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "URL of the Kubernetes API through the VIP.",
			},
			"etcd_members": schema.MapAttribute{
				Computed:    true,
				ElementType: types.StringType,
				MarkdownDescription: "etcd members, server name → center. The plan shows the placement's members (so added and " +
					"removed members appear as a diff); refresh records the members etcd reports.",
			},
			"etcd_members_per_center": schema.MapAttribute{
				Computed:            true,
				ElementType:         types.Int64Type,
				MarkdownDescription: "Started voting etcd members per center, as observed by the last refresh or apply.",
			},
			"gates":         strList("The verification gates of the last apply: `name: ok|FAILED (detail)`."),
			"changed_hosts": strList("Servers the last apply changed something on."),
			"healthy": schema.BoolAttribute{
				Computed:            true,
				MarkdownDescription: "Whether the last refresh found everything as planned. A cluster found unhealthy plans an update (`false` → `true`) that converges it.",
			},
			"problems": strList("What the last refresh found not as planned, or could not check (e.g. an unreachable center)."),
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{
				Create: true, Read: true, Update: true, Delete: true,
				CreateDescription: fmt.Sprintf("How long create may take, gates included (default %s).", DefaultClusterCreateTimeout),
				ReadDescription:   fmt.Sprintf("How long a refresh may check health (default %s).", DefaultClusterReadTimeout),
				UpdateDescription: fmt.Sprintf("How long an update may take, gates included (default %s).", DefaultClusterUpdateTimeout),
				DeleteDescription: fmt.Sprintf("How long destroy (reset of every server) may take (default %s).", DefaultClusterDeleteTimeout),
			}),
		},
	}
	maps.Copy(resp.Schema.Attributes, renewalAttributes("the cluster's"))
}

func (r *clusterResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks components and skip_phases together, as the
// engine will select them.
func (r *clusterResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m clusterResourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if d := m.PKIDir; !d.IsNull() && !d.IsUnknown() && !filepath.IsAbs(d.ValueString()) {
		resp.Diagnostics.AddAttributeWarning(path.Root("pki_dir"), "Relative pki_dir",
			fmt.Sprintf("pki_dir %q is relative to the directory Terraform runs in, and the state records it as given: "+
				"use an absolute path so every run (and tricenter_node, tricenter_kubeconfig) finds the PKI.", d.ValueString()))
	}
	if m.Components.IsUnknown() || m.SkipPhases.IsUnknown() {
		return
	}
	only, d := m.components(ctx)
	resp.Diagnostics.Append(d...)
	skip, d := m.skipPhases(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() || len(skip) == 0 {
		return
	}
	for _, n := range append(slices.Clone(only), skip...) {
		if checkSelectable(n) != nil {
			return // the element's own diagnostic says it
		}
	}
	if err := installer.CheckSelection(only, skip); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("skip_phases"), "Invalid phase selection", err.Error()+".")
	}
}

// checkNodeServers refuses node_servers that are not workers of the
// inventory.
func checkNodeServers(c *inventory.Cluster, p *inventory.Placement, names []string) diag.Diagnostics {
	var diags diag.Diagnostics
	for _, n := range names {
		switch {
		case !hasHost(c, n):
			diags.AddAttributeError(path.Root("node_servers"), "Unknown server",
				fmt.Sprintf("node_servers names %q, which is not in the inventory: add it to a rack or drop it from node_servers.", n))
		case p.IsEtcdMember(n) || p.IsControlPlane(n):
			diags.AddAttributeError(path.Root("node_servers"), "Not a worker",
				fmt.Sprintf("node_servers names %q, which the placement makes an etcd member or control-plane server: only workers are joined by tricenter_node.", n))
		}
	}
	return diags
}

func hasHost(c *inventory.Cluster, name string) bool {
	_, ok := c.Host(name)
	return ok
}

func (r *clusterResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		if !req.State.Raw.IsNull() {
			resp.Diagnostics.AddWarning("Destroying the cluster resets every server",
				"tricenter_cluster's destroy stops and removes Kubernetes, the BGP agents and etcd on every server of the inventory (etcd last); the data in etcd is lost.")
		}
		return
	}
	var plan, prior clusterResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if !req.State.Raw.IsNull() {
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	}
	if resp.Diagnostics.HasError() || plan.input().unknown() || plan.NodeServers.IsUnknown() {
		return
	}
	var configured types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("kubernetes_version"), &configured)...)
	plan.KubeVersion = configured
	req2 := plan.engineRequest(prior.State)
	req2.Refused = "Change refused"
	run, diags := openEngine(ctx, r.data, req2)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	defer run.Close()
	doc, err := plan.input().content()
	if err != nil {
		resp.Diagnostics.AddAttributeError(plan.input().source().attr, "Cannot read the inventory", err.Error())
		return
	}
	e := run.eng
	for _, w := range e.Warnings() {
		resp.Diagnostics.AddAttributeWarning(plan.input().source().attr, "Inventory warning", w)
	}
	nodeServers, diags := plan.nodeServers(ctx)
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(checkNodeServers(e.Cluster(), e.Placement(), nodeServers)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := e.Cluster().Metadata.Name
	if !prior.ID.IsNull() && prior.ID.ValueString() != name {
		resp.RequiresReplace = append(resp.RequiresReplace, path.Root("id"))
	}
	next := etcdMembersOf(e.Placement())
	if !req.State.Raw.IsNull() {
		prev := map[string]string{}
		resp.Diagnostics.Append(prior.EtcdMembers.ElementsAs(ctx, &prev, false)...)
		if added, removed := memberDiff(prev, next); len(added)+len(removed) > 0 {
			var risks []etcd.Risk
			if mp, err := etcd.PlanFromRecord(e.Cluster(), slices.Sorted(maps.Keys(prev)), e.Placement().Etcd.Members); err == nil {
				risks = mp.Risks
			}
			resp.Diagnostics.AddAttributeWarning(path.Root("etcd_members"), "etcd membership changes",
				membershipMessage(added, removed, risks, plan.AcceptRisk.ValueBool()))
		}
	}
	plan.ID = types.StringValue(name)
	plan.KubeVersion = types.StringValue(e.Cluster().Spec.Kubernetes.Version)
	if err := e.CheckRecordedReleases(); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("kubernetes_version"), "Upgrade refused", err.Error()+".")
		return
	}
	if restore, err := r.restoreNeeded(ctx, &plan, e); err == nil && restore {
		from := "the newest good snapshot on the servers left"
		if id, _ := plan.restoreFrom(); id != "" {
			from = "snapshot " + id
		}
		resp.Diagnostics.AddAttributeWarning(path.Root("restore_from"), "This update restores etcd from a snapshot",
			"No etcd member serves a linearizable read: etcd lost its quorum. The apply restores it from "+from+
				" onto the etcd members the inventory places now ("+strings.Join(slices.Sorted(maps.Keys(next)), ", ")+
				"); writes after the snapshot are lost.")
	}
	if upgrading, err := e.UpgradeNeeded(); err == nil && upgrading && !req.State.Raw.IsNull() {
		resp.Diagnostics.AddAttributeWarning(path.Root("kubernetes_version"), "This update upgrades the cluster", upgradePlanText(ctx, e))
	}
	plan.APIServerURL = types.StringValue(e.APIServerURL())
	plan.InventorySHA256 = types.StringValue(fsutil.SHA256Hex(doc))
	plan.Healthy = types.BoolValue(true)
	if plan.partial() && !prior.Healthy.IsNull() {
		// A partial cluster (components limited) is never healthy as a
		// whole: refresh reports it, but it plans no update for it.
		plan.Healthy = prior.Healthy
	}
	if msg := planRenewal(prior.RenewDue, plan.partial(), e.RenewalDue, &plan.RenewDue, &plan.EarliestExpiry); msg != "" && !req.State.Raw.IsNull() {
		resp.Diagnostics.AddAttributeWarning(path.Root(attrRenewDue), "This update renews certificates", msg)
	}
	var d diag.Diagnostics
	plan.EtcdMembers, d = types.MapValueFrom(ctx, types.StringType, next)
	resp.Diagnostics.Append(d...)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() || req.State.Raw.IsNull() || resp.Plan.Raw.Equal(req.State.Raw) {
		return
	}
	// Something changes: everything an apply recomputes is unknown.
	plan.RenewDue = types.BoolUnknown()
	plan.EarliestExpiry = types.StringUnknown()
	plan.State = types.StringUnknown()
	plan.Kubeconfig = types.StringUnknown()
	plan.Gates = types.ListUnknown(types.StringType)
	plan.ChangedHosts = types.ListUnknown(types.StringType)
	plan.Problems = types.ListUnknown(types.StringType)
	plan.EtcdPerCenter = types.MapUnknown(types.Int64Type)
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// upgradePlanText is the upgrade an update runs, step by step, as
// observed now (or why it could not be planned yet: the apply plans again
// from what it observes).
func upgradePlanText(ctx context.Context, e *installer.Engine) string {
	head := fmt.Sprintf("The cluster runs other releases than Kubernetes %s and etcd %s: the update upgrades it one server at a time "+
		"(etcd members, the leader last; control-plane servers with the API VIP withdrawn first; nodes cordoned and drained, PodDisruptionBudgets "+
		"honoured), then applies and runs the gates. A failed step pauses the upgrade; the next apply resumes it.\n\n",
		e.Cluster().Spec.Kubernetes.Version, e.Cluster().Spec.Etcd.Version)
	res, err := e.PlanUpgrade(ctx, installer.UpgradeOptions{})
	if err != nil {
		return head + "The steps could not be planned now (" + err.Error() + "); the apply plans them from what it observes then."
	}
	var b strings.Builder
	if err := res.Plan.Render(&b, res.Status); err != nil {
		return head + err.Error()
	}
	return head + b.String()
}

// membershipMessage tells what an update does to etcd, and the windows
// during which the loss of one center would lose quorum (planned from
// the recorded members; the apply plans again from what etcd reports).
func membershipMessage(added, removed []string, risks []etcd.Risk, accepted bool) string {
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "adds "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removes "+strings.Join(removed, ", "))
	}
	msg := "This apply " + strings.Join(parts, " and ") + " as etcd members, one member at a time, keeping quorum in every step."
	transient := false
	for _, k := range risks {
		msg += "\n\nRisk: " + k.String() + "."
		transient = transient || k.Transient
	}
	switch {
	case transient && accepted:
		msg += "\n\naccept_transient_risk = true: the apply runs these windows."
	case transient:
		msg += "\n\nThe apply refuses these windows before any membership change unless accept_transient_risk = true."
	}
	return msg
}

func (r *clusterResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m clusterResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Create, DefaultClusterCreateTimeout, &resp.Diagnostics, func(ctx context.Context) {
		if !r.apply(ctx, &m, types.StringNull(), &resp.Diagnostics) {
			return // nothing was created: no state to keep
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	})
}

func (r *clusterResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior clusterResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Update, DefaultClusterUpdateTimeout, &resp.Diagnostics, func(ctx context.Context) {
		m.State = prior.State
		if !r.apply(ctx, &m, prior.State, &resp.Diagnostics) {
			// The engine did not run: the state stays as it was.
			resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
			return
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	})
}

// apply runs the engine over the engine state st and fills m with what
// it produced. On failure the engine state reached so far is still put in
// m.State (partial progress is kept) with an error diagnostic. It reports
// whether m was filled (false: the engine did not run, or its state could
// not be saved).
func (r *clusterResource) apply(ctx context.Context, m *clusterResourceModel, st types.String, diags *diag.Diagnostics) bool {
	nodeServers, d := m.nodeServers(ctx)
	diags.Append(d...)
	comps, d := m.components(ctx)
	diags.Append(d...)
	skip, d := m.skipPhases(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return false
	}
	req := m.engineRequest(st)
	req.Refused = "Change refused"
	run, d := openEngine(ctx, r.data, req)
	diags.Append(d...)
	if diags.HasError() {
		return false
	}
	defer run.Close()
	doc, err := m.input().content()
	if err != nil {
		diags.AddAttributeError(m.input().source().attr, "Cannot read the inventory", err.Error())
		return false
	}
	e := run.eng
	o := installer.Options{Only: comps, Skip: skip, Except: nodeServers,
		WaitReachable: waitReachable(m.WaitReachable), AcceptTransientRisk: m.AcceptRisk.ValueBool()}
	tflog.Info(ctx, "Applying the cluster", map[string]any{"cluster": e.Cluster().Metadata.Name, "components": comps, "skip_phases": skip})
	var res *installer.Result
	var applyErr error
	restore, err := r.restoreNeeded(ctx, m, e)
	if err != nil {
		diags.AddError("Cannot check etcd's quorum", engineErrorDetail("checking "+e.Cluster().Metadata.Name, err))
		return false
	}
	upgrading, err := e.UpgradeNeeded()
	switch {
	case restore:
		id, _ := m.restoreFrom()
		tflog.Warn(ctx, "etcd has no quorum: restoring from a snapshot (restore_from)", map[string]any{"cluster": e.Cluster().Metadata.Name, "snapshot": m.RestoreFrom.ValueString()})
		var rep *installer.RestoreReport
		rep, applyErr = e.Restore(ctx, installer.RestoreOptions{Snapshot: id, WaitReachable: o.WaitReachable})
		if rep != nil {
			res = rep.Apply
			if res == nil {
				res = rep.Etcd
			}
			if rep.Snapshot != nil {
				diags.AddWarning("etcd restored from a snapshot", fmt.Sprintf("etcd had no quorum: restored from snapshot %s (from %s, taken %s); "+
					"writes after it are lost. Members now: %s.", rep.Snapshot.ID, rep.From, rep.Snapshot.TakenAt.Format(time.RFC3339), strings.Join(rep.Members, ", ")))
			}
		}
	case err != nil:
		applyErr = err
	case upgrading:
		// Another release than the one the cluster runs: a rolling
		// upgrade, ending with the apply.
		tflog.Info(ctx, "Upgrading the cluster", map[string]any{"cluster": e.Cluster().Metadata.Name,
			"kubernetes": e.Cluster().Spec.Kubernetes.Version, "etcd": e.Cluster().Spec.Etcd.Version})
		var ures *installer.UpgradeResult
		ures, applyErr = e.Upgrade(ctx, installer.UpgradeOptions{Apply: o})
		if ures != nil {
			res = ures.Apply
			if ures.Paused != nil {
				applyErr = fmt.Errorf("upgrade paused: %w (the next apply resumes it)", applyErr)
			}
		}
	default:
		res, applyErr = e.Apply(ctx, o)
	}
	m.Kubeconfig = types.StringNull()
	// AdminKubeconfig may issue the admin certificate: before the state is
	// encoded, so it is kept. With pki_dir no private key goes to the
	// state: the deprecated attribute stays null.
	if kc, err := e.AdminKubeconfig(""); err == nil && !m.pkiOutside() {
		m.Kubeconfig = types.StringValue(string(kc))
	}
	if m.State, err = run.stateValue(nil); err != nil {
		diags.AddError("Cannot save the engine state", err.Error())
		return false
	}
	m.ID = types.StringValue(e.Cluster().Metadata.Name)
	m.KubeVersion = types.StringValue(e.Cluster().Spec.Kubernetes.Version)
	m.APIServerURL = types.StringValue(e.APIServerURL())
	m.InventorySHA256 = types.StringValue(fsutil.SHA256Hex(doc))
	m.Gates = stringList(gateLines(res))
	m.ChangedHosts = stringList(changedHosts(res))
	var dd diag.Diagnostics
	m.EtcdMembers, dd = types.MapValueFrom(ctx, types.StringType, etcdMembersOf(e.Placement()))
	diags.Append(dd...)
	m.EtcdPerCenter = perCenterValue(res)
	m.CACertificate = types.StringValue(run.files()["pki/"+pki.KubernetesCA+"/ca.crt"])
	applyRenewal(e.RenewalDue, &m.RenewDue, &m.EarliestExpiry)
	if res != nil {
		for _, w := range res.Warnings {
			diags.AddWarning("Engine warning", w)
		}
	}
	if applyErr != nil {
		m.Healthy = types.BoolValue(false)
		m.Problems = stringList([]string{applyErr.Error()})
		diags.AddError("Cluster apply failed", engineErrorDetail("applying "+e.Cluster().Metadata.Name, applyErr)+
			" The state reached so far is saved.")
		return true
	}
	m.Healthy = types.BoolValue(true)
	m.Problems = stringList(nil)
	return true
}

// restoreNeeded says whether this apply restores etcd: restore_from is
// set and no member serves a linearizable read.
func (r *clusterResource) restoreNeeded(ctx context.Context, m *clusterResourceModel, e *installer.Engine) (bool, error) {
	if _, ok := m.restoreFrom(); !ok {
		return false, nil
	}
	if _, err := e.EtcdPKI(false); err != nil {
		return false, nil // a first apply: nothing to restore into
	}
	return e.QuorumLost(ctx)
}

// perCenterValue is etcd's started members per center from an apply's
// health check (null when etcd was not part of it).
func perCenterValue(res *installer.Result) types.Map {
	if res == nil || res.Etcd == nil || res.Etcd.Health == nil {
		return types.MapNull(types.Int64Type)
	}
	return perCenterMap(res.Etcd.Health.PerCenter)
}

func perCenterMap(pc map[string]int) types.Map {
	vals := map[string]attr.Value{}
	for k, v := range pc {
		vals[k] = types.Int64Value(int64(v))
	}
	mv, _ := types.MapValue(types.Int64Type, vals)
	return mv
}

func stringList(xs []string) types.List {
	vals := make([]attr.Value, 0, len(xs))
	for _, x := range xs {
		vals = append(vals, types.StringValue(x))
	}
	lv, _ := types.ListValue(types.StringType, vals)
	return lv
}

func (r *clusterResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m clusterResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Read, DefaultClusterReadTimeout, &resp.Diagnostics, func(ctx context.Context) {
		r.read(ctx, &m, &resp.Diagnostics)
		if resp.Diagnostics.HasError() {
			return
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
	})
}

// read observes the cluster and records what it found in m. Only a state
// that cannot be interpreted is an error: anything unreachable is a
// warning and leaves the last values in place.
func (r *clusterResource) read(ctx context.Context, m *clusterResourceModel, diags *diag.Diagnostics) {
	files, err := decodeFiles(m.State)
	if err != nil {
		diags.AddAttributeError(path.Root("state"), "Unreadable engine state", err.Error())
		return
	}
	// A PKI kept in pki_dir that is missing or changed is an error, not a
	// health warning: nothing may plan over it.
	if _, _, err := internalizePKI(files); err != nil {
		diags.AddAttributeError(path.Root("pki_dir"), "PKI missing or changed", err.Error()+".")
		return
	}
	imported := m.ID.IsNull()
	nodeServers, d := m.nodeServers(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	req := m.engineRequest(m.State)
	req.Drop = nodeServers
	req.Refused = "Cannot import the cluster"
	run, d := openEngine(ctx, r.data, req)
	if d.HasError() {
		if imported {
			diags.Append(d...)
			return
		}
		diags.AddWarning("Cluster health not checked", "The inventory cannot be used with the applied cluster, so the cluster "+
			"was not checked and the last state is kept (the next plan shows the change): "+summary(d))
		return
	}
	defer run.Close()
	e := run.eng
	c := e.Cluster()
	if imported {
		r.fillImported(ctx, m, run, diags)
		if diags.HasError() {
			return
		}
	}
	// The certificates are judged from the state (no host): before the
	// health check, which may not reach the cluster.
	readRenewal(e.RenewalDue, &m.RenewDue, &m.EarliestExpiry, diags)
	st, err := e.Status(ctx)
	if err != nil {
		diags.AddWarning("Cluster health not checked", fmt.Sprintf("Checking %s: %v. The last state is kept.", e.Cluster().Metadata.Name, err))
		return
	}
	m.Healthy = types.BoolValue(st.OK())
	m.Problems = stringList(st.Problems)
	if st.Etcd != nil && len(st.Etcd.Members) > 0 {
		m.EtcdPerCenter = perCenterMap(st.Etcd.PerCenter)
		observed := map[string]string{}
		for _, mem := range st.Etcd.Members {
			if !mem.Started() || mem.IsLearner {
				continue
			}
			center := "unknown"
			if h, ok := c.Host(mem.Name); ok {
				center = h.Center.Name
			}
			observed[mem.Name] = center
		}
		var dd diag.Diagnostics
		m.EtcdMembers, dd = types.MapValueFrom(ctx, types.StringType, observed)
		diags.Append(dd...)
	}
	if !st.OK() {
		diags.AddWarning(fmt.Sprintf("Cluster %s is not as planned", st.Cluster),
			"Refresh found: "+strings.Join(st.Problems, "; ")+
				". Unreachable members or centers are reported, not removed; the next apply converges what it can reach.")
	}
}

// fillImported sets what an apply would have recorded, for a cluster
// imported from the CLI's state directory.
func (r *clusterResource) fillImported(ctx context.Context, m *clusterResourceModel, run *engineRun, diags *diag.Diagnostics) {
	e := run.eng
	if _, err := e.EtcdPKI(false); err != nil {
		diags.AddError("Cannot import the cluster", fmt.Sprintf("The state directory holds no PKI for %s (%v): import the directory `tricenter apply` used.", e.Cluster().Metadata.Name, err))
		return
	}
	doc, err := m.input().content()
	if err != nil {
		diags.AddError("Cannot import the cluster", err.Error())
		return
	}
	m.ID = types.StringValue(e.Cluster().Metadata.Name)
	m.KubeVersion = types.StringValue(e.Cluster().Spec.Kubernetes.Version)
	m.InventorySHA256 = types.StringValue(fsutil.SHA256Hex(doc))
	m.APIServerURL = types.StringValue(e.APIServerURL())
	m.CACertificate = types.StringValue(run.files()["pki/"+pki.KubernetesCA+"/ca.crt"])
	members := map[string]string{}
	if p := e.Prior(); p != nil {
		for _, n := range p.EtcdMembers {
			center := "unknown"
			if h, ok := e.Cluster().Host(n); ok {
				center = h.Center.Name
			}
			members[n] = center
		}
	}
	var d diag.Diagnostics
	m.EtcdMembers, d = types.MapValueFrom(ctx, types.StringType, members)
	diags.Append(d...)
	m.Gates = stringList(nil)
	m.ChangedHosts = stringList(nil)
	m.EtcdPerCenter = types.MapNull(types.Int64Type)
	if kc, err := e.AdminKubeconfig(""); err == nil {
		m.Kubeconfig = types.StringValue(string(kc))
		if m.pkiOutside() {
			m.Kubeconfig = types.StringNull()
		}
		if st, err := run.stateValue(nil); err == nil {
			m.State = st
		}
	}
}

func summary(d diag.Diagnostics) string {
	var out []string
	for _, x := range d.Errors() {
		out = append(out, x.Summary()+": "+x.Detail())
	}
	return strings.Join(out, "; ")
}

func (r *clusterResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m clusterResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	withTimeout(ctx, m.Timeouts.Delete, DefaultClusterDeleteTimeout, &resp.Diagnostics, func(ctx context.Context) {
		run, d := openEngine(ctx, r.data, m.engineRequest(m.State))
		resp.Diagnostics.Append(d...)
		if resp.Diagnostics.HasError() {
			return
		}
		defer run.Close()
		tflog.Info(ctx, "Resetting the cluster", map[string]any{"cluster": run.eng.Cluster().Metadata.Name})
		if _, err := run.eng.Reset(ctx, installer.Options{}); err != nil {
			resp.Diagnostics.AddError("Cluster reset failed", engineErrorDetail("resetting "+run.eng.Cluster().Metadata.Name, err)+
				" The resource stays in state; destroy again to continue.")
		}
	})
}

// ImportState takes "STATE_DIR#INVENTORY": the CLI's state directory of
// the cluster (DIR/<cluster>, holding pki/ and prior.json) and the
// inventory file it was applied from.
func (r *clusterResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	dir, inv, ok := parseClusterImportID(req.ID)
	if !ok {
		resp.Diagnostics.AddError("Invalid import ID",
			fmt.Sprintf("%q: use STATE_DIR#INVENTORY, e.g. ~/.local/state/tricenter/lab#/etc/tricenter/lab.yaml (the cluster's directory under the CLI's state directory, then the inventory file).", req.ID))
		return
	}
	files, err := state.Snapshot(dir)
	if err != nil {
		resp.Diagnostics.AddError("Cannot import the cluster", err.Error()+": give the cluster's directory under the CLI's state directory (DIR/<metadata.name>).")
		return
	}
	enc, err := encodeFiles(files)
	if err != nil {
		resp.Diagnostics.AddError("Cannot import the cluster", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("state"), enc)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("path"), inv)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("healthy"), true)...)
}

func parseClusterImportID(id string) (dir, inv string, ok bool) {
	i := strings.LastIndex(id, "#")
	if i <= 0 || i == len(id)-1 {
		return "", "", false
	}
	return id[:i], id[i+1:], true
}
