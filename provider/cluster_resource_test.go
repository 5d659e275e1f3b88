package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	fwresource "github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/lab"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// labInventory is the acceptance lab's inventory with fixed paths: valid,
// and nothing in a unit test reads those paths.
func labInventory(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/acc/nspawn-lab-tf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("@DIR@", "/nonexistent/tf-lab", "@ARTS@", "/nonexistent/artifacts").Replace(string(b))
}

func parseLab(t *testing.T, doc string) *inventory.Cluster {
	t.Helper()
	c, lines, err := inventory.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(lines).Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMemberDiff(t *testing.T) {
	for _, tc := range []struct {
		name           string
		prev, next     map[string]string
		added, removed []string
	}{
		{"same", map[string]string{"a": "dc1"}, map[string]string{"a": "dc1"}, nil, nil},
		{"first apply", map[string]string{}, map[string]string{"b": "dc2", "a": "dc1"}, []string{"a (dc1)", "b (dc2)"}, nil},
		{"grow", map[string]string{"a": "dc1", "b": "dc2", "c": "dc3"}, map[string]string{"a": "dc1", "b": "dc2", "c": "dc3", "d": "dc1", "e": "dc2"},
			[]string{"d (dc1)", "e (dc2)"}, nil},
		{"move", map[string]string{"a": "dc1", "b": "dc2"}, map[string]string{"a": "dc1", "c": "dc2"}, []string{"c (dc2)"}, []string{"b (dc2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, removed := memberDiff(tc.prev, tc.next)
			if !reflect.DeepEqual(added, tc.added) || !reflect.DeepEqual(removed, tc.removed) {
				t.Fatalf("memberDiff = %v, %v; want %v, %v", added, removed, tc.added, tc.removed)
			}
		})
	}
	msg := membershipMessage([]string{"d (dc1)"}, []string{"b (dc2)"}, nil, false)
	if !strings.Contains(msg, "adds d (dc1)") || !strings.Contains(msg, "removes b (dc2)") || !strings.Contains(msg, "quorum") ||
		strings.Contains(msg, "accept_transient_risk") {
		t.Errorf("membershipMessage = %q", msg)
	}
}

// TestMembershipMessageRisks: growing the three-center example's etcd
// from 3 members (one per center) to its 5 warns, at plan time, of the
// window where dc1's loss loses quorum and of accept_transient_risk.
func TestMembershipMessageRisks(t *testing.T) {
	c, _, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults()
	p, err := inventory.Place(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec []string
	seen := map[string]bool{}
	for _, m := range p.Etcd.Members {
		if !seen[m.Center] {
			seen[m.Center] = true
			rec = append(rec, m.Name)
		}
	}
	mp, err := etcd.PlanFromRecord(c, rec, p.Etcd.Members)
	if err != nil {
		t.Fatal(err)
	}
	msg := membershipMessage([]string{"x (dc1)"}, nil, mp.Risks, false)
	for _, s := range []string{"Risk: losing dc1 from step 2 until step 4 leaves 2 of 4 voting members, 3 needed",
		"refuses these windows before any membership change unless accept_transient_risk = true"} {
		if !strings.Contains(msg, s) {
			t.Errorf("membershipMessage does not say %q:\n%s", s, msg)
		}
	}
	if msg := membershipMessage([]string{"x (dc1)"}, nil, mp.Risks, true); !strings.Contains(msg, "accept_transient_risk = true: the apply runs these windows") {
		t.Errorf("accepted: %s", msg)
	}
}

func TestStateConversion(t *testing.T) {
	files := map[string]string{"prior.json": "{}\n", "pki/etcd/ca.crt": "C", "pki/etcd/ca.key": "K"}
	enc, err := encodeFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	again, err := encodeFiles(map[string]string{"pki/etcd/ca.key": "K", "pki/etcd/ca.crt": "C", "prior.json": "{}\n"})
	if err != nil || again != enc {
		t.Fatalf("encoding depends on map order: %q vs %q (%v)", enc, again, err)
	}
	dec, err := decodeFiles(types.StringValue(enc))
	if err != nil || !reflect.DeepEqual(dec, files) {
		t.Fatalf("decode = %v, %v", dec, err)
	}
	for _, v := range []types.String{types.StringNull(), types.StringUnknown(), types.StringValue("")} {
		if f, err := decodeFiles(v); err != nil || len(f) != 0 {
			t.Errorf("decode(%v) = %v, %v; want no files", v, f, err)
		}
	}
	if _, err := decodeFiles(types.StringValue("[1]")); err == nil {
		t.Error("decode accepted a JSON list")
	}
	if enc, _ := encodeFiles(nil); enc != `{"format":2,"files":{}}` {
		t.Errorf("no files encode as %q", enc)
	}
	// The bare object of files older providers wrote reads the same.
	if dec, err := decodeFiles(types.StringValue(`{"pki/etcd/ca.crt":"C","pki/etcd/ca.key":"K","prior.json":"{}\n"}`)); err != nil || !reflect.DeepEqual(dec, files) {
		t.Fatalf("decode of a format 1 state = %v, %v", dec, err)
	}
	if _, err := decodeFiles(types.StringValue(`{"format":3,"files":{}}`)); err == nil || !strings.Contains(err.Error(), "upgrade the provider") {
		t.Errorf("a newer format: %v", err)
	}

	next := overlay(files, map[string]string{"pki/kubernetes/kubelet-w1.crt": "N", "prior.json": "{\"x\":1}"})
	if files["prior.json"] != "{}\n" || len(files) != 3 {
		t.Fatal("overlay changed its input")
	}
	own := nodeFiles(files, next)
	if !reflect.DeepEqual(own, map[string]string{"pki/kubernetes/kubelet-w1.crt": "N"}) {
		t.Fatalf("nodeFiles = %v: want the new certificate only (prior.json stays the cluster's)", own)
	}
}

func TestParseClusterImportID(t *testing.T) {
	for _, tc := range []struct {
		id, dir, inv string
		ok           bool
	}{
		{"/var/lib/tricenter/lab#/etc/lab.yaml", "/var/lib/tricenter/lab", "/etc/lab.yaml", true},
		{"a#b#c.yaml", "a#b", "c.yaml", true},
		{"/var/lib/tricenter/lab", "", "", false},
		{"#inv.yaml", "", "", false},
		{"dir#", "", "", false},
	} {
		dir, inv, ok := parseClusterImportID(tc.id)
		if dir != tc.dir || inv != tc.inv || ok != tc.ok {
			t.Errorf("parseClusterImportID(%q) = %q, %q, %v; want %q, %q, %v", tc.id, dir, inv, ok, tc.dir, tc.inv, tc.ok)
		}
	}
}

func TestNodeServersSplit(t *testing.T) {
	c := parseLab(t, labInventory(t))
	w := withoutServers(c, []string{"tf-dc2-w01"})
	if _, ok := w.Host("tf-dc2-w01"); ok {
		t.Fatal("withoutServers kept the server")
	}
	if _, ok := c.Host("tf-dc2-w01"); !ok {
		t.Fatal("withoutServers changed its input")
	}
	p, err := inventory.BuildPlan(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"tf-dc2-w01", "tf-dc1-w01"}, ""},
		{[]string{"tf-dc1-s01"}, "Not a worker"},
		{[]string{"nope"}, "Unknown server"},
	} {
		d := checkNodeServers(c, p.Placement(), tc.names)
		if got := summary(d); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("checkNodeServers(%v) = %q, want %q", tc.names, got, tc.want)
		}
		if len(tc.names) == 1 {
			d := checkWorker(c, p.Placement(), tc.names[0])
			if got := summary(d); !strings.Contains(got, tc.want) || got == "" {
				t.Errorf("checkWorker(%v) = %q, want %q", tc.names[0], got, tc.want)
			}
		}
	}
}

