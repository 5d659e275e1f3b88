// Package provider is the tricenter Terraform provider: it translates
// Terraform configuration into inventory and bmc types and calls the
// libraries; it holds no orchestration logic of its own.
package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Environment variables read when the provider configuration leaves the
// matching argument unset.
const (
	EnvSSHUser           = "TRICENTER_SSH_USER"
	EnvSSHPrivateKey     = "TRICENTER_SSH_PRIVATE_KEY"
	EnvSSHPrivateKeyFile = "TRICENTER_SSH_PRIVATE_KEY_FILE"
	EnvSSHAgent          = "TRICENTER_SSH_AGENT"
	EnvSSHKnownHosts     = "TRICENTER_SSH_KNOWN_HOSTS" // a list, separated like PATH
	EnvArtifactDir       = "TRICENTER_ARTIFACT_DIR"
	EnvMirrorURL         = "TRICENTER_MIRROR_URL"
	EnvConcurrency       = "TRICENTER_CONCURRENCY"
	EnvBMCUser           = "TRICENTER_BMC_USER"
	// EnvBMCPassword holds the default BMC password itself; the provider
	// refers to it by name (like an inventory's password.env) and never
	// copies it into state.
	EnvBMCPassword     = "TRICENTER_BMC_PASSWORD"
	EnvBMCPasswordFile = "TRICENTER_BMC_PASSWORD_FILE"
)

// DefaultConcurrency is the number of hosts or BMCs the provider talks to
// at once when concurrency is not set.
const DefaultConcurrency = bmc.DefaultConcurrency

var (
	_ provider.Provider                       = (*tricenterProvider)(nil)
	_ provider.ProviderWithEphemeralResources = (*tricenterProvider)(nil)
)

type tricenterProvider struct {
	version string
	// getenv reads the environment fallbacks (os.Getenv; tests replace it).
	getenv func(string) string
}

// New returns the provider factory for providerserver.Serve.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &tricenterProvider{version: version, getenv: os.Getenv} }
}

type providerModel struct {
	SSH         *sshModel    `tfsdk:"ssh"`
	ArtifactDir types.String `tfsdk:"artifact_dir"`
	MirrorURL   types.String `tfsdk:"mirror_url"`
	Concurrency types.Int64  `tfsdk:"concurrency"`
	LockTimeout types.String `tfsdk:"lock_timeout"`
	BMC         *bmcModel    `tfsdk:"bmc"`
}

type sshModel struct {
	User           types.String  `tfsdk:"user"`
	PrivateKey     types.String  `tfsdk:"private_key"`
	PrivateKeyFile types.String  `tfsdk:"private_key_file"`
	Agent          types.Bool    `tfsdk:"agent"`
	KnownHosts     types.List    `tfsdk:"known_hosts"`
	Bastion        *bastionModel `tfsdk:"bastion"`
}

type bastionModel struct {
	Address types.String `tfsdk:"address"`
	Port    types.Int64  `tfsdk:"port"`
	User    types.String `tfsdk:"user"`
	HostKey types.String `tfsdk:"host_key"`
}

type bmcModel struct {
	User         types.String `tfsdk:"user"`
	PasswordEnv  types.String `tfsdk:"password_env"`
	PasswordFile types.String `tfsdk:"password_file"`
	CipherSuites types.List   `tfsdk:"cipher_suites"`
	MinInterval  types.String `tfsdk:"min_interval"`
	RetryBudget  types.String `tfsdk:"retry_budget"`
}

// providerData is what Configure hands to resources and data sources.
type providerData struct {
	SSH         sshDefaults
	ArtifactDir string
	MirrorURL   string
	Concurrency int
	BMC         bmcDefaults
	// sem bounds the BMCs (and later hosts) talked to at once across every
	// resource of this provider instance: Terraform runs them concurrently.
	sem chan struct{}
	// LockTimeout is how long a change waits for another run's lock on
	// the cluster; Holder names this provider process in that lock, and
	// Leases lets its resources share one cluster lease.
	LockTimeout time.Duration
	Holder      installer.Holder
	Leases      *installer.Leases
	// Clock is the engines' time source (nil: time.Now); tests move it
	// to make certificates due for renewal.
	Clock func() time.Time
}

