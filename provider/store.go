package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The engine's state (installer.Store: PKI and the last apply's
// allocations) lives in Terraform state, in a Sensitive attribute holding
// the JSON of state.Snapshot's map. Each operation materialises it into a
// private temporary directory, runs the engine on it, snapshots it back
// and removes the directory: nothing stays behind on disk.

// encodeFiles is the JSON of a snapshot (map keys sorted, so the same files
// always give the same string).
func encodeFiles(files map[string]string) (string, error) {
	if files == nil {
		files = map[string]string{}
	}
	b, err := json.Marshal(files)
	if err != nil {
		return "", fmt.Errorf("encoding the engine state: %w", err)
	}
	return string(b), nil
}

// decodeFiles reads an encoded snapshot; null or empty is no state yet.
func decodeFiles(v types.String) (map[string]string, error) {
	files := map[string]string{}
	if v.IsNull() || v.IsUnknown() || v.ValueString() == "" {
		return files, nil
	}
	if err := json.Unmarshal([]byte(v.ValueString()), &files); err != nil {
		return nil, fmt.Errorf("the engine state in Terraform state is not a JSON object of files (%w): restore the state from a backup", err)
	}
	return files, nil
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

// priorOf reads the last apply's allocations from a snapshot (nil when it
// holds none).
func priorOf(files map[string]string) (*inventory.Prior, error) {
	s, ok := files["prior.json"]
	if !ok {
		return nil, nil
	}
	var p inventory.Prior
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, fmt.Errorf("prior.json in the engine state: %w", err)
	}
	return &p, nil
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

// inventorySHA256 is the hex SHA-256 of the inventory document, so that an
// edit of the file behind an unchanged path shows up in the plan.
func inventorySHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
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

// inlineKeyFile stands for the provider's ssh.private_key in spec.ssh.keyFile
// until newEngineRun writes the key to its private directory.
const inlineKeyFile = "(provider ssh.private_key)"

// applySSHDefaults fills the inventory's SSH settings from the provider's
// ssh block where the inventory is silent: spec.ssh, then (through the
// inventory's own defaulting) every server and jump host. A private key
// given inline is written by newEngineRun (it needs a file) and set there.
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

// withKeyFile is a copy of c whose SSH key files named from are key: the
// servers, the jump hosts and the bastion (c is not changed).
func withKeyFile(c *inventory.Cluster, from, key string) *inventory.Cluster {
	cc := *c
	swap := func(p *string) {
		if *p == from {
			*p = key
		}
	}
	swap(&cc.Spec.SSH.KeyFile)
	if b := cc.Spec.SSH.Bastion; b != nil {
		bb := *b
		swap(&bb.KeyFile)
		cc.Spec.SSH.Bastion = &bb
	}
	cc.Spec.Centers = slices.Clone(c.Spec.Centers)
	for i := range cc.Spec.Centers {
		if j := cc.Spec.Centers[i].JumpHost; j != nil {
			jj := *j
			swap(&jj.KeyFile)
			cc.Spec.Centers[i].JumpHost = &jj
		}
	}
	cc.Spec.Racks = slices.Clone(c.Spec.Racks)
	for i := range cc.Spec.Racks {
		r := &cc.Spec.Racks[i]
		r.Servers = slices.Clone(r.Servers)
		for j := range r.Servers {
			swap(&r.Servers[j].SSH.KeyFile)
		}
	}
	return &cc
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

// engineRun is one engine over a private copy of the engine state.
type engineRun struct {
	root  string // 0700 temporary directory, removed by Close
	store *state.Dir
	eng   *installer.Engine
}

// engineOptions are the inputs of newEngineRun.
type engineOptions struct {
	Cluster *inventory.Cluster
	Lines   *inventory.Lines
	Source  string
	Files   map[string]string
	Data    *providerData // nil: the provider's defaults
}

// newEngineRun materialises files into a private directory and builds the
// engine on it (purely local: installer.New touches no host).
func newEngineRun(ctx context.Context, o engineOptions) (*engineRun, error) {
	root, err := os.MkdirTemp("", "tricenter-tf-")
	if err != nil {
		return nil, fmt.Errorf("creating a private directory for the engine state: %w", err)
	}
	r := &engineRun{root: root}
	if err := os.Chmod(root, 0o700); err != nil {
		r.Close()
		return nil, fmt.Errorf("creating a private directory for the engine state: %w", err)
	}
	r.store = &state.Dir{Path: filepath.Join(root, "state")}
	if err := state.Restore(r.store.Path, o.Files); err != nil {
		r.Close()
		return nil, fmt.Errorf("restoring the engine state: %w", err)
	}
	d := o.Data
	if d == nil {
		d = &providerData{Concurrency: DefaultConcurrency}
	}
	c := o.Cluster
	if d.SSH.PrivateKey != "" {
		key := filepath.Join(root, "ssh-key")
		if err := fsutil.WriteFileAtomic(key, []byte(d.SSH.PrivateKey), 0o600); err != nil {
			r.Close()
			return nil, fmt.Errorf("writing the provider's SSH key to the private directory: %w", err)
		}
		c = withKeyFile(c, inlineKeyFile, key)
	}
	cfg := installer.Config{Cluster: c, Lines: o.Lines, Source: o.Source, Store: r.store,
		SSH: ssh.Options{KnownHosts: d.SSH.KnownHosts}, Logger: newLogger(ctx), Concurrency: d.Concurrency,
		Holder: d.Holder, Leases: d.Leases, LockTimeout: d.LockTimeout, SkipStoreLock: true}
	if d.ArtifactDir != "" && c.Spec.Kubernetes.ArtifactDir == "" {
		cc := *c
		cc.Spec.Kubernetes.ArtifactDir = d.ArtifactDir
		cfg.Cluster = &cc
	}
	if dir := cfg.Cluster.Spec.Kubernetes.ArtifactDir; dir != "" {
		if p := filepath.Join(dir, "tricenter-bgp"); fileExists(p) {
			cfg.AgentBinary = p
		}
	}
	r.eng, err = installer.New(cfg)
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// files snapshots the engine state as it is now.
func (r *engineRun) files() (map[string]string, error) {
	f, err := state.Snapshot(r.store.Path)
	if err != nil {
		return nil, fmt.Errorf("saving the engine state: %w", err)
	}
	return f, nil
}

// Close closes the engine and removes the private directory.
func (r *engineRun) Close() {
	if r.eng != nil {
		_ = r.eng.Close()
	}
	_ = os.RemoveAll(r.root)
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