func TestApplySSHDefaults(t *testing.T) {
	doc := strings.Replace(labInventory(t), "    user: root\n    keyFile: /nonexistent/tf-lab/id_ed25519\n", "", 1)
	c, _, err := inventory.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	d := &providerData{SSH: sshDefaults{User: "ops", PrivateKeyFile: "/keys/id", Agent: true,
		Bastion: &inventory.JumpHost{Address: "198.18.0.1"}}}
	applySSHDefaults(c, d)
	sp := c.Spec.SSH
	if sp.KeyFile != "/keys/id" || sp.Agent == nil || !*sp.Agent || sp.Bastion == nil || sp.Bastion.Address != "198.18.0.1" {
		t.Fatalf("defaults not applied: %+v", sp)
	}
	for _, h := range c.Hosts() {
		if h.SSH.KeyFile != "/keys/id" || h.SSH.Agent == nil || !*h.SSH.Agent {
			t.Errorf("%s: the provider's key and agent did not reach the server: %+v", h.Name, h.SSH)
		}
	}
	c = parseLab(t, labInventory(t))
	applySSHDefaults(c, d)
	if c.Spec.SSH.User != "root" || c.Spec.SSH.KeyFile != "/nonexistent/tf-lab/id_ed25519" {
		t.Fatalf("the inventory's own settings were overridden: %+v", c.Spec.SSH)
	}
}