// now is the provider's time: Clock, or time.Now.
func (d *providerData) now() time.Time {
	if d == nil || d.Clock == nil {
		return time.Now()
	}
	return d.Clock()
}

// sshDefaults are the SSH settings the cluster and node resources pass to
// the engine; a server's own inventory entry overrides them.
type sshDefaults struct {
	User string
	// PrivateKey is a PEM key; never logged.
	PrivateKey     string
	PrivateKeyFile string
	Agent          bool
	KnownHosts     []string
	Bastion        *inventory.JumpHost
}

// bmcDefaults apply to every tricenter_server that leaves them unset.
type bmcDefaults struct {
	User         string
	Password     inventory.SecretRef
	CipherSuites []int
	Options      bmc.Options
}

// acquire takes a slot of the provider-wide concurrency limit; the
// returned function gives it back.
func (d *providerData) acquire(ctx context.Context) (func(), error) {
	select {
	case d.sem <- struct{}{}:
		return func() { <-d.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *tricenterProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "tricenter"
	resp.Version = p.version
}

func (p *tricenterProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	durationHint := "A Go duration such as `500ms`, `2s` or `1m`."
	resp.Schema = schema.Schema{
		Description: "Takes bare-metal servers in two sites and three centers from BMC-only to a running, verified Kubernetes cluster.",
		MarkdownDescription: "Takes bare-metal servers in two sites and three centers from BMC-only to a running, verified " +
			"Kubernetes cluster. The data sources read the same inventory file as the `tricenter` CLI and compute the same " +
			"placement and IP plan; `tricenter_server` manages a server's power and boot device through its BMC (IPMI 2.0); " +
			"`tricenter_cluster` and `tricenter_node` build the cluster and join workers through the same engine as `tricenter apply`, " +
			"and the ephemeral `tricenter_kubeconfig` issues kubeconfigs that never reach the state.\n\n" +
			"Every argument is optional and most fall back to an environment variable, named in its description.",
		Attributes: map[string]schema.Attribute{
			"ssh": schema.SingleNestedAttribute{
				Optional:            true,
				MarkdownDescription: "SSH defaults for reaching servers; the inventory's per-server and per-center settings take precedence.",
				Attributes: map[string]schema.Attribute{
					"user": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "Login user. Env `" + EnvSSHUser + "`.",
					},
					"private_key": schema.StringAttribute{
						Optional:            true,
						Sensitive:           true,
						MarkdownDescription: "PEM-encoded private key. Env `" + EnvSSHPrivateKey + "`. Conflicts with `private_key_file`.",
						Validators: []validator.String{
							stringvalidator.ConflictsWith(path.MatchRelative().AtParent().AtName("private_key_file")),
						},
					},
					"private_key_file": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "Path of a private key file. Env `" + EnvSSHPrivateKeyFile + "`.",
					},
					"agent": schema.BoolAttribute{
						Optional:            true,
						MarkdownDescription: "Authenticate with ssh-agent (`SSH_AUTH_SOCK`). Env `" + EnvSSHAgent + "` (`true`/`false`).",
					},
					"known_hosts": schema.ListAttribute{
						Optional:            true,
						ElementType:         types.StringType,
						MarkdownDescription: "known_hosts files pinning host keys (they may hold `@cert-authority` lines). Env `" + EnvSSHKnownHosts + "`, a list separated like `PATH`.",
						Validators:          []validator.List{listvalidator.ValueStringsAre(stringvalidator.LengthAtLeast(1))},
					},
					"bastion": schema.SingleNestedAttribute{
						Optional:            true,
						MarkdownDescription: "A first hop for every connection, in front of the centers' jump hosts.",
						Attributes: map[string]schema.Attribute{
							"address": schema.StringAttribute{
								Required:            true,
								MarkdownDescription: "Address of the bastion.",
								Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
							},
							"port": schema.Int64Attribute{
								Optional:            true,
								MarkdownDescription: "SSH port (default 22).",
								Validators:          []validator.Int64{int64validator.Between(1, 65535)},
							},
							"user": schema.StringAttribute{
								Optional:            true,
								MarkdownDescription: "Login user on the bastion (default: `ssh.user`).",
							},
							"host_key": schema.StringAttribute{
								Optional:            true,
								MarkdownDescription: "Pinned host key of the bastion: an SSH fingerprint (`SHA256:…`) or a public key line.",
							},
						},
					},
				},
			},
			"artifact_dir": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Directory with the pinned binaries and their sha256 manifest (air-gapped installs). Env `" + EnvArtifactDir + "`. Conflicts with `mirror_url`.",
				Validators: []validator.String{
					stringvalidator.LengthAtLeast(1),
					stringvalidator.ConflictsWith(path.MatchRoot("mirror_url")),
				},
			},
			"mirror_url": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "HTTP(S) mirror serving the artifacts, instead of `artifact_dir`. Env `" + EnvMirrorURL + "`.",
				Validators: []validator.String{
					stringvalidator.RegexMatches(regexpHTTPURL, "must be an http:// or https:// URL"),
				},
			},
			"concurrency": schema.Int64Attribute{
				Optional: true,
				MarkdownDescription: fmt.Sprintf("How many hosts and BMCs the provider talks to at once, across all resources (default %d). Env `%s`.",
					DefaultConcurrency, EnvConcurrency),
				Validators: []validator.Int64{int64validator.Between(1, 1024)},
			},
			"lock_timeout": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: fmt.Sprintf("How long a change waits while another run holds the cluster's lock (a `tricenter` CLI run "+
					"elsewhere, or another Terraform run), e.g. `\"2m\"` (default %s); then it fails naming the holder. Every change "+
					"holds the cluster's lease in its own etcd while it runs (the resources of one `terraform apply` share it), "+
					"so two tools never change a cluster at once; a holder that died releases it within %s.",
					installer.DefaultLockTimeout, installer.DefaultLockTTL),
				Validators: []validator.String{durationValidator{}},
			},
			"bmc": schema.SingleNestedAttribute{
				Optional:            true,
				MarkdownDescription: "Defaults for every `tricenter_server` and for importing one.",
				Attributes: map[string]schema.Attribute{
					"user": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "BMC user. Env `" + EnvBMCUser + "`.",
						Validators:          []validator.String{stringvalidator.LengthBetween(1, 16)},
					},
					"password_env": schema.StringAttribute{
						Optional: true,
						MarkdownDescription: "Name of the environment variable holding the BMC password. Without it and `password_file`, " +
							"`" + EnvBMCPassword + "` is used when set, or the file named by `" + EnvBMCPasswordFile + "`. " +
							"The password itself never reaches the state.",
						Validators: []validator.String{
							stringvalidator.RegexMatches(regexpEnvName, "must be an environment variable name"),
							stringvalidator.ConflictsWith(path.MatchRelative().AtParent().AtName("password_file")),
						},
					},
					"password_file": schema.StringAttribute{
						Optional:            true,
						MarkdownDescription: "Path of a file holding the BMC password (trailing newlines are dropped).",
						Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
					},
					"cipher_suites": schema.ListAttribute{
						Optional:    true,
						ElementType: types.Int64Type,
						MarkdownDescription: fmt.Sprintf("RMCP+ cipher suites tried in order (default %v). Only %v are accepted: suite 0 has no authentication.",
							inventory.DefaultCipherSuites, bmc.AllowedCipherSuites),
						Validators: cipherSuitesValidators(),
					},
					"min_interval": schema.StringAttribute{
						Optional: true,
						MarkdownDescription: fmt.Sprintf("Least time between two commands to one BMC (default %s; `0s` for none). %s",
							bmc.DefaultMinInterval, durationHint),
						Validators: []validator.String{durationValidator{}},
					},
					"retry_budget": schema.StringAttribute{
						Optional: true,
						MarkdownDescription: fmt.Sprintf("How long one command is retried after timeouts and busy answers (default %s; `0s` for no retries). %s",
							bmc.DefaultRetryBudget, durationHint),
						Validators: []validator.String{durationValidator{}},
					},
				},
			},
		},
	}
}

