package provider

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// TestEngineRunInMemory: a provider-style run — the engine state filled
// into memory from Terraform state, the engine creating the PKI (etcd,
// cluster CAs, the admin certificate), the state snapshotted back — and an
// inline SSH key leave no file under HOME or TMPDIR, and the caller's
// inventory is not changed.
func TestEngineRunInMemory(t *testing.T) {
	home, tmp := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_CACHE_HOME", "")
	data := &providerData{Concurrency: 2, SSH: sshDefaults{PrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\n"}}
	c, _, diags := loadCluster(inventoryInput{Path: types.StringNull(),
		YAML: types.StringValue(strings.Replace(labInventory(t), "    keyFile: /nonexistent/tf-lab/id_ed25519\n", "", 1))}, data)
	if diags.HasError() {
		t.Fatalf("an inventory without keyFile and the provider's inline key: %v", diags)
	}
	if c.Spec.SSH.KeyFile != inlineKeyFile {
		t.Fatalf("keyFile = %q", c.Spec.SSH.KeyFile)
	}
	prior := map[string]string{"prior.json": `{"etcdMembers":["tf-dc1-s01","tf-dc2-s01","tf-dc3-s01"]}`}
	run, err := newEngineRun(context.Background(), engineOptions{Cluster: c, Files: prior, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	for _, h := range run.eng.Cluster().Hosts() {
		if h.SSH.KeyFile != inlineKeyFile {
			t.Errorf("%s uses key %q, want the in-memory %q", h.Name, h.SSH.KeyFile, inlineKeyFile)
		}
	}
	if got := run.eng.Prior(); got == nil || len(got.EtcdMembers) != 3 {
		t.Fatalf("engine prior = %+v", got)
	}
	if _, err := run.eng.EtcdPKI(true); err != nil {
		t.Fatal(err)
	}
	// Before an apply has bound the admin group there is no admin
	// certificate; the break-glass one is issued in memory.
	if _, err := run.eng.AdminKubeconfig(""); !errors.Is(err, pki.ErrNoAdmin) {
		t.Fatalf("admin kubeconfig before any apply: %v, want pki.ErrNoAdmin", err)
	}
	if _, err := run.eng.BreakGlassKubeconfig(""); err != nil {
		t.Fatal(err)
	}
	st, err := run.stateValue(nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := decodeFiles(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prior.json", "pki/etcd/ca.key", "pki/etcd/client-tricenter.key", "pki/kubernetes/ca.key",
		"pki/front-proxy/ca.key", "pki/kubernetes/" + pki.AdminBreakGlass + ".key"} {
		if files[name] == "" {
			t.Errorf("the snapshot lacks %s: %v", name, keysOf(files))
		}
	}
	if files["prior.json"] != prior["prior.json"] {
		t.Errorf("prior.json changed: %q", files["prior.json"])
	}
	for _, dir := range []string{home, tmp} {
		var found []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && p != dir {
				found = append(found, p)
			}
			return nil
		})
		if len(found) > 0 {
			t.Errorf("a provider run wrote to disk: %v", found)
		}
	}
	if h, _ := c.Host("tf-dc1-s01"); c.Spec.SSH.KeyFile != inlineKeyFile || h.SSH.KeyFile != inlineKeyFile {
		t.Fatal("newEngineRun changed the caller's inventory")
	}
	// The next run starts from the snapshot: same CA, nothing reissued.
	again, err := newEngineRun(context.Background(), engineOptions{Cluster: c, Files: files, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	p, err := again.eng.EtcdPKI(false)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.CA.CertPEM) != files["pki/etcd/ca.crt"] || len(p.Changed) != 0 {
		t.Fatalf("the second run did not continue from the snapshot (changed %v)", p.Changed)
	}
}

// TestOpenEngineDiagnostics: a state the provider cannot read is an
// error on its attribute, a blob from a newer provider says to upgrade,
// and a bare (format 1) state opens as well as the current format.
func TestOpenEngineDiagnostics(t *testing.T) {
	in := inventoryInput{Path: types.StringNull(), YAML: types.StringValue(labInventory(t))}
	req := func(st string) engineRequest {
		return engineRequest{Inventory: in, States: []stateInput{{Value: types.StringValue(st), Attr: path.Root("cluster_state"), What: "cluster state"}}}
	}
	for _, tc := range []struct{ state, want string }{
		{`[1]`, "not a JSON object"},
		{`{"format":3,"files":{}}`, "upgrade the provider"},
		{`{"format":2,"files":{"../x":"y"}}`, "escapes the state directory"},
	} {
		run, d := openEngine(context.Background(), nil, req(tc.state))
		if run != nil || !d.HasError() {
			t.Fatalf("%s: opened", tc.state)
		}
		e := d.Errors()[0]
		if !strings.Contains(e.Detail(), tc.want) {
			t.Errorf("%s: %q, want %q", tc.state, e.Detail(), tc.want)
		}
		if ad, ok := e.(diag.DiagnosticWithPath); !ok || !ad.Path().Equal(path.Root("cluster_state")) {
			t.Errorf("%s: diagnostic not on cluster_state: %v", tc.state, e)
		}
	}
	prior := `{"etcdMembers":["tf-dc1-s01","tf-dc2-s01","tf-dc3-s01"]}`
	for _, st := range []string{`{"prior.json":` + quote(prior) + `}`, `{"format":2,"files":{"prior.json":` + quote(prior) + `}}`} {
		run, d := openEngine(context.Background(), nil, req(st))
		if d.HasError() {
			t.Fatalf("%s: %v", st, d)
		}
		if p := run.eng.Prior(); p == nil || len(p.EtcdMembers) != 3 {
			t.Errorf("%s: prior %+v", st, p)
		}
		run.Close()
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// TestWithTimeout: the operation runs under the block's timeout, or the
// default when the block leaves it unset; a block that cannot be read
// runs nothing.
func TestWithTimeout(t *testing.T) {
	var diags diag.Diagnostics
	ran := false
	withTimeout(context.Background(), func(_ context.Context, def time.Duration) (time.Duration, diag.Diagnostics) {
		return def, nil
	}, time.Hour, &diags, func(ctx context.Context) {
		ran = true
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 59*time.Minute {
			t.Errorf("deadline %v, %v", dl, ok)
		}
	})
	if !ran || diags.HasError() {
		t.Fatalf("ran %v, %v", ran, diags)
	}
	withTimeout(context.Background(), func(context.Context, time.Duration) (time.Duration, diag.Diagnostics) {
		var d diag.Diagnostics
		d.AddError("bad timeouts", "x")
		return 0, d
	}, time.Hour, &diags, func(context.Context) { t.Error("ran with an unreadable timeouts block") })
	if !diags.HasError() {
		t.Fatal("no diagnostic")
	}
}

func TestCheckKubernetesVersion(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{inventory.DefaultKubernetesVersion, ""},
		{"v1.36.3", ""},
		{"v1.33.13", "not a supported Kubernetes minor: use one of v1.36.x, v1.37.x"},
		{"1.37.2", "not a version"},
		{"v1.37", "not a version"},
	} {
		err := checkKubernetesVersion(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.in, err, c.err)
		}
	}
}

// A node follows the releases its cluster's state records, not the
// inventory's, so that it is upgraded with its cluster.
func TestFollowReleases(t *testing.T) {
	c := &inventory.Cluster{}
	c.Spec.Kubernetes.Version, c.Spec.Etcd.Version = "v1.37.2", "v3.6.16"
	got := followReleases(c, map[string]string{"prior.json": `{"kubernetes":"v1.36.3","etcd":"v3.5.35"}`})
	if got.Spec.Kubernetes.Version != "v1.36.3" || got.Spec.Etcd.Version != "v3.5.35" {
		t.Fatalf("followed %s / %s", got.Spec.Kubernetes.Version, got.Spec.Etcd.Version)
	}
	if c.Spec.Kubernetes.Version != "v1.37.2" {
		t.Fatal("the inventory was changed in place")
	}
	for _, files := range []map[string]string{nil, {"prior.json": `{"podCIDRs":{}}`}, {"prior.json": "not json"}} {
		if got := followReleases(c, files); got.Spec.Kubernetes.Version != "v1.37.2" {
			t.Fatalf("%v: followed %s", files, got.Spec.Kubernetes.Version)
		}
	}
}
