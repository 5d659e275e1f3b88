package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// The one path from a resource to the engine, shared by tricenter_cluster,
// tricenter_node and tricenter_kubeconfig: read the inventory, decode the
// engine state from the resource's attributes, build the engine on an
// in-memory store, call it, encode the store again. Orchestration stays in
// the engine.

// withTimeout bounds ctx by one timeout of a resource's timeouts block
// (def when the block leaves it unset) and runs op; op does not run when
// the block cannot be read.
func withTimeout(ctx context.Context, timeout func(context.Context, time.Duration) (time.Duration, diag.Diagnostics),
	def time.Duration, diags *diag.Diagnostics, op func(context.Context)) {
	d, dd := timeout(ctx, def)
	diags.Append(dd...)
	if diags.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	op(ctx)
}

// stateInput is one engine state blob a resource hands its engine, with
// the attribute it comes from (diagnostics point at it).
type stateInput struct {
	Value types.String
	Attr  path.Path
	// What names it in diagnostics ("engine state", "cluster state").
	What string
}

// engineRequest is what a resource builds its engine from.
type engineRequest struct {
	Inventory inventoryInput
	// States are overlaid in order (a node's own files on the cluster's).
	States []stateInput
	// Drop leaves these servers out of the inventory (the cluster's view
	// without the servers tricenter_node joins).
	Drop []string
	// Refused is the summary of the diagnostic when the engine refuses the
	// inventory with this state (default "Invalid inventory for this
	// cluster").
	Refused string
	// KubernetesVersion, when set, overrides the inventory's
	// spec.kubernetes.version (tricenter_cluster.kubernetes_version); its
	// diagnostics point at VersionAttr.
	KubernetesVersion string
	VersionAttr       path.Path
	// FollowReleases takes the releases the first state records (the
	// cluster's, for tricenter_node) instead of the inventory's, so a
	// node follows its cluster through an upgrade.
	FollowReleases bool
	// PKIDir is where the PKI is kept outside the state
	// (tricenter_cluster.pki_dir; "" in the state). nil follows the first
	// state (the cluster's: a node and a kubeconfig keep its choice).
	PKIDir *string
	// PKISubdir, with a PKI directory, is where under it this resource
	// writes its files (a node's own keys in nodes/<server>, so a node
	// never rewrites a file the cluster's fingerprints cover).
	PKISubdir string
}

// engineRun is one engine over the engine state in memory (state.Mem): no
// temporary directory, nothing written to disk. Close it when done.
type engineRun struct {
	store *state.Mem
	eng   *installer.Engine
	// inputs are the decoded States of the request, in order (with a PKI
	// kept in a directory read back in).
	inputs []map[string]string
	// pkiDir, when set, is where stateValue puts the PKI (pki_dir.go).
	pkiDir string
}

// openEngine is the one way a resource builds its engine: the inventory
// with the provider's SSH defaults, the engine state decoded from the
// resource's attributes (any blob format this provider reads), an
// in-memory store. Problems are diagnostics on the attribute at fault.
func openEngine(ctx context.Context, data *providerData, req engineRequest) (*engineRun, diag.Diagnostics) {
	c, lines, diags := loadCluster(req.Inventory, data)
	if diags.HasError() {
		return nil, diags
	}
	if v := req.KubernetesVersion; v != "" && v != c.Spec.Kubernetes.Version {
		if err := checkKubernetesVersion(v); err != nil {
			diags.AddAttributeError(req.VersionAttr, "Unsupported Kubernetes version", err.Error())
			return nil, diags
		}
		cc := *c
		cc.Spec.Kubernetes.Version = v
		c = &cc
	}
	var inputs []map[string]string
	files := map[string]string{}
	pkiDir := ""
	for i, in := range req.States {
		f, err := decodeFiles(in.Value)
		if err == nil {
			_, err = state.NewMem(f, "") // its file names
		}
		if err != nil {
			diags.AddAttributeError(in.Attr, "Unreadable "+in.What, err.Error())
			return nil, diags
		}
		f, dir, err := internalizePKI(f)
		if err != nil {
			diags.AddAttributeError(in.Attr, "PKI missing or changed", err.Error()+".")
			return nil, diags
		}
		if i == 0 {
			pkiDir = dir // the cluster's choice; a node's own files follow it
		}
		inputs = append(inputs, f)
		files = overlay(files, f)
	}
	if req.PKIDir != nil {
		pkiDir = *req.PKIDir
	}
	if pkiDir != "" && req.PKISubdir != "" {
		pkiDir = filepath.Join(pkiDir, req.PKISubdir)
	}
	if req.FollowReleases && len(inputs) > 0 {
		c = followReleases(c, inputs[0])
	}
	src := req.Inventory.source()
	run, err := newEngineRun(ctx, engineOptions{Cluster: withoutServers(c, req.Drop), Lines: lines, Source: src.name, Files: files, Data: data})
	if err != nil {
		summary := req.Refused
		if summary == "" {
			summary = "Invalid inventory for this cluster"
		}
		diags.AddAttributeError(src.attr, summary, fmt.Sprintf("%s: %v", src.name, err))
		return nil, diags
	}
	run.inputs = inputs
	run.pkiDir = pkiDir
	return run, diags
}

