package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/tricenter/terraform-provider-tricenter/installer/state"
)

// Schema versions of the resources that keep engine state. Version 0 kept
// the bare JSON object of files; version 1 keeps the versioned blob
// (state.EncodeBlob).
const (
	clusterSchemaVersion = 1
	nodeSchemaVersion    = 1
)

// blobUpgrader upgrades a resource's state from schema version 0: the
// string attributes named hold engine state blobs, rewritten in the
// current format; every other attribute is kept as it was (attributes
// added since are null). It works on the raw JSON of the state, so it
// does not depend on a copy of the version 0 schema.
func blobUpgrader(attrs ...string) resource.StateUpgrader {
	return resource.StateUpgrader{StateUpgrader: func(_ context.Context, req resource.UpgradeStateRequest, resp *resource.UpgradeStateResponse) {
		if req.RawState == nil || req.RawState.JSON == nil {
			resp.Diagnostics.AddError("Cannot upgrade the resource state",
				"The state holds no JSON (Terraform before 0.12 wrote it): refresh it with an older provider and Terraform first.")
			return
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(req.RawState.JSON, &obj); err != nil {
			resp.Diagnostics.AddError("Cannot upgrade the resource state", fmt.Sprintf("The state is not a JSON object: %v.", err))
			return
		}
		for _, a := range attrs {
			raw, ok := obj[a]
			if !ok || string(raw) == "null" {
				continue
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				resp.Diagnostics.AddAttributeError(path.Root(a), "Cannot upgrade the engine state", fmt.Sprintf("%s is not a string: %v.", a, err))
				continue
			}
			if s == "" {
				continue
			}
			files, _, err := state.DecodeBlob(s)
			if err != nil {
				resp.Diagnostics.AddAttributeError(path.Root(a), "Cannot upgrade the engine state", err.Error()+".")
				continue
			}
			enc, err := state.EncodeBlob(files)
			if err != nil {
				resp.Diagnostics.AddAttributeError(path.Root(a), "Cannot upgrade the engine state", err.Error()+".")
				continue
			}
			if obj[a], err = json.Marshal(enc); err != nil {
				resp.Diagnostics.AddAttributeError(path.Root(a), "Cannot upgrade the engine state", err.Error()+".")
			}
		}
		if resp.Diagnostics.HasError() {
			return
		}
		b, err := json.Marshal(obj)
		if err != nil {
			resp.Diagnostics.AddError("Cannot upgrade the resource state", err.Error())
			return
		}
		resp.DynamicValue = &tfprotov6.DynamicValue{JSON: b}
	}}
}

// UpgradeState rewrites a version 0 state's engine state in the current
// format.
func (r *clusterResource) UpgradeState(context.Context) map[int64]resource.StateUpgrader {
	return map[int64]resource.StateUpgrader{0: blobUpgrader("state")}
}

// UpgradeState rewrites a version 0 state's engine state and its copy of
// the cluster's in the current format (the cluster's own upgrade writes
// the same string, so the node plans no change for it).
func (r *nodeResource) UpgradeState(context.Context) map[int64]resource.StateUpgrader {
	return map[int64]resource.StateUpgrader{0: blobUpgrader("state", "cluster_state")}
}
