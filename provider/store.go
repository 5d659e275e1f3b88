package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The engine's state (installer.Store: PKI and the last apply's
// allocations) lives in Terraform state, in a Sensitive attribute holding
// a versioned blob of files (installer/state EncodeBlob: {"format":2,
// "files":{...}}; the bare JSON object of files older providers wrote is
// still read and is rewritten in the current format by the next write or
// by the schema upgrade). Each operation loads it into an in-memory store
// (state.Mem), runs the engine on it and encodes the store again: nothing
// is written to disk (engine_run.go).

// encodeFiles is the state blob of files, in the current format (map keys
// sorted, so the same files always give the same string).
func encodeFiles(files map[string]string) (string, error) {
	return state.EncodeBlob(files)
}

// decodeFiles reads a state blob of any format this provider knows; null,
// unknown or empty is no state yet. A blob written by a newer provider is
// an error that says to upgrade.
func decodeFiles(v types.String) (map[string]string, error) {
	if v.IsNull() || v.IsUnknown() {
		return map[string]string{}, nil
	}
	files, _, err := state.DecodeBlob(v.ValueString())
	return files, err
}

// overlay returns base with over's files on top (neither is changed).
func overlay(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// diffFiles returns the files of next that base lacks or holds with other
// content: what a node resource adds to the cluster's state.
func diffFiles(base, next map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range next {
		if b, ok := base[k]; !ok || b != v {
			out[k] = v
		}
	}
	return out
}

// inventoryInput is the inventory as a resource's path/yaml arguments give
// it.
type inventoryInput struct {
	Path types.String
	YAML types.String
}

func (in inventoryInput) source() inventorySource {
	if !in.Path.IsNull() {
		return inventorySource{pathValue: in.Path, yamlValue: types.StringNull(), attr: path.Root("path"), name: in.Path.ValueString()}
	}
	return inventorySource{pathValue: types.StringNull(), yamlValue: in.YAML, attr: path.Root("yaml"), name: "the inline inventory"}
}

func (in inventoryInput) unknown() bool { return in.Path.IsUnknown() || in.YAML.IsUnknown() }

// content is the inventory document's bytes.
func (in inventoryInput) content() ([]byte, error) {
	if !in.Path.IsNull() {
		b, err := os.ReadFile(in.Path.ValueString())
		if err != nil {
			return nil, fmt.Errorf("reading the inventory: %w", err)
		}
		return b, nil
	}
	return []byte(in.YAML.ValueString()), nil
}

// loadCluster reads and validates the inventory with the provider's SSH
// defaults filled in where the inventory leaves them unset. Problems
// become diagnostics on the source attribute.
func loadCluster(in inventoryInput, d *providerData) (*inventory.Cluster, *inventory.Lines, diag.Diagnostics) {
	s := in.source()
	c, lines, diags := s.load()
	if diags.HasError() {
		return nil, nil, diags
	}
	applySSHDefaults(c, d)
	res := c.Validate(lines)
	if !res.OK() {
		diags.Append(problemDiags(s, res.Errors, nil)...)
		return nil, nil, diags
	}
	return c, lines, diags
}

// inlineKeyFile stands for the provider's ssh.private_key in spec.ssh.keyFile:
// the engine holds that key in memory under this name (Config.SSHKeys).
const inlineKeyFile = "(provider ssh.private_key)"

// applySSHDefaults fills the inventory's SSH settings from the provider's
// ssh block where the inventory is silent: spec.ssh, then (through the
// inventory's own defaulting) every server and jump host. A private key
// given inline stays in memory (newEngineRun passes it to the engine).
// The login user is not among them: the inventory defaults it to root.
func applySSHDefaults(c *inventory.Cluster, d *providerData) {
	if d == nil {
		return
	}
	sp := &c.Spec.SSH
	switch {
	case sp.KeyFile != "":
	case d.SSH.PrivateKeyFile != "":
		sp.KeyFile = d.SSH.PrivateKeyFile
	case d.SSH.PrivateKey != "":
		sp.KeyFile = inlineKeyFile
	}
	if sp.Agent == nil && d.SSH.Agent {
		t := true
		sp.Agent = &t
	}
	if sp.Bastion == nil && d.SSH.Bastion != nil {
		b := *d.SSH.Bastion
		sp.Bastion = &b
	}
	c.SetDefaults()
}

// withoutServers is a copy of c without the named servers (the status
// view of tricenter_cluster leaves out the servers tricenter_node joins).
func withoutServers(c *inventory.Cluster, drop []string) *inventory.Cluster {
	if len(drop) == 0 {
		return c
	}
	cc := *c
	cc.Spec.Racks = slices.Clone(c.Spec.Racks)
	for i := range cc.Spec.Racks {
		r := &cc.Spec.Racks[i]
		r.Servers = slices.DeleteFunc(slices.Clone(r.Servers), func(s inventory.Server) bool { return slices.Contains(drop, s.Name) })
	}
	return &cc
}

// etcdMembersOf maps the placement's etcd members to their centers.
func etcdMembersOf(p *inventory.Placement) map[string]string {
	out := map[string]string{}
	for _, m := range p.Etcd.Members {
		out[m.Name] = m.Center
	}
	return out
}

// memberDiff lists the members of next that prev lacks (added) and those
// of prev that next lacks (removed), sorted, with their centers.
func memberDiff(prev, next map[string]string) (added, removed []string) {
	for n, c := range next {
		if _, ok := prev[n]; !ok {
			added = append(added, n+" ("+c+")")
		}
	}
	for n, c := range prev {
		if _, ok := next[n]; !ok {
			removed = append(removed, n+" ("+c+")")
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

// changedHosts lists the hosts a result changed, sorted.
func changedHosts(r *installer.Result) []string {
	if r == nil {
		return []string{}
	}
	out := r.Hosts()
	if out == nil {
		out = []string{}
	}
	return out
}

// gateLines renders the gates as "name: detail (ok|FAILED)".
func gateLines(r *installer.Result) []string {
	out := []string{}
	if r == nil {
		return out
	}
	for _, g := range r.Gates {
		if g.NotRun != "" {
			out = append(out, g.Name+": not run ("+g.NotRun+")")
			continue
		}
		verdict := "ok"
		if !g.OK {
			verdict = "FAILED"
		}
		out = append(out, g.Name+": "+verdict+" ("+g.Detail+")")
	}
	return out
}

// engineErrorDetail explains an engine error, a deadline in Terraform terms.
func engineErrorDetail(what string, err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return what + ": " + err.Error() + ". The timeouts block of the resource bounds this operation: raise it, " +
			"then apply again (the engine continues from what is done)."
	}
	return what + ": " + err.Error() + ". Fix the cause and apply again: the engine continues from what is done."
}
