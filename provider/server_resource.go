package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Default timeouts of tricenter_server, overridden by its timeouts block.
const (
	DefaultServerCreateTimeout = 10 * time.Minute
	DefaultServerReadTimeout   = 2 * time.Minute
	DefaultServerUpdateTimeout = 10 * time.Minute
	DefaultServerDeleteTimeout = 10 * time.Minute
)

// importedKey marks, in private state, a server that was just imported:
// its first Read takes power_state from what the BMC reports.
const importedKey = "imported"

var (
	_ resource.ResourceWithConfigure   = (*serverResource)(nil)
	_ resource.ResourceWithImportState = (*serverResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*serverResource)(nil)
)

// NewServerResource returns the tricenter_server resource.
func NewServerResource() resource.Resource { return &serverResource{} }

type serverResource struct {
	data *providerData
}

type serverResourceModel struct {
	ID                 types.String   `tfsdk:"id"`
	Name               types.String   `tfsdk:"name"`
	Address            types.String   `tfsdk:"address"`
	Port               types.Int64    `tfsdk:"port"`
	User               types.String   `tfsdk:"user"`
	Password           types.String   `tfsdk:"password"`
	PasswordEnv        types.String   `tfsdk:"password_env"`
	PasswordFile       types.String   `tfsdk:"password_file"`
	CipherSuites       types.List     `tfsdk:"cipher_suites"`
	PowerState         types.String   `tfsdk:"power_state"`
	BootDevice         types.String   `tfsdk:"boot_device"`
	BootPersistent     types.Bool     `tfsdk:"boot_persistent"`
	PowerOffOnDestroy  types.Bool     `tfsdk:"power_off_on_destroy"`
	ObservedPowerState types.String   `tfsdk:"observed_power_state"`
	ObservedBootDevice types.String   `tfsdk:"observed_boot_device"`
	FRUSerial          types.String   `tfsdk:"fru_serial"`
	FRUModel           types.String   `tfsdk:"fru_model"`
	FRUManufacturer    types.String   `tfsdk:"fru_manufacturer"`
	Timeouts           timeouts.Value `tfsdk:"timeouts"`
}

func (r *serverResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_server"
}

