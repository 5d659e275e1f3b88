package provider

import (
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Certificate renewal in the plan (tricenter_cluster, tricenter_node):
// refresh records whether a leaf certificate of the resource's state is
// within spec.pki.renewBefore of its expiry (certificates_renew_due) and
// the earliest leaf expiry; a plan over a state that says due plans
// certificates_renew_due = false, an update whose apply reissues the due
// leaves (pki.Store.Leaf) and restarts what uses them.

const (
	attrRenewDue       = "certificates_renew_due"
	attrEarliestExpiry = "earliest_certificate_expiry"
)

// renewalFunc is Engine.RenewalDue or installer.RenewalDue over a store.
type renewalFunc func() (due bool, earliest time.Time, what string, err error)

// renewalAttributes are the two computed attributes; whose names the
// certificates they judge ("the cluster's", "this node's own kubelet").
func renewalAttributes(whose string) map[string]schema.Attribute {
	return map[string]schema.Attribute{
		attrRenewDue: schema.BoolAttribute{
			Computed: true,
			MarkdownDescription: "Whether the last refresh found one of " + whose + " leaf certificates within `spec.pki.renewBefore` " +
				"of its expiry (or expired). When it is `true` the next plan shows an update of it (`true` → known after apply) whose apply " +
				"reissues the due certificates and restarts what uses them. Null until the first refresh after an upgrade of the provider.",
		},
		attrEarliestExpiry: schema.StringAttribute{
			Computed:            true,
			MarkdownDescription: "When the first of " + whose + " leaf certificates expires (RFC 3339, UTC), as the last refresh or apply found it.",
		},
	}
}

// renewalValues are the attributes' values for a judgement (an empty
// store: not due, no expiry).
func renewalValues(due bool, earliest time.Time) (types.Bool, types.String) {
	if earliest.IsZero() {
		return types.BoolValue(due), types.StringNull()
	}
	return types.BoolValue(due), types.StringValue(earliest.UTC().Format(time.RFC3339))
}

// readRenewal sets *due and *earliest from f, as refresh does: a warning
// when a renewal is due; when f fails, a warning and the last values kept.
func readRenewal(f renewalFunc, due *types.Bool, earliest *types.String, diags *diag.Diagnostics) {
	d, at, what, err := f()
	if err != nil {
		diags.AddAttributeWarning(path.Root(attrRenewDue), "Certificate expiry not checked",
			fmt.Sprintf("Reading the certificates of the state: %v. The last values are kept.", err))
		return
	}
	*due, *earliest = renewalValues(d, at)
	if d {
		diags.AddAttributeWarning(path.Root(attrRenewDue), "Certificates due for renewal",
			fmt.Sprintf("Certificates due for renewal: %s expires %s. The next apply reissues them and restarts what uses them.",
				what, at.UTC().Format(time.RFC3339)))
	}
}

// applyRenewal sets *due and *earliest after an apply (null when the state
// holds no certificate to judge yet).
func applyRenewal(f renewalFunc, due *types.Bool, earliest *types.String) {
	d, at, _, err := f()
	if err != nil {
		*due, *earliest = types.BoolNull(), types.StringNull()
		return
	}
	*due, *earliest = renewalValues(d, at)
}

// planRenewal plans the two attributes from the prior state's values and,
// when f is not nil, from the prior state's certificates at the plan's
// time (so a plan with -refresh=false still shows the renewal). A prior
// without the attribute (null: written by an older provider) plans
// nothing; a partial apply (components or skip_phases) may not reissue
// every certificate, so it plans nothing either. It returns the warning
// to show when the plan renews ("" when it does not).
func planRenewal(prior types.Bool, partial bool, f renewalFunc, due *types.Bool, earliest *types.String) string {
	if prior.IsNull() || prior.IsUnknown() || partial {
		return ""
	}
	if prior.ValueBool() {
		*due = types.BoolValue(false)
		return "This update reissues the certificates within spec.pki.renewBefore of their expiry (refresh found them due) and restarts what uses them."
	}
	if f == nil {
		return ""
	}
	d, at, what, err := f()
	if err != nil || !d {
		return ""
	}
	*due = types.BoolValue(false)
	*earliest = types.StringUnknown()
	return fmt.Sprintf("This update reissues the certificates within spec.pki.renewBefore of their expiry (%s expires %s) and restarts what uses them.",
		what, at.UTC().Format(time.RFC3339))
}

// nodeRenewal judges a node's own certificates (its files of the engine
// state, e.g. its kubelet client and serving certificates), not its
// cluster's.
func nodeRenewal(files map[string]string, c *inventory.Cluster, now time.Time) renewalFunc {
	return func() (bool, time.Time, string, error) {
		m, err := state.NewMem(files, "")
		if err != nil {
			return false, time.Time{}, "", err
		}
		return installer.RenewalDue(m.PKI(), c, now)
	}
}