func (p *tricenterProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	routeKlog(ctx)
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	getenv := p.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	d, diags := configure(ctx, m, getenv)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.DataSourceData = d
	resp.ResourceData = d
	resp.EphemeralResourceData = d
}

// configure translates the provider configuration, with its environment
// fallbacks, into providerData. Unknown values (from resources not yet
// created) are errors: the provider needs them before any plan.
func configure(ctx context.Context, m providerModel, getenv func(string) string) (*providerData, diag.Diagnostics) {
	var diags diag.Diagnostics
	d := &providerData{Concurrency: DefaultConcurrency}
	str := func(v types.String, p path.Path, env string) string {
		if v.IsUnknown() {
			diags.AddAttributeError(p, "Value not known before apply",
				"The provider needs "+p.String()+" to plan; set it from a value known at plan time (a variable or a literal).")
			return ""
		}
		if !v.IsNull() {
			return v.ValueString()
		}
		if env == "" {
			return ""
		}
		return getenv(env)
	}

	ssh := m.SSH
	if ssh == nil {
		ssh = &sshModel{}
	}
	sp := path.Root("ssh")
	d.SSH.User = str(ssh.User, sp.AtName("user"), EnvSSHUser)
	d.SSH.PrivateKey = str(ssh.PrivateKey, sp.AtName("private_key"), EnvSSHPrivateKey)
	d.SSH.PrivateKeyFile = str(ssh.PrivateKeyFile, sp.AtName("private_key_file"), EnvSSHPrivateKeyFile)
	if d.SSH.PrivateKey != "" && d.SSH.PrivateKeyFile != "" {
		diags.AddAttributeError(sp.AtName("private_key"), "Two private keys",
			"ssh.private_key and ssh.private_key_file (or "+EnvSSHPrivateKey+" and "+EnvSSHPrivateKeyFile+") are both set: keep one.")
	}
	switch {
	case !ssh.Agent.IsNull() && !ssh.Agent.IsUnknown():
		d.SSH.Agent = ssh.Agent.ValueBool()
	case getenv(EnvSSHAgent) != "":
		b, err := strconv.ParseBool(getenv(EnvSSHAgent))
		if err != nil {
			diags.AddAttributeError(sp.AtName("agent"), "Invalid "+EnvSSHAgent,
				fmt.Sprintf("%s is %q: use true or false.", EnvSSHAgent, getenv(EnvSSHAgent)))
		}
		d.SSH.Agent = b
	}
	if !ssh.KnownHosts.IsNull() && !ssh.KnownHosts.IsUnknown() {
		diags.Append(ssh.KnownHosts.ElementsAs(ctx, &d.SSH.KnownHosts, false)...)
	} else if v := getenv(EnvSSHKnownHosts); v != "" {
		for _, f := range filepath.SplitList(v) {
			if f != "" {
				d.SSH.KnownHosts = append(d.SSH.KnownHosts, f)
			}
		}
	}
	if b := ssh.Bastion; b != nil {
		bp := sp.AtName("bastion")
		d.SSH.Bastion = &inventory.JumpHost{
			Address: str(b.Address, bp.AtName("address"), ""),
			User:    str(b.User, bp.AtName("user"), ""),
			HostKey: str(b.HostKey, bp.AtName("host_key"), ""),
			Port:    int(b.Port.ValueInt64()),
		}
	}

	d.ArtifactDir = str(m.ArtifactDir, path.Root("artifact_dir"), EnvArtifactDir)
	d.MirrorURL = str(m.MirrorURL, path.Root("mirror_url"), EnvMirrorURL)
	if d.ArtifactDir != "" && d.MirrorURL != "" {
		diags.AddAttributeError(path.Root("artifact_dir"), "Two artifact sources",
			"artifact_dir and mirror_url (or "+EnvArtifactDir+" and "+EnvMirrorURL+") are both set: keep one.")
	}
	if d.MirrorURL != "" && !regexpHTTPURL.MatchString(d.MirrorURL) {
		diags.AddAttributeError(path.Root("mirror_url"), "Invalid mirror URL",
			fmt.Sprintf("mirror_url (or %s) is %q: use an http:// or https:// URL.", EnvMirrorURL, d.MirrorURL))
	}
	switch {
	case !m.Concurrency.IsNull() && !m.Concurrency.IsUnknown():
		d.Concurrency = int(m.Concurrency.ValueInt64())
	case getenv(EnvConcurrency) != "":
		n, err := strconv.Atoi(getenv(EnvConcurrency))
		if err != nil || n < 1 || n > 1024 {
			diags.AddAttributeError(path.Root("concurrency"), "Invalid "+EnvConcurrency,
				fmt.Sprintf("%s is %q: use a number from 1 to 1024.", EnvConcurrency, getenv(EnvConcurrency)))
		} else {
			d.Concurrency = n
		}
	}

	bm := m.BMC
	if bm == nil {
		bm = &bmcModel{}
	}
	bp := path.Root("bmc")
	d.BMC.User = str(bm.User, bp.AtName("user"), EnvBMCUser)
	d.BMC.Password = inventory.SecretRef{
		Env:  str(bm.PasswordEnv, bp.AtName("password_env"), ""),
		File: str(bm.PasswordFile, bp.AtName("password_file"), ""),
	}
	if d.BMC.Password.IsZero() {
		switch {
		case getenv(EnvBMCPassword) != "":
			d.BMC.Password.Env = EnvBMCPassword
		case getenv(EnvBMCPasswordFile) != "":
			d.BMC.Password.File = getenv(EnvBMCPasswordFile)
		}
	}
	d.BMC.CipherSuites = append([]int(nil), inventory.DefaultCipherSuites...)
	if !bm.CipherSuites.IsNull() && !bm.CipherSuites.IsUnknown() {
		var cs []int64
		diags.Append(bm.CipherSuites.ElementsAs(ctx, &cs, false)...)
		d.BMC.CipherSuites = intsOf(cs)
	}
	d.BMC.Options.MinInterval = durationOption(bm.MinInterval, bp.AtName("min_interval"), &diags)
	d.BMC.Options.RetryBudget = durationOption(bm.RetryBudget, bp.AtName("retry_budget"), &diags)
	d.BMC.Options.Concurrency = d.Concurrency
	if diags.HasError() {
		return nil, diags
	}
	d.sem = make(chan struct{}, d.Concurrency)
	d.LockTimeout = installer.DefaultLockTimeout
	if !m.LockTimeout.IsNull() && !m.LockTimeout.IsUnknown() {
		t, err := time.ParseDuration(m.LockTimeout.ValueString())
		if err != nil || t < 0 {
			diags.AddAttributeError(path.Root("lock_timeout"), "Invalid lock_timeout",
				fmt.Sprintf("%q is not a duration such as 30s or 2m.", m.LockTimeout.ValueString()))
			return nil, diags
		}
		d.LockTimeout = t
		if t == 0 {
			d.LockTimeout = -1 // do not wait
		}
	}
	d.Holder = installer.NewHolder("terraform-provider-tricenter", "terraform run")
	d.Leases = &installer.Leases{}
	return d, diags
}