func (r *serverResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	refreshNote := "Terraform keeps no copy of a write-only value, so refresh, import and destroy use `password_env`, `password_file` or the provider's `bmc` password instead: one of them must be set."
	resp.Schema = schema.Schema{
		MarkdownDescription: "A bare-metal server managed through its BMC (IPMI 2.0 over LAN, RMCP+). The resource sets the " +
			"power state and the next boot device, and every refresh reads the real power state, boot override and FRU " +
			"(serial, model, manufacturer) from the BMC: a server powered off behind Terraform's back shows up as a diff in " +
			"the next plan. A BMC that does not answer during refresh gives a warning and the last known state is kept; the " +
			"resource is never dropped from state for it (credentials the BMC rejects are an error: they need fixing). Destroying the resource leaves the server as it is unless " +
			"`power_off_on_destroy` is true.\n\nThe BMC password never reaches the state: it is read from an environment " +
			"variable or a file at each use, or given as a write-only argument for apply. " + refreshNote,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "The BMC endpoint, `address:port` (the import ID).",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				Optional:            true,
				Computed:            true,
				MarkdownDescription: "Server name used in logs and messages, typically the inventory name (`each.key`). Default: the BMC address.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"address": schema.StringAttribute{
				Required:            true,
				MarkdownDescription: "BMC address (IP address or host name). Changing it replaces the resource.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1), stringvalidator.NoneOf("localhost")},
			},
			"port": schema.Int64Attribute{
				Optional:            true,
				Computed:            true,
				Default:             int64default.StaticInt64(inventory.DefaultBMCPort),
				MarkdownDescription: fmt.Sprintf("BMC UDP port (default %d). Changing it replaces the resource.", inventory.DefaultBMCPort),
				PlanModifiers:       []planmodifier.Int64{int64planmodifier.RequiresReplace()},
				Validators:          []validator.Int64{int64validator.Between(1, 65535)},
			},
			"user": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "BMC user (1 to 16 bytes). Default: the provider's `bmc.user` or `" + EnvBMCUser + "`.",
				Validators:          []validator.String{stringvalidator.LengthBetween(1, 16)},
			},
			"password": schema.StringAttribute{
				Optional:  true,
				Sensitive: true,
				WriteOnly: true,
				MarkdownDescription: "BMC password, write-only (Terraform 1.11 or later): used by create and update, never stored. " +
					refreshNote,
				Validators: []validator.String{stringvalidator.LengthBetween(1, 20)},
			},
			"password_env": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Name of the environment variable holding the BMC password, like an inventory's `password.env`. Only the name is stored.",
				Validators: []validator.String{
					stringvalidator.RegexMatches(regexpEnvName, "must be an environment variable name"),
					stringvalidator.ConflictsWith(path.MatchRoot("password_file")),
				},
			},
			"password_file": schema.StringAttribute{
				Optional:            true,
				MarkdownDescription: "Path of a file holding the BMC password, like an inventory's `password.file`. Only the path is stored.",
				Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"cipher_suites": schema.ListAttribute{
				Optional:    true,
				ElementType: types.Int64Type,
				MarkdownDescription: fmt.Sprintf("RMCP+ cipher suites tried in order. Default: the provider's `bmc.cipher_suites`, else %v. Only %v are accepted.",
					inventory.DefaultCipherSuites, bmc.AllowedCipherSuites),
				Validators: cipherSuitesValidators(),
			},
			"power_state": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Desired power state, `on` or `off`. Refresh sets it to what the BMC reports, so a server whose " +
					"power changed outside Terraform shows a diff. Unset: the power is left alone (and only observed).",
				Validators: []validator.String{stringvalidator.OneOf(string(bmc.PowerOn), string(bmc.PowerOff))},
			},
			"boot_device": schema.StringAttribute{
				Optional: true,
				MarkdownDescription: "Next boot device, `pxe` or `disk`, set before the server is powered on. A one-time override " +
					"(`boot_persistent = false`) is consumed by the next boot; a persistent one is compared with what the BMC reports at each refresh.",
				Validators: []validator.String{stringvalidator.OneOf(string(bmc.BootPXE), string(bmc.BootDisk))},
			},
			"boot_persistent": schema.BoolAttribute{
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(false),
				MarkdownDescription: "Keep `boot_device` for every boot instead of the next one only (default false).",
			},
			"power_off_on_destroy": schema.BoolAttribute{
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(false),
				MarkdownDescription: "Power the server off (hard) when the resource is destroyed. Default false: destroy only forgets the server.",
			},
			"observed_power_state": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "Power state the BMC reported at the last refresh or apply (`on` or `off`).",
			},
			"observed_boot_device": schema.StringAttribute{
				Computed:            true,
				MarkdownDescription: "Boot override the BMC reported (`pxe`, `disk`, `none`, `other`); null when the BMC cannot report it.",
			},
			"fru_serial": schema.StringAttribute{
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				MarkdownDescription: "Serial number from FRU device 0 (product, board or chassis area); empty when the BMC has no FRU data.",
			},
			"fru_model": schema.StringAttribute{
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				MarkdownDescription: "Model (product name) from FRU device 0.",
			},
			"fru_manufacturer": schema.StringAttribute{
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				MarkdownDescription: "Manufacturer from FRU device 0.",
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{
				Create: true, Read: true, Update: true, Delete: true,
				CreateDescription: fmt.Sprintf("How long create may take, boot device and power included (default %s). A Go duration such as `30s` or `15m`.", DefaultServerCreateTimeout),
				ReadDescription:   fmt.Sprintf("How long a refresh may wait for the BMC before it warns and keeps the last state (default %s).", DefaultServerReadTimeout),
				UpdateDescription: fmt.Sprintf("How long an update may take, waiting for the power state included (default %s).", DefaultServerUpdateTimeout),
				DeleteDescription: fmt.Sprintf("How long destroy may take when it powers the server off (default %s).", DefaultServerDeleteTimeout),
			}),
		},
	}
}

