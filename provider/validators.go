package provider

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
)

var (
	regexpHTTPURL = regexp.MustCompile(`^https?://[^\s/]+`)
	regexpEnvName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// regexpHostName is an IPv4 address or a DNS name.
	regexpHostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)
)

// cipherSuitesValidators check a cipher suite list at plan time: at least
// one suite, no repeats, only the suites the bmc package accepts.
func cipherSuitesValidators() []validator.List {
	allowed := make([]int64, len(bmc.AllowedCipherSuites))
	for i, s := range bmc.AllowedCipherSuites {
		allowed[i] = int64(s)
	}
	return []validator.List{
		listvalidator.SizeAtLeast(1),
		listvalidator.UniqueValues(),
		listvalidator.ValueInt64sAre(int64validator.OneOf(allowed...)),
	}
}

// durationValidator accepts a non-negative Go duration ("500ms", "2s").
type durationValidator struct{}

var _ validator.String = durationValidator{}

func (durationValidator) Description(context.Context) string {
	return "value must be a non-negative duration such as 500ms, 2s or 1m"
}

func (v durationValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v durationValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	d, err := time.ParseDuration(req.ConfigValue.ValueString())
	if err != nil || d < 0 {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid duration",
			fmt.Sprintf("%s is %q: %s.", req.Path, req.ConfigValue.ValueString(), v.Description(ctx)))
	}
}

// waitReachableAttribute is the wait_reachable attribute of the resources
// that install servers.
func waitReachableAttribute() schema.StringAttribute {
	return schema.StringAttribute{
		Optional: true,
		MarkdownDescription: "How long create and update first wait for every server they install to accept SSH, a Go " +
			"duration such as `5m`: servers just powered on by `tricenter_server` are still booting. Default: no wait " +
			"(an unreachable server fails the apply at once).",
		Validators: []validator.String{durationValidator{}},
	}
}

// waitReachable is the configured wait_reachable (validated at plan).
func waitReachable(v types.String) time.Duration {
	if v.IsNull() || v.IsUnknown() {
		return 0
	}
	d, _ := time.ParseDuration(v.ValueString())
	return d
}