// terraformForUnitTests points terraform-plugin-testing at the terraform
// binary for plan-only tests that touch no host.
func terraformForUnitTests(t *testing.T) {
	t.Helper()
	if p := os.Getenv("TF_ACC_TERRAFORM_PATH"); p != "" {
		testenv.RequireFile(t, "TF_ACC_TERRAFORM_PATH names no file: install Terraform >= 1.11", p)
		return
	}
	p, err := exec.LookPath("terraform")
	testenv.Require(t, "terraform on PATH (Terraform >= 1.11; /usr/local/bin/terraform on the lab machines) or TF_ACC_TERRAFORM_PATH", err == nil)
	t.Setenv("TF_ACC_TERRAFORM_PATH", p)
}

// TestClusterPlan runs terraform plan (no apply: nothing is contacted) on
// tricenter_cluster and tricenter_node: the planned etcd members come
// from the placement, and changes the placement rules forbid are refused
// before apply with the attribute named.
func TestClusterPlan(t *testing.T) {
	terraformForUnitTests(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(inv, []byte(labInventory(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	tooFew := filepath.Join(dir, "too-few.yaml")
	if err := os.WriteFile(tooFew, []byte(strings.Replace(labInventory(t), "members: 3", "members: 5", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cluster := func(inv, nodeServers string) string {
		return `
resource "tricenter_cluster" "lab" {
  path         = "` + inv + `"
  node_servers = [` + nodeServers + `]
}
`
	}
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			{
				Config:             cluster(inv, `"tf-dc2-w01"`),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("tricenter_cluster.lab", plancheck.ResourceActionCreate),
					plancheck.ExpectKnownValue("tricenter_cluster.lab", tfjsonpath.New("etcd_members"), knownvalue.MapExact(map[string]knownvalue.Check{
						"tf-dc1-s01": knownvalue.StringExact("dc1"),
						"tf-dc2-s01": knownvalue.StringExact("dc2"),
						"tf-dc3-s01": knownvalue.StringExact("dc3"),
					})),
					plancheck.ExpectKnownValue("tricenter_cluster.lab", tfjsonpath.New("id"), knownvalue.StringExact("tf-lab")),
					plancheck.ExpectKnownValue("tricenter_cluster.lab", tfjsonpath.New("api_server_url"), knownvalue.StringExact("https://198.19.64.10:6443")),
					plancheck.ExpectKnownValue("tricenter_cluster.lab", tfjsonpath.New("inventory_sha256"), knownvalue.StringRegexp(regexp.MustCompile(`^[0-9a-f]{64}$`))),
					plancheck.ExpectUnknownValue("tricenter_cluster.lab", tfjsonpath.New("state")),
					plancheck.ExpectSensitiveValue("tricenter_cluster.lab", tfjsonpath.New("state")),
					plancheck.ExpectSensitiveValue("tricenter_cluster.lab", tfjsonpath.New("kubeconfig")),
				}},
			},
			{
				Config:      cluster(tooFew, ""),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`5\s+members\s+need\s+5\s+servers`),
			},
			{
				Config:      cluster(inv, `"tf-dc1-s01"`),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Not a worker`),
			},
			{
				Config: cluster(inv, `"tf-dc2-w01"`) + `
resource "tricenter_node" "w" {
  for_each      = toset(["tf-dc2-w01"])
  server        = each.key
  path          = "` + inv + `"
  cluster_state = tricenter_cluster.lab.state
}
`,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(`tricenter_node.w["tf-dc2-w01"]`, plancheck.ResourceActionCreate),
					plancheck.ExpectKnownValue(`tricenter_node.w["tf-dc2-w01"]`, tfjsonpath.New("center"), knownvalue.StringExact("dc2")),
					plancheck.ExpectKnownValue(`tricenter_node.w["tf-dc2-w01"]`, tfjsonpath.New("rack"), knownvalue.StringExact("tf-dc2-r02")),
				}},
			},
			{
				Config: cluster(inv, "") + `
resource "tricenter_node" "w" {
  server        = "tf-dc3-s01"
  path          = "` + inv + `"
  cluster_state = "{}"
}
`,
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`Not a worker`),
			},
		},
	})
}

// TestClusterImportFromCLIState snapshots a CLI state directory the way
// import does and checks the refusal of a directory without PKI.
func TestClusterImportFromCLIState(t *testing.T) {
	d, err := state.Open(t.TempDir(), "tf-lab")
	if err != nil {
		t.Fatal(err)
	}
	files, err := state.Snapshot(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Fatalf("empty state directory snapshots as %v", files)
	}
	c := parseLab(t, labInventory(t))
	run, err := newEngineRun(context.Background(), engineOptions{Cluster: c, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if _, err := run.eng.EtcdPKI(false); err == nil {
		t.Fatal("a state directory without PKI was accepted for import")
	}
}

// TestClusterApplyKeepsPartialProgress: an apply that stops half-way (here
// after the certificates, before any host is changed: the lab's key file
// and artifact directory do not exist) still returns the engine state it
// created — the PKI — with the error, and the next apply starts from that
// state (same CA).
func TestClusterApplyKeepsPartialProgress(t *testing.T) {
	r := &clusterResource{}
	m := clusterResourceModel{Path: types.StringNull(), YAML: types.StringValue(labInventory(t)),
		Components: types.ListNull(types.StringType), NodeServers: types.SetNull(types.StringType)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var diags diag.Diagnostics
	if !r.apply(ctx, &m, types.StringNull(), &diags) {
		t.Fatalf("apply reports nothing to save: %q", summary(diags))
	}
	if !diags.HasError() || !strings.Contains(summary(diags), "state reached so far is saved") {
		t.Fatalf("diagnostics = %q", summary(diags))
	}
	if m.Healthy.ValueBool() || len(m.Problems.Elements()) == 0 {
		t.Errorf("healthy %v, problems %v after a failed apply", m.Healthy, m.Problems)
	}
	files, err := decodeFiles(m.State)
	if err != nil {
		t.Fatal(err)
	}
	ca := files["pki/kubernetes/ca.crt"]
	if files["pki/etcd/ca.key"] == "" || ca == "" || m.CACertificate.ValueString() != ca {
		t.Fatalf("partial state lacks the PKI: %v", keysOf(files))
	}
	m2 := m
	var diags2 diag.Diagnostics
	if !r.apply(ctx, &m2, m.State, &diags2) {
		t.Fatalf("second apply reports nothing to save: %q", summary(diags2))
	}
	files2, err := decodeFiles(m2.State)
	if err != nil {
		t.Fatal(err)
	}
	if files2["pki/kubernetes/ca.crt"] != ca || files2["pki/etcd/ca.key"] != files["pki/etcd/ca.key"] {
		t.Fatal("the second apply did not continue from the saved state: the CA changed")
	}
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestClusterApplyRefusedKeepsNothing: an inventory the engine refuses
// runs nothing and reports that there is nothing to save (Update then
// keeps the prior state, Create records none).
func TestClusterApplyRefusedKeepsNothing(t *testing.T) {
	r := &clusterResource{}
	m := clusterResourceModel{Path: types.StringNull(), YAML: types.StringValue(strings.Replace(labInventory(t), "members: 3", "members: 5", 1)),
		Components: types.ListNull(types.StringType), NodeServers: types.SetNull(types.StringType), State: types.StringUnknown()}
	var diags diag.Diagnostics
	if r.apply(context.Background(), &m, types.StringNull(), &diags) {
		t.Fatal("apply of a refused inventory reports a state to save")
	}
	if !diags.HasError() || !m.State.IsUnknown() {
		t.Fatalf("diagnostics %q, state %v", summary(diags), m.State)
	}
}

func TestEngineErrorDetail(t *testing.T) {
	d := engineErrorDetail("applying lab", fmt.Errorf("etcd on s1: %w", context.DeadlineExceeded))
	if !strings.Contains(d, "etcd on s1") || !strings.Contains(d, "timeouts block") {
		t.Errorf("deadline: %q", d)
	}
	d = engineErrorDetail("applying lab", errors.New("gate failed"))
	if !strings.Contains(d, "gate failed") || strings.Contains(d, "timeouts block") || !strings.Contains(d, "apply again") {
		t.Errorf("other error: %q", d)
	}
}

// TestResourceExamples plans the documented examples of tricenter_cluster
// and tricenter_node and examples/lab/main.tf (plan only: nothing is
// contacted), so the HCL users copy keeps working.
func TestResourceExamples(t *testing.T) {
	terraformForUnitTests(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	terraformBlock := regexp.MustCompile(`(?s)terraform \{.*?\n\}\n`)
	// examples/lab/main.tf takes the inventory `tricenter-lab up` writes:
	// the same one, rendered from examples/lab/lab.yaml.
	spec, err := lab.LoadSpec(filepath.Join(root, "examples/lab/lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	labDir := t.TempDir()
	inv, _, err := spec.Inventory(labDir, filepath.Join(root, ".cache/artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, lab.Paths{Dir: labDir}.Inventory(), string(inv))
	writeTestFile(t, lab.Paths{Dir: labDir}.BMCPassword(), "not-a-real-password\n")
	labVars := config.Variables{
		"inventory_file": config.StringVariable(lab.Paths{Dir: labDir}.Inventory()),
		"workers":        config.SetVariable(config.StringVariable("dc1-r01-w01"), config.StringVariable("dc2-r01-w01")),
	}
	for _, tc := range []struct {
		file    string
		cluster string
		members int
		vars    config.Variables
	}{
		{"examples/resources/tricenter_cluster/resource.tf", "tricenter_cluster.lab", 5, nil},
		{"examples/resources/tricenter_node/resource.tf", "tricenter_cluster.lab", 5, nil},
		{"examples/lab/main.tf", "tricenter_cluster.lab", 5, labVars},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(root, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg := strings.NewReplacer("${path.module}/../../inventory/", root+"/examples/inventory/",
				`abspath("${path.module}/../..")`, `"`+root+`"`).Replace(string(b))
			cfg = terraformBlock.ReplaceAllString(cfg, "")
			resource.UnitTest(t, resource.TestCase{
				ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
				Steps: []resource.TestStep{{
					Config:             cfg,
					ConfigVariables:    tc.vars,
					PlanOnly:           true,
					ExpectNonEmptyPlan: true,
					ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(tc.cluster, plancheck.ResourceActionCreate),
						plancheck.ExpectKnownValue(tc.cluster, tfjsonpath.New("etcd_members"), knownvalue.MapSizeExact(tc.members)),
					}},
				}},
			})
		})
	}
}

// TestPhaseSelectionMatchesTheEngine: the phase IDs tricenter_cluster
// documents and accepts are the engine's one list (installer.PhaseIDs),
// in its order: every ID is either accepted by components and skip_phases
// or refused as a preflight phase every apply runs, and every component
// name is accepted — the CLI's --only takes the same names.
func TestPhaseSelectionMatchesTheEngine(t *testing.T) {
	ctx := context.Background()
	var sr fwresource.SchemaResponse
	(&clusterResource{}).Schema(ctx, fwresource.SchemaRequest{}, &sr)
	desc := sr.Schema.Attributes["components"].GetMarkdownDescription()
	var listed []string
	for _, m := range regexp.MustCompile("`([a-z-]+/[a-z-]+)`").FindAllStringSubmatch(desc, -1) {
		listed = append(listed, m[1])
	}
	if !slices.Equal(listed, installer.PhaseIDs()) {
		t.Errorf("components lists phase IDs %v, want the engine's %v", listed, installer.PhaseIDs())
	}
	accepts := func(name string) (bool, string) {
		var resp validator.ListResponse
		v, _ := types.ListValueFrom(ctx, types.StringType, []string{name})
		selectionValidator{}.ValidateList(ctx, validator.ListRequest{Path: path.Root("components"), ConfigValue: v}, &resp)
		if resp.Diagnostics.HasError() {
			return false, resp.Diagnostics.Errors()[0].Detail()
		}
		return true, ""
	}
	var accepted []string
	for _, id := range installer.PhaseIDs() {
		ok, why := accepts(id)
		switch {
		case ok:
			accepted = append(accepted, id)
		case strings.HasPrefix(id, "preflight/") && strings.Contains(why, "runs on every apply"):
		default:
			t.Errorf("phase %s refused: %s", id, why)
		}
	}
	for _, c := range componentNames() {
		if ok, why := accepts(c); !ok {
			t.Errorf("component %s refused: %s", c, why)
		}
	}
	if want := installer.SelectableIDs()[len(componentNames()):]; !slices.Equal(accepted, want) {
		t.Errorf("accepted phases %v, want %v", accepted, want)
	}
	if ok, why := accepts("kubelet"); ok || !strings.Contains(why, `unknown component or phase "kubelet"`) {
		t.Errorf("kubelet: %v, %q", ok, why)
	}
}

// TestClusterPlanPhaseSelection plans tricenter_cluster with components
// and skip_phases (nothing is contacted): phase IDs are taken, and what
// the engine would refuse is refused at plan time with its reason.
func TestClusterPlanPhaseSelection(t *testing.T) {
	terraformForUnitTests(t)
	inv := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(inv, []byte(labInventory(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	cluster := func(body string) string {
		return `
resource "tricenter_cluster" "lab" {
  path = "` + inv + `"
` + body + `
}
`
	}
	step := func(body, wantErr string) resource.TestStep {
		s := resource.TestStep{Config: cluster(body), PlanOnly: true}
		if wantErr != "" {
			s.ExpectError = regexp.MustCompile(wantErr)
		} else {
			s.ExpectNonEmptyPlan = true
			s.ConfigPlanChecks = resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction("tricenter_cluster.lab", plancheck.ResourceActionCreate),
			}}
		}
		return s
	}
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: []resource.TestStep{
			step(`components = ["etcd", "node/kubelet", "gates/nodes"]`, ""),
			step(`skip_phases = ["gates/dataplane", "addons"]`, ""),
			step(`components = ["kubelet"]`, `unknown component or\s+phase "kubelet"`),
			step(`components = ["preflight/reachable"]`, `runs on every apply`),
			step(`skip_phases = ["etcd/prefligth"]`, `unknown component or\s+phase "etcd/prefligth"`),
			step("components  = [\"etcd\"]\n  skip_phases = [\"etcd\", \"gates/etcd\"]", `no phase left to run`),
			step(`skip_phases = ["etcd/preflight"]`, `etcd/discover needs\s+etcd/preflight`),
		},
	})
}