// durationOption maps a duration argument onto a bmc.Options field: unset
// is 0 (the library default), "0s" is -1 (none).
func durationOption(v types.String, p path.Path, diags *diag.Diagnostics) time.Duration {
	if v.IsNull() || v.IsUnknown() {
		return 0
	}
	d, err := time.ParseDuration(v.ValueString())
	if err != nil || d < 0 {
		diags.AddAttributeError(p, "Invalid duration", fmt.Sprintf("%s is %q: use a duration such as 500ms or 2s.", p, v.ValueString()))
		return 0
	}
	if d == 0 {
		return -1
	}
	return d
}

func intsOf(xs []int64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

// providerDataFrom is the Configure step shared by resources and data
// sources: nil data (provider not configured yet, during validation) is
// fine; anything else must be *providerData.
func providerDataFrom(data any, diags *diag.Diagnostics) *providerData {
	if data == nil {
		return nil
	}
	d, ok := data.(*providerData)
	if !ok {
		diags.AddError("Unexpected provider data",
			fmt.Sprintf("Expected *providerData, got %T: this is a bug in the provider, please report it.", data))
		return nil
	}
	return d
}

func (p *tricenterProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{NewServerResource, NewClusterResource, NewNodeResource}
}

func (p *tricenterProvider) EphemeralResources(context.Context) []func() ephemeral.EphemeralResource {
	return []func() ephemeral.EphemeralResource{NewKubeconfigEphemeralResource}
}

func (p *tricenterProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{NewInventoryDataSource, NewEtcdPlacementDataSource}
}
