package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
)

// DefaultKubeconfigTTL is how long a user kubeconfig of
// tricenter_kubeconfig is valid when ttl is not set.
const DefaultKubeconfigTTL = time.Hour

var _ ephemeral.EphemeralResourceWithConfigure = (*kubeconfigEphemeralResource)(nil)

// NewKubeconfigEphemeralResource returns the ephemeral tricenter_kubeconfig.
func NewKubeconfigEphemeralResource() ephemeral.EphemeralResource {
	return &kubeconfigEphemeralResource{}
}

type kubeconfigEphemeralResource struct {
	data *providerData
}

type kubeconfigModel struct {
	Path         types.String `tfsdk:"path"`
	YAML         types.String `tfsdk:"yaml"`
	ClusterState types.String `tfsdk:"cluster_state"`
	User         types.String `tfsdk:"user"`
	Groups       types.List   `tfsdk:"groups"`
	TTL          types.String `tfsdk:"ttl"`
	Kubeconfig   types.String `tfsdk:"kubeconfig"`
	ExpiresAt    types.String `tfsdk:"expires_at"`
	APIServerURL types.String `tfsdk:"api_server_url"`
}

func (r *kubeconfigEphemeralResource) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_kubeconfig"
}

func (r *kubeconfigEphemeralResource) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A kubeconfig for the cluster's API VIP that never reaches the Terraform state or plan " +
			"(ephemeral resource, Terraform 1.10 or later): use it in provider blocks (`kubernetes`, `helm`) or " +
			"write-only arguments. With `user` it holds a short-lived client certificate for that user and `groups`, " +
			"signed by the cluster CA and valid for `ttl` (RBAC decides what it may do; the certificate is not stored " +
			"anywhere); without `user` it is the admin kubeconfig.",
		Attributes: map[string]schema.Attribute{
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
			"cluster_state": schema.StringAttribute{
				Required:            true,
				Sensitive:           true,
				MarkdownDescription: "The cluster's engine state: `tricenter_cluster.<name>.state`.",
			},
			"user": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "User name (the certificate's common name). Without it the admin kubeconfig is returned. " +
					"Names starting with `system:` and the components' and admin's own users are refused.",
				Validators: []validator.String{stringvalidator.LengthBetween(1, 64)},
			},
			"groups": schema.ListAttribute{
				Optional:    true,
				ElementType: types.StringType,
				MarkdownDescription: "Groups of the user (the certificate's organizations). Only with `user`. Groups starting with " +
					"`system:` (`system:masters` bypasses RBAC) and the admin group are refused.",
				Validators: []validator.List{
					listvalidator.ValueStringsAre(stringvalidator.LengthAtLeast(1)),
					listvalidator.AlsoRequires(path.MatchRoot("user")),
				},
			},
			"ttl": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: fmt.Sprintf("Validity of the user certificate (default %s, at most %s). A Go duration such as `30m`. Only with `user`.",
					DefaultKubeconfigTTL, kubeconfig.MaxUserTTL),
				Validators: []validator.String{durationValidator{}, stringvalidator.AlsoRequires(path.MatchRoot("user"))},
			},
			"kubeconfig": schema.StringAttribute{
				Computed:            true,
				Sensitive:           true,
				MarkdownDescription: "The kubeconfig.",
			},
			"expires_at": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "When the user certificate expires (RFC 3339); empty for the admin kubeconfig.",
			},
			"api_server_url": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "URL of the Kubernetes API through the VIP.",
			},
		},
	}
}

func (r *kubeconfigEphemeralResource) Configure(_ context.Context, req ephemeral.ConfigureRequest, resp *ephemeral.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *kubeconfigEphemeralResource) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	var m kubeconfigModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(r.open(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.Result.Set(ctx, &m)...)
}

// open fills m's kubeconfig, expiry and URL from the cluster state.
func (r *kubeconfigEphemeralResource) open(ctx context.Context, m *kubeconfigModel) diag.Diagnostics {
	var diags diag.Diagnostics
	in := inventoryInput{Path: m.Path, YAML: m.YAML}
	files, err := decodeFiles(m.ClusterState)
	if err != nil {
		diags.AddAttributeError(path.Root("cluster_state"), "Unreadable cluster state", err.Error())
		return diags
	}
	if len(files) == 0 {
		diags.AddAttributeError(path.Root("cluster_state"), "No cluster state",
			"cluster_state is empty: pass tricenter_cluster.<name>.state of a cluster that was applied.")
		return diags
	}
	run, d := openEngine(ctx, r.data, engineRequest{Inventory: in,
		States: []stateInput{{Value: m.ClusterState, Attr: path.Root("cluster_state"), What: "cluster state"}}})
	diags.Append(d...)
	if diags.HasError() {
		return diags
	}
	defer run.Close()
	e := run.eng
	m.APIServerURL = types.StringValue(e.APIServerURL())
	if m.User.IsNull() {
		kc, err := e.AdminKubeconfig("")
		if err != nil {
			diags.AddAttributeError(path.Root("cluster_state"), "No admin kubeconfig", fmt.Sprintf("%s: %v", e.Cluster().Metadata.Name, err))
			return diags
		}
		m.Kubeconfig = types.StringValue(string(kc))
		m.ExpiresAt = types.StringValue("")
		return diags
	}
	ttl := DefaultKubeconfigTTL
	if !m.TTL.IsNull() {
		ttl, err = time.ParseDuration(m.TTL.ValueString())
		if err != nil {
			diags.AddAttributeError(path.Root("ttl"), "Invalid duration", fmt.Sprintf("ttl is %q: use a duration such as 30m.", m.TTL.ValueString()))
			return diags
		}
	}
	var groups []string
	if !m.Groups.IsNull() {
		diags.Append(m.Groups.ElementsAs(ctx, &groups, false)...)
	}
	kc, until, err := e.UserKubeconfig(m.User.ValueString(), groups, ttl)
	if err != nil {
		diags.AddAttributeError(path.Root("user"), "Cannot issue the kubeconfig", fmt.Sprintf("%s for %s: %v", e.Cluster().Metadata.Name, m.User.ValueString(), err))
		return diags
	}
	m.Kubeconfig = types.StringValue(string(kc))
	m.ExpiresAt = types.StringValue(until.UTC().Format(time.RFC3339))
	return diags
}