func (r *serverResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.data = providerDataFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan refuses, at plan time, a server that refresh could not reach:
// without a user or a password reference (the write-only password is not
// kept) the next refresh would have nothing to log in with.
func (r *serverResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.data == nil {
		return
	}
	var m serverResourceModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(checkCredentials(m, r.data.BMC)...)
}

// checkCredentials reports what refresh would miss.
func checkCredentials(m serverResourceModel, def bmcDefaults) diag.Diagnostics {
	var diags diag.Diagnostics
	if m.User.IsNull() && def.User == "" {
		diags.AddAttributeError(path.Root("user"), "No BMC user",
			"Set user, or the provider's bmc.user, or "+EnvBMCUser+".")
	}
	if !m.PasswordEnv.IsNull() || !m.PasswordFile.IsNull() || m.PasswordEnv.IsUnknown() || m.PasswordFile.IsUnknown() || !def.Password.IsZero() {
		return diags
	}
	if !m.Password.IsNull() {
		diags.AddAttributeError(path.Root("password"), "No password reference for refresh",
			"password is write-only: Terraform does not keep it, and every refresh must log in to the BMC. Also set password_env "+
				"or password_file, or the provider's bmc.password_env / bmc.password_file (or "+EnvBMCPassword+").")
		return diags
	}
	diags.AddAttributeError(path.Root("password_env"), "No BMC password",
		"Set password_env or password_file (and optionally the write-only password), or the provider's bmc.password_env / "+
			"bmc.password_file, or export "+EnvBMCPassword+".")
	return diags
}

func (r *serverResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m serverResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	var password types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("password"), &password)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Create(ctx, DefaultServerCreateTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if m.Name.IsUnknown() || m.Name.IsNull() {
		m.Name = m.Address
	}
	m.ID = types.StringValue(endpointID(m.Address.ValueString(), m.Port.ValueInt64()))
	resp.Diagnostics.Append(r.converge(ctx, &m, password, nil)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.Password = types.StringNull()
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func (r *serverResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior serverResourceModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	var password types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("password"), &password)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Update(ctx, DefaultServerUpdateTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if m.Name.IsUnknown() || m.Name.IsNull() {
		m.Name = prior.Name
	}
	resp.Diagnostics.Append(r.converge(ctx, &m, password, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.Password = types.StringNull()
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// converge sets the boot device and the power state m asks for, then
// records what the BMC reports. prior is nil on create.
func (r *serverResource) converge(ctx context.Context, m *serverResourceModel, password types.String, prior *serverResourceModel) diag.Diagnostics {
	var diags diag.Diagnostics
	c, release, diags := r.client(ctx, *m, password)
	if diags.HasError() {
		return diags
	}
	defer release()
	want := bmc.PowerState(m.PowerState.ValueString())
	if dev := m.BootDevice.ValueString(); dev != "" {
		// A one-time override is consumed by the boot it served: set it
		// again whenever it changed or the server is about to power on.
		changed := prior == nil || !prior.BootDevice.Equal(m.BootDevice) || !prior.BootPersistent.Equal(m.BootPersistent)
		if changed || want == bmc.PowerOn {
			if _, err := c.SetBootDevice(ctx, bmc.BootOptions{Device: bmc.BootDevice(dev), Persistent: m.BootPersistent.ValueBool()}); err != nil {
				diags.AddAttributeError(path.Root("boot_device"), "Cannot set the boot device", err.Error())
				return diags
			}
		}
	}
	if want != "" {
		action := bmc.ActionOn
		if want == bmc.PowerOff {
			action = bmc.ActionOff
		}
		ch, err := c.SetPower(ctx, action)
		if err != nil {
			diags.AddAttributeError(path.Root("power_state"), "Cannot set the power state", err.Error())
			return diags
		}
		if ch.Changed() {
			if err := c.WaitPower(ctx, want, timeLeft(ctx)); err != nil {
				diags.AddAttributeError(path.Root("power_state"), "Power state not reached", err.Error())
				return diags
			}
		}
	}
	obs, err := observe(ctx, c)
	if err != nil {
		diags.AddError("Cannot read the server's state from its BMC", err.Error())
		return diags
	}
	obs.apply(m, false)
	return diags
}

func (r *serverResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m serverResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	imported, diags := req.Private.GetKey(ctx, importedKey)
	resp.Diagnostics.Append(diags...)
	timeout, diags := m.Timeouts.Read(ctx, DefaultServerReadTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, release, diags := r.client(ctx, m, types.StringNull())
	if diags.HasError() {
		// Refresh without credentials keeps the state rather than
		// failing every plan; apply reports the problem as an error.
		for _, d := range diags.Errors() {
			resp.Diagnostics.AddWarning("Server not refreshed: "+d.Summary(), d.Detail()+" The last known state is kept.")
		}
		return
	}
	defer release()
	obs, err := observe(ctx, c)
	if err != nil {
		if refreshFatal(err) {
			resp.Diagnostics.AddError("Cannot refresh the server from its BMC", err.Error())
			return
		}
		resp.Diagnostics.AddWarning("BMC did not answer: last known state kept",
			fmt.Sprintf("%v. The resource stays in state unchanged; the next refresh tries again.", err))
		return
	}
	obs.apply(&m, len(imported) > 0)
	if len(imported) > 0 {
		resp.Diagnostics.Append(resp.Private.SetKey(ctx, importedKey, nil)...)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// refreshFatal tells errors a user must fix (credentials, configuration)
// from a BMC that is down or slow, which only warns.
func refreshFatal(err error) bool {
	return errors.Is(err, bmc.ErrAuth) || errors.Is(err, bmc.ErrConfig) || errors.Is(err, bmc.ErrNoCipherSuite)
}

func (r *serverResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m serverResourceModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || !m.PowerOffOnDestroy.ValueBool() {
		return
	}
	timeout, diags := m.Timeouts.Delete(ctx, DefaultServerDeleteTimeout)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Destroy sees no configuration, so no write-only password either.
	c, release, diags := r.client(ctx, m, types.StringNull())
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	defer release()
	ch, err := c.SetPower(ctx, bmc.ActionOff)
	if err == nil && ch.Changed() {
		err = c.WaitPower(ctx, bmc.PowerOff, timeLeft(ctx))
	}
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("power_off_on_destroy"), "Cannot power the server off", err.Error()+
			": fix the BMC or set power_off_on_destroy = false to destroy without touching the server.")
	}
}

// ImportState takes "[user@]address[:port]"; credentials come from the
// provider's bmc defaults (or the user in the ID), and the first Read
// records the power state the BMC reports.
func (r *serverResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	user, host, port, err := parseImportID(req.ID)
	if err != nil {
		resp.Diagnostics.AddError("Invalid import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), endpointID(host, port))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), host)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("address"), host)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("port"), port)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("boot_persistent"), false)...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("power_off_on_destroy"), false)...)
	if user != "" {
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("user"), user)...)
	}
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, importedKey, []byte(`true`))...)
}

// parseImportID splits "[user@]address[:port]"; IPv6 addresses take
// brackets when a port follows.
func parseImportID(id string) (user, host string, port int64, err error) {
	rest := id
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, rest = rest[:i], rest[i+1:]
		if user == "" || len(user) > 16 {
			return "", "", 0, fmt.Errorf("import ID %q: the user before @ must be 1 to 16 bytes", id)
		}
	}
	port = inventory.DefaultBMCPort
	host = rest
	if h, p, splitErr := net.SplitHostPort(rest); splitErr == nil {
		n, convErr := strconv.Atoi(p)
		if convErr != nil || n < 1 || n > 65535 {
			return "", "", 0, fmt.Errorf("import ID %q: port %q is not a UDP port", id, p)
		}
		host, port = h, int64(n)
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if strings.Contains(host, ":") {
		if a, perr := netip.ParseAddr(host); perr != nil || !a.Is6() || a.Zone() != "" {
			return "", "", 0, fmt.Errorf("import ID %q: %q is not an IPv6 address: use [user@]address[:port], e.g. [2001:db8::10]:623", id, host)
		}
	} else if !regexpHostName.MatchString(host) {
		return "", "", 0, fmt.Errorf("import ID %q: use [user@]address[:port], e.g. 198.18.0.10:623", id)
	}
	return user, host, port, nil
}

func endpointID(host string, port int64) string {
	return net.JoinHostPort(host, strconv.FormatInt(port, 10))
}

// target translates the resource's arguments, with the provider's
// defaults, into a bmc.Target. password is the write-only argument (null
// during refresh); otherwise the references are resolved.
func target(m serverResourceModel, def bmcDefaults, password types.String) (bmc.Target, diag.Diagnostics) {
	var diags diag.Diagnostics
	t := bmc.Target{
		Server:       m.Name.ValueString(),
		Address:      m.Address.ValueString(),
		Port:         int(m.Port.ValueInt64()),
		User:         m.User.ValueString(),
		CipherSuites: def.CipherSuites,
	}
	if t.Server == "" {
		t.Server = t.Address
	}
	if t.User == "" {
		t.User = def.User
	}
	if t.User == "" {
		diags.AddAttributeError(path.Root("user"), "No BMC user", "Set user, or the provider's bmc.user, or "+EnvBMCUser+".")
	}
	if !m.CipherSuites.IsNull() && !m.CipherSuites.IsUnknown() {
		var cs []int64
		diags.Append(m.CipherSuites.ElementsAs(context.Background(), &cs, false)...)
		t.CipherSuites = intsOf(cs)
	}
	if len(t.CipherSuites) == 0 {
		t.CipherSuites = append([]int(nil), inventory.DefaultCipherSuites...)
	}
	ref := inventory.SecretRef{Env: m.PasswordEnv.ValueString(), File: m.PasswordFile.ValueString()}
	at := path.Root("password_env")
	if m.PasswordEnv.IsNull() && !m.PasswordFile.IsNull() {
		at = path.Root("password_file")
	}
	switch {
	case !password.IsNull() && !password.IsUnknown():
		t.Password = password.ValueString()
	case !ref.IsZero():
		pw, err := ref.Resolve()
		if err != nil {
			diags.AddAttributeError(at, "Cannot read the BMC password", fmt.Sprintf("%s: %v", t.Server, err))
		}
		t.Password = pw
	case !def.Password.IsZero():
		pw, err := def.Password.Resolve()
		if err != nil {
			diags.AddAttributeError(at, "Cannot read the BMC password", fmt.Sprintf("%s: provider bmc password: %v", t.Server, err))
		}
		t.Password = pw
	default:
		diags.AddAttributeError(at, "No BMC password",
			"Set password_env or password_file, or the provider's bmc.password_env / bmc.password_file, or export "+EnvBMCPassword+".")
	}
	if diags.HasError() {
		return bmc.Target{}, diags
	}
	if err := t.Validate(); err != nil {
		diags.AddError("Invalid BMC target", err.Error())
	}
	return t, diags
}

// client opens a BMC client for one CRUD call, logging to tflog, inside
// the provider's concurrency limit. release closes the session and frees
// the slot.
func (r *serverResource) client(ctx context.Context, m serverResourceModel, password types.String) (*bmc.Client, func(), diag.Diagnostics) {
	data := r.data
	if data == nil {
		data = &providerData{Concurrency: DefaultConcurrency, sem: make(chan struct{}, DefaultConcurrency)}
	}
	t, diags := target(m, data.BMC, password)
	if diags.HasError() {
		return nil, nil, diags
	}
	opts := data.BMC.Options
	opts.Logger = newLogger(ctx)
	c, err := bmc.NewClient(t, opts)
	if err != nil {
		diags.AddError("Invalid BMC target", err.Error())
		return nil, nil, diags
	}
	free, err := data.acquire(ctx)
	if err != nil {
		diags.AddError("Interrupted", fmt.Sprintf("waiting for a free BMC slot for %s: %v", t, err))
		return nil, nil, diags
	}
	return c, func() {
		_ = c.Close(context.WithoutCancel(ctx))
		free()
	}, diags
}

// observation is what a refresh reads from the BMC.
type observation struct {
	power bmc.PowerState
	boot  *bmc.BootStatus
	facts bmc.Facts
}

// observe reads the power state, the boot override (when the BMC can
// report it) and the FRU facts (empty when the BMC has none).
func observe(ctx context.Context, c *bmc.Client) (observation, error) {
	var o observation
	var err error
	if o.power, err = c.PowerState(ctx); err != nil {
		return o, err
	}
	if st, err := c.BootStatus(ctx); err == nil {
		o.boot = &st
	} else if !errors.Is(err, bmc.ErrUnsupported) {
		return o, err
	}
	f, err := c.FRU(ctx)
	var ce *bmc.CompletionError
	switch {
	case err == nil:
		o.facts = f.Facts()
	case errors.As(err, &ce) && (ce.Code == 0xCB || ce.Code == 0xCC):
		// No FRU device 0: the facts stay empty.
	default:
		return o, err
	}
	return o, nil
}

// apply records an observation in the model. A managed power_state (or
// any, right after an import) takes the observed value so that drift is a
// diff; a persistent boot device likewise.
func (o observation) apply(m *serverResourceModel, imported bool) {
	m.ObservedPowerState = types.StringValue(string(o.power))
	if !m.PowerState.IsNull() || imported {
		m.PowerState = types.StringValue(string(o.power))
	}
	m.ObservedBootDevice = types.StringNull()
	if o.boot != nil {
		m.ObservedBootDevice = types.StringValue(string(o.boot.Device))
		if m.BootPersistent.ValueBool() && !m.BootDevice.IsNull() &&
			(o.boot.Device == bmc.BootPXE || o.boot.Device == bmc.BootDisk || o.boot.Device == bmc.BootNone) {
			m.BootDevice = types.StringValue(string(o.boot.Device))
		}
	}
	m.FRUSerial = types.StringValue(o.facts.Serial)
	m.FRUModel = types.StringValue(o.facts.Model)
	m.FRUManufacturer = types.StringValue(o.facts.Manufacturer)
}

// timeLeft is the time until ctx's deadline (a minute without one).
func timeLeft(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return time.Minute
}