// followReleases is c with the releases the engine state files record
// (prior.json, written by the last apply or upgrade), when it records
// them.
func followReleases(c *inventory.Cluster, files map[string]string) *inventory.Cluster {
	var p inventory.Prior
	if err := json.Unmarshal([]byte(files["prior.json"]), &p); err != nil || (p.Kubernetes == "" && p.Etcd == "") {
		return c
	}
	cc := *c
	if p.Kubernetes != "" {
		cc.Spec.Kubernetes.Version = p.Kubernetes
	}
	if p.Etcd != "" {
		cc.Spec.Etcd.Version = p.Etcd
	}
	return &cc
}

// checkKubernetesVersion is the inventory's rule for spec.kubernetes.version.
func checkKubernetesVersion(s string) error {
	v, err := inventory.ParseVersion(s)
	if err != nil {
		return err
	}
	if !inventory.KubernetesSupported(v) {
		return fmt.Errorf("%s is not a supported Kubernetes minor: use one of v%s (x: any patch the artifact set holds; default %s)",
			v, strings.Join(inventory.SupportedKubernetesMinors, ".x, v")+".x", inventory.DefaultKubernetesVersion)
	}
	return nil
}

// engineOptions are the inputs of newEngineRun.
type engineOptions struct {
	Cluster *inventory.Cluster
	Lines   *inventory.Lines
	Source  string
	Files   map[string]string
	Data    *providerData // nil: the provider's defaults
}

// newEngineRun builds the engine on an in-memory store holding files
// (purely local: installer.New touches no host). The provider's inline SSH
// key reaches the engine in memory too.
func newEngineRun(ctx context.Context, o engineOptions) (*engineRun, error) {
	store, err := state.NewMem(o.Files, artifactCacheDir())
	if err != nil {
		return nil, fmt.Errorf("reading the engine state: %w", err)
	}
	d := o.Data
	if d == nil {
		d = &providerData{Concurrency: DefaultConcurrency}
	}
	cfg := installer.Config{Cluster: o.Cluster, Lines: o.Lines, Source: o.Source, Store: store,
		KnownHosts: d.SSH.KnownHosts, Logger: newLogger(ctx), Concurrency: d.Concurrency,
		Holder: d.Holder, Leases: d.Leases, LockTimeout: d.LockTimeout, SkipStoreLock: true, Clock: d.Clock}
	if d.SSH.PrivateKey != "" {
		cfg.SSHKeys = map[string][]byte{inlineKeyFile: []byte(d.SSH.PrivateKey)}
	}
	if d.ArtifactDir != "" && o.Cluster.Spec.Kubernetes.ArtifactDir == "" {
		cc := *o.Cluster
		cc.Spec.Kubernetes.ArtifactDir = d.ArtifactDir
		cfg.Cluster = &cc
	}
	if dir := cfg.Cluster.Spec.Kubernetes.ArtifactDir; dir != "" {
		if p := filepath.Join(dir, "tricenter-bgp"); fileExists(p) {
			cfg.AgentBinary = p
		}
	}
	eng, err := installer.New(cfg)
	if err != nil {
		return nil, err
	}
	return &engineRun{store: store, eng: eng}, nil
}

// artifactCacheDir is where artifacts fetched from a mirror are kept
// between runs (a cache, not secrets): the user's cache directory.
func artifactCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "tricenter", "artifacts")
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// files snapshots the engine state as it is now.
func (r *engineRun) files() map[string]string { return r.store.Snapshot() }

// stateValue encodes the engine state as it is now, keep (when not nil)
// choosing what of it the resource records. With a PKI directory the
// PKI's files are written there and the state holds their fingerprints.
func (r *engineRun) stateValue(keep func(after map[string]string) map[string]string) (types.String, error) {
	files := r.files()
	if keep != nil {
		files = keep(files)
	}
	if r.pkiDir != "" {
		var err error
		if files, err = externalizePKI(files, r.pkiDir); err != nil {
			return types.StringNull(), err
		}
	}
	enc, err := encodeFiles(files)
	if err != nil {
		return types.StringNull(), err
	}
	return types.StringValue(enc), nil
}

// Close closes the engine's connections.
func (r *engineRun) Close() {
	if r.eng != nil {
		_ = r.eng.Close()
	}
}
