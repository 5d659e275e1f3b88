package provider

import (
	"context"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/tricenter/terraform-provider-tricenter/acceptance/nspawn"
	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// tfLab is the provider's nspawn lab (testdata/acc/nspawn-lab-tf.yaml: its
// own addresses and machine names, so it runs beside the acceptance
// package's Kubernetes lab).
type tfLab struct {
	lab  *nspawn.Lab
	dir  string
	arts string
	inv  string // the inventory with run-time paths
	file string // where inv is written
}

const (
	tfLabNodeWorker = "tf-dc2-w01"
	tfLabCluster    = "tricenter_cluster.lab"
	// terraform-plugin-testing's state checks cannot address for_each
	// instances: the test names its one node resource (the examples key
	// node resources with for_each).
	tfLabNode = "tricenter_node.tf_dc2_w01"
)

func startTFLab(t *testing.T) *tfLab {
	t.Helper()
	if err := nspawn.Available(); err != nil {
		testenv.Need(t, fmt.Errorf("nspawn lab: %w", err))
	}
	testenv.Exclusive(t, "the provider's Kubernetes lab")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(root, ".cache")
	k := &tfLab{dir: t.TempDir(), arts: filepath.Join(cache, "artifacts")}
	var need []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl",
		"tricenter-bgp", "pause.oci.tar", "coredns.oci.tar"} {
		need = append(need, filepath.Join(k.arts, artifacts.DefaultName(b)))
	}
	testenv.RequireFile(t, "the Kubernetes artifacts: run make artifacts", need...)
	b, err := os.ReadFile("testdata/acc/nspawn-lab-tf.yaml")
	if err != nil {
		t.Fatal(err)
	}
	k.inv = strings.NewReplacer("@DIR@", k.dir, "@ARTS@", k.arts).Replace(string(b))
	k.file = filepath.Join(k.dir, "inventory.yaml")
	if err := os.WriteFile(k.file, []byte(k.inv), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := nspawn.ParseInventory([]byte(k.inv), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rootfs, err := nspawn.EnsureRootfs(ctx, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k.lab, err = nspawn.Up(ctx, nspawn.Config{Cluster: c, Rootfs: rootfs, Logger: log,
		Dir: filepath.Join(cache, "nspawn", "machines", "tf-"+filepath.Base(k.dir))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.lab.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	t.Logf("lab: %d machines up in %v", len(k.lab.Machines()), time.Since(start).Round(time.Millisecond))
	if err := k.lab.RouteClusterFromHost(ctx); err != nil {
		t.Fatal(err)
	}
	keepRoutes(t, k.lab)
	return k
}

// keepRoutes re-asserts the host routes to the lab's VIP, service and pod
// ranges every second until the test ends: other tests' labs on this
// machine have been seen to take host routes in 198.19.0.0/16 away while
// they tear down, which would cut this lab's API VIP off mid-apply.
func keepRoutes(t *testing.T, lab *nspawn.Lab) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := lab.RouteClusterFromHost(ctx); err != nil && ctx.Err() == nil {
					t.Logf("re-asserting host routes: %v", err)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// writeVariant writes the lab inventory with replacements applied and
// returns its path.
func (k *tfLab) writeVariant(t *testing.T, name string, oldnew ...string) string {
	t.Helper()
	s := strings.NewReplacer(oldnew...).Replace(k.inv)
	if s == k.inv {
		t.Fatalf("variant %s changes nothing", name)
	}
	p := filepath.Join(k.dir, name+".yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tfLabConfig(inv string, nodes bool) string { return tfLabConfigWith(inv, nodes, "", "") }

// tfLabOutput is the lab configuration's output.
const tfLabOutput = `
output "kubeconfig" {
  value     = tricenter_cluster.lab.kubeconfig
  sensitive = true
}
`

// tfLabConfigWith is tfLabConfig with extra lines in the provider block
// and in the node resource.
func tfLabConfigWith(inv string, nodes bool, providerBody, nodeBody string) string {
	return tfLabConfigCluster(inv, nodes, providerBody, "", nodeBody)
}

// tfLabConfigCluster is tfLabConfigWith with extra lines in the cluster
// resource too.
func tfLabConfigCluster(inv string, nodes bool, providerBody, clusterBody, nodeBody string) string {
	cfg := fmt.Sprintf(`
provider "tricenter" {
%s
}

resource "tricenter_cluster" "lab" {
  path         = %q
  node_servers = [%q]
%s
}

`+tfLabOutput, providerBody, inv, tfLabNodeWorker, clusterBody)
	if nodes {
		cfg += fmt.Sprintf(`
resource "tricenter_node" "tf_dc2_w01" {
  server        = %q
  path          = %q
  cluster_state = tricenter_cluster.lab.state
%s
}
`, tfLabNodeWorker, inv, nodeBody)
	}
	return cfg
}

// nodeImportSteps run with tricenter_node in state: it is imported by its
// server name and verified against the resource that created it; then it
// is forgotten (a removed block, the server untouched) and imported again
// with an import block: that plan is an update, and its apply converges
// with no change on the server (the kubelet certificates the server holds
// are kept).
func nodeImportSteps(k *tfLab, timer *stepTimer) []resource.TestStep {
	return []resource.TestStep{
		{
			// The import runs in a working directory of its own whose state
			// holds only the imported node: the cluster's kubeconfig output
			// would be null there, which the test framework's state reader
			// refuses, so this step's configuration has no output.
			Config:            strings.Replace(tfLabConfig(k.file, true), tfLabOutput, "", 1),
			ResourceName:      tfLabNode,
			ImportState:       true,
			ImportStateId:     tfLabNodeWorker,
			ImportStateVerify: true,
			// The import ID is the server name, so import knows id and
			// server, which are verified. The rest is configuration (path,
			// cluster_state), derived from it at plan time (center, rack,
			// pod_cidr), or what the last apply and refresh recorded (state:
			// the node's certificates, and so certificates_renew_due and
			// earliest_certificate_expiry; changed_hosts, gates, ready,
			// problems): the next plan and apply fill them in, as the next
			// two steps check.
			ImportStateVerifyIgnore: []string{"path", "cluster_state", "state", "center", "rack", "pod_cidr",
				"changed_hosts", "gates", "ready", "problems", "certificates_renew_due", "earliest_certificate_expiry"},
		},
		{
			PreConfig: timer.begin("forget tricenter_node (removed block)"),
			Config: tfLabConfig(k.file, false) + `
removed {
  from = ` + tfLabNode + `
  lifecycle {
    destroy = false
  }
}
`,
			ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction(tfLabCluster, plancheck.ResourceActionNoop),
			}},
			Check: resource.ComposeAggregateTestCheckFunc(
				func(s *terraform.State) error {
					if _, ok := s.RootModule().Resources[tfLabNode]; ok {
						return fmt.Errorf("%s is still in state", tfLabNode)
					}
					return nil
				},
				timer.end(),
			),
		},
		{
			PreConfig: timer.begin("import tricenter_node (import block): apply changes nothing"),
			Config: tfLabConfig(k.file, true) + `
import {
  to = ` + tfLabNode + `
  id = "` + tfLabNodeWorker + `"
}
`,
			ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction(tfLabNode, plancheck.ResourceActionUpdate),
				plancheck.ExpectResourceAction(tfLabCluster, plancheck.ResourceActionNoop),
			}},
			Check: resource.ComposeAggregateTestCheckFunc(
				resource.TestCheckResourceAttr(tfLabNode, "changed_hosts.#", "0"),
				resource.TestCheckResourceAttr(tfLabNode, "ready", "true"),
				resource.TestCheckResourceAttr(tfLabNode, "center", "dc2"),
				resource.TestCheckResourceAttrWith(tfLabNode, "state", func(v string) error {
					files, err := decodeFiles(types.StringValue(v))
					if err != nil {
						return err
					}
					for _, f := range []string{"pki/kubernetes/kubelet-client-" + tfLabNodeWorker + ".crt", "pki/kubernetes/kubelet-serving-" + tfLabNodeWorker + ".crt"} {
						if files[f] == "" {
							return fmt.Errorf("the imported node's state lacks %s (its certificate was not adopted)", f)
						}
					}
					return nil
				}),
				timer.end(),
			),
		},
	}
}

// stepTimer records how long each step took: from its PreConfig to its
// Check, or, for plan-only steps (which have no Check), to the next step's
// PreConfig.
type stepTimer struct {
	t     *testing.T
	mu    sync.Mutex
	start time.Time
	name  string
	open  bool
	took  map[string]time.Duration
}

func (s *stepTimer) begin(name string) func() {
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closeLocked("")
		s.name, s.start, s.open = name, time.Now(), true
	}
}

// closeLocked records the open step, with suffix added to its name.
func (s *stepTimer) closeLocked(suffix string) {
	if !s.open {
		return
	}
	d := time.Since(s.start)
	s.took[s.name+suffix] = d
	s.open = false
	s.t.Logf("step %q: %v", s.name+suffix, d.Round(time.Millisecond))
}

func (s *stepTimer) end() resource.TestCheckFunc {
	return func(*terraform.State) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closeLocked("")
		return nil
	}
}

// attrs returns a resource's flat state attributes.
func attrs(s *terraform.State, name string) (map[string]string, error) {
	rs, ok := s.RootModule().Resources[name]
	if !ok {
		return nil, fmt.Errorf("%s is not in state", name)
	}
	return rs.Primary.Attributes, nil
}

// TestAccClusterNspawnLab builds the lab cluster with terraform, joins and
// removes one worker through tricenter_node, shows an etcd membership
// change in the plan, refuses a placement the rules forbid, and destroys
// everything.
func TestAccClusterNspawnLab(t *testing.T) {
	testAccPreCheck(t)
	k := startTFLab(t)
	timer := &stepTimer{t: t, took: map[string]time.Duration{}}
	var (
		engineState string // the cluster's engine state after create
		nodeCIDR    string
	)
	kubeconfig := filepath.Join(k.dir, "admin.conf")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()

	// The cluster is created at the previous Kubernetes release (the
	// inventory's first, oldFile) and upgraded in place through
	// kubernetes_version; the steps after it use the inventory at the
	// new release (newFile).
	newFile := k.file
	oldFile := k.writeVariant(t, "previous-release", "version: "+inventory.DefaultKubernetesVersion, "version: "+tfUpgradeFrom)
	k.file = oldFile
	fiveMembers := k.writeVariant(t, "five-members",
		"        - {name: tf-dc1-w01, roles: [worker], ssh: {address: 198.19.42.20}}",
		"        - {name: tf-dc1-w01, roles: [worker], ssh: {address: 198.19.42.20}}\n        - {name: tf-dc1-s02, roles: [etcd, control-plane], ssh: {address: 198.19.42.11}}",
		"        - {name: tf-dc2-w01, roles: [worker], ssh: {address: 198.19.46.20}}",
		"        - {name: tf-dc2-w01, roles: [worker], ssh: {address: 198.19.46.20}}\n        - {name: tf-dc2-s02, roles: [etcd, control-plane], ssh: {address: 198.19.46.11}}",
		"members: 3", "members: 5")
	tooFew := k.writeVariant(t, "too-few", "members: 3", "members: 5")

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: testAccProtoV6ProviderFactories,
		Steps: slices.Concat([]resource.TestStep{
			{
				PreConfig: timer.begin("create cluster"),
				Config:    tfLabConfig(k.file, false),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(tfLabCluster, "id", "tf-lab"),
					resource.TestCheckResourceAttr(tfLabCluster, "healthy", "true"),
					resource.TestCheckResourceAttr(tfLabCluster, "problems.#", "0"),
					resource.TestCheckResourceAttr(tfLabCluster, "etcd_members.%", "3"),
					resource.TestCheckResourceAttr(tfLabCluster, "etcd_members.tf-dc3-s01", "dc3"),
					resource.TestCheckResourceAttr(tfLabCluster, "api_server_url", "https://198.19.64.10:6443"),
					resource.TestCheckResourceAttrWith(tfLabCluster, "ca_certificate", prefixCheck("-----BEGIN CERTIFICATE-----")),
					func(s *terraform.State) error {
						a, err := attrs(s, tfLabCluster)
						if err != nil {
							return err
						}
						if err := checkGates(a); err != nil {
							return err
						}
						if hasListValue(a, "changed_hosts", tfLabNodeWorker) {
							return fmt.Errorf("the cluster's apply touched %s, which node_servers leaves to tricenter_node", tfLabNodeWorker)
						}
						engineState = a["state"]
						if !strings.HasPrefix(engineState, `{"format":2,`) {
							return fmt.Errorf("state is not in the current format: %.20q", engineState)
						}
						files, err := decodeFiles(types.StringValue(engineState))
						if err != nil {
							return fmt.Errorf("state is not the engine's files: %w", err)
						}
						if files["prior.json"] == "" {
							return fmt.Errorf("state is not the engine's files: prior.json missing")
						}
						if err := os.WriteFile(kubeconfig, []byte(a["kubeconfig"]), 0o600); err != nil {
							return err
						}
						return kubectlNodes(ctx, k, kubeconfig, []string{"tf-dc1-s01", "tf-dc2-s01", "tf-dc3-s01", "tf-dc1-w01"}, []string{tfLabNodeWorker})
					},
					timer.end(),
				),
			},
			{
				// Import the same cluster from a CLI state directory holding
				// its engine state (as `tricenter apply` leaves it).
				ResourceName: tfLabCluster,
				ImportState:  true,
				ImportStateIdFunc: func(*terraform.State) (string, error) {
					files, err := decodeFiles(types.StringValue(engineState))
					if err != nil {
						return "", err
					}
					dir := filepath.Join(k.dir, "cli-state", "tf-lab")
					if err := state.Restore(dir, files); err != nil {
						return "", err
					}
					return dir + "#" + k.file, nil
				},
				ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"gates", "changed_hosts", "node_servers", "timeouts", "etcd_members_per_center", "problems", "healthy",
					"certificates_renew_due", "earliest_certificate_expiry"},
			},
			{
				PreConfig: timer.begin("add tricenter_node"),
				Config:    tfLabConfig(k.file, true),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(tfLabNode, plancheck.ResourceActionCreate),
					plancheck.ExpectResourceAction(tfLabCluster, plancheck.ResourceActionNoop),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(tfLabNode, "changed_hosts.#", "1"),
					resource.TestCheckResourceAttr(tfLabNode, "changed_hosts.0", tfLabNodeWorker),
					resource.TestCheckResourceAttr(tfLabNode, "ready", "true"),
					resource.TestCheckResourceAttr(tfLabNode, "center", "dc2"),
					func(s *terraform.State) error {
						a, err := attrs(s, tfLabNode)
						if err != nil {
							return err
						}
						nodeCIDR = a["pod_cidr"]
						if _, err := netip.ParsePrefix(nodeCIDR); err != nil {
							return fmt.Errorf("pod_cidr %q: %w", nodeCIDR, err)
						}
						if err := checkGates(a); err != nil {
							return err
						}
						if err := kubectlNodes(ctx, k, kubeconfig, []string{"tf-dc1-s01", "tf-dc2-s01", "tf-dc3-s01", "tf-dc1-w01", tfLabNodeWorker}, nil); err != nil {
							return err
						}
						return pollFor(ctx, 30*time.Second, func() error {
							routes, err := k.lab.BGPRoutes()
							if err != nil {
								return err
							}
							if _, ok := routes[nodeCIDR]; !ok {
								return fmt.Errorf("the lab router has no BGP route to %s's pod CIDR %s", tfLabNodeWorker, nodeCIDR)
							}
							return nil
						})
					},
					timer.end(),
				),
			},
		}, nodeImportSteps(k, timer), nodeGuardSteps(t, ctx, k, timer, &engineState), []resource.TestStep{
			{
				// kubernetes_version overrides the inventory's release:
				// an in-place update that upgrades the cluster one server
				// at a time; tricenter_node follows the release its
				// cluster's state records.
				PreConfig: timer.begin("upgrade " + tfUpgradeFrom + " → " + inventory.DefaultKubernetesVersion + " (kubernetes_version)"),
				Config:    tfLabConfigCluster(oldFile, true, "", `  kubernetes_version = "`+inventory.DefaultKubernetesVersion+`"`, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(tfLabCluster, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(tfLabCluster, tfjsonpath.New("kubernetes_version"), knownvalue.StringExact(inventory.DefaultKubernetesVersion)),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(tfLabCluster, "kubernetes_version", inventory.DefaultKubernetesVersion),
					resource.TestCheckResourceAttr(tfLabCluster, "healthy", "true"),
					resource.TestCheckResourceAttr(tfLabNode, "ready", "true"),
					func(s *terraform.State) error {
						a, err := attrs(s, tfLabCluster)
						if err != nil {
							return err
						}
						if err := checkGates(a); err != nil {
							return err
						}
						return kubectlVersions(ctx, k, kubeconfig, inventory.DefaultKubernetesVersion,
							[]string{"tf-dc1-s01", "tf-dc2-s01", "tf-dc3-s01", "tf-dc1-w01", tfLabNodeWorker})
					},
					func(*terraform.State) error { k.file = newFile; return nil },
					timer.end(),
				),
			},
			{
				PreConfig:   timer.begin("refuse a minor downgrade at plan time"),
				Config:      tfLabConfigCluster(oldFile, true, "", `  kubernetes_version = "`+tfUpgradeFrom+`"`, ""),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`minor\s+downgrade`),
			},
			{
				PreConfig:   timer.begin("refuse an unsupported minor at plan time"),
				Config:      tfLabConfigCluster(oldFile, true, "", `  kubernetes_version = "v1.39.0"`, ""),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`not\s+a\s+supported\s+Kubernetes\s+minor`),
			},
			{
				PreConfig: timer.begin("the inventory catches up"),
				Config:    tfLabConfig(newFile, true),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectKnownValue(tfLabCluster, tfjsonpath.New("kubernetes_version"), knownvalue.StringExact(inventory.DefaultKubernetesVersion)),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(tfLabCluster, "changed_hosts.#", "0"),
					timer.end(),
				),
			},
			{
				PreConfig: timer.begin("remove tricenter_node"),
				Config:    tfLabConfig(newFile, false),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(tfLabNode, plancheck.ResourceActionDestroy),
					plancheck.ExpectResourceAction(tfLabCluster, plancheck.ResourceActionNoop),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(tfLabCluster, "healthy", "true"),
					func(s *terraform.State) error {
						if _, ok := s.RootModule().Resources[tfLabNode]; ok {
							return fmt.Errorf("%s is still in state", tfLabNode)
						}
						if err := kubectlNodes(ctx, k, kubeconfig, []string{"tf-dc1-s01", "tf-dc2-s01", "tf-dc3-s01", "tf-dc1-w01"}, []string{tfLabNodeWorker}); err != nil {
							return err
						}
						return pollFor(ctx, 30*time.Second, func() error {
							routes, err := k.lab.BGPRoutes()
							if err != nil {
								return err
							}
							if _, ok := routes[nodeCIDR]; ok {
								return fmt.Errorf("the lab router still has a route to the removed worker's pod CIDR %s", nodeCIDR)
							}
							return nil
						})
					},
					timer.end(),
				),
			},
			{
				PreConfig:          timer.begin("plan five etcd members"),
				Config:             tfLabConfig(fiveMembers, false),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
				ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(tfLabCluster, plancheck.ResourceActionUpdate),
					plancheck.ExpectKnownValue(tfLabCluster, tfjsonpath.New("etcd_members"), knownvalue.MapExact(map[string]knownvalue.Check{
						"tf-dc1-s01": knownvalue.StringExact("dc1"),
						"tf-dc1-s02": knownvalue.StringExact("dc1"),
						"tf-dc2-s01": knownvalue.StringExact("dc2"),
						"tf-dc2-s02": knownvalue.StringExact("dc2"),
						"tf-dc3-s01": knownvalue.StringExact("dc3"),
					})),
				}},
			},
			{
				PreConfig:   timer.begin("refuse five members on three servers"),
				Config:      tfLabConfig(tooFew, false),
				PlanOnly:    true,
				ExpectError: regexp.MustCompile(`5\s+members\s+need\s+5\s+servers`),
			},
		}),
		CheckDestroy: func(*terraform.State) error {
			timer.mu.Lock()
			timer.closeLocked(", then destroy")
			timer.mu.Unlock()
			return checkHostsClean(ctx, k, engineState)
		},
	})
	var names []string
	for n := range timer.took {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Logf("timing %-40s %v", n, timer.took[n].Round(time.Millisecond))
	}
}

func prefixCheck(prefix string) func(string) error {
	return func(v string) error {
		if !strings.HasPrefix(v, prefix) {
			return fmt.Errorf("want a value starting with %q, got %.40q", prefix, v)
		}
		return nil
	}
}

func hasListValue(a map[string]string, name, v string) bool {
	for k, x := range a {
		if strings.HasPrefix(k, name+".") && k != name+".#" && x == v {
			return true
		}
	}
	return false
}

// checkGates fails unless the gates list is non-empty and every gate
// passed.
func checkGates(a map[string]string) error {
	n := a["gates.#"]
	if n == "" || n == "0" {
		return fmt.Errorf("no gates recorded")
	}
	for k, v := range a {
		if strings.HasPrefix(k, "gates.") && k != "gates.#" && !strings.Contains(v, ": ok (") {
			return fmt.Errorf("gate failed: %s", v)
		}
	}
	return nil
}

// tfUpgradeFrom is the release the lab cluster is created at.
const tfUpgradeFrom = "v1.36.3"

// kubectlVersions: kubectl lists each of names with the kubelet release
// want.
func kubectlVersions(ctx context.Context, k *tfLab, kubeconfig, want string, names []string) error {
	out, err := exec.CommandContext(ctx, filepath.Join(k.arts, artifacts.DefaultName("kubectl")), "--kubeconfig", kubeconfig,
		"get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion}{"\n"}{end}`).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl get nodes: %w\n%s", err, out)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			got[f[0]] = f[1]
		}
	}
	var bad []string
	for _, n := range names {
		if got[n] != want {
			bad = append(bad, fmt.Sprintf("%s at %q", n, got[n]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("nodes not at %s: %s", want, strings.Join(bad, ", "))
	}
	return nil
}

// kubectlNodes runs the real kubectl with the kubeconfig from the state:
// every name in want is a Ready Node, none in absent is listed.
func kubectlNodes(ctx context.Context, k *tfLab, kubeconfig string, want, absent []string) error {
	out, err := exec.CommandContext(ctx, filepath.Join(k.arts, artifacts.DefaultName("kubectl")), "--kubeconfig", kubeconfig,
		"get", "nodes", "--no-headers").CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl get nodes: %w\n%s", err, out)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			rows[f[0]] = f[1]
		}
	}
	var errs []string
	for _, n := range want {
		if st, ok := rows[n]; !ok || (st != "Ready" && !strings.HasPrefix(st, "Ready,")) {
			errs = append(errs, fmt.Sprintf("%s is %q", n, st))
		}
	}
	for _, n := range absent {
		if _, ok := rows[n]; ok {
			errs = append(errs, n+" is listed")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kubectl get nodes: %s\n%s", strings.Join(errs, "; "), out)
	}
	return nil
}

// checkHostsClean: after destroy, a reset planned over the whole
// inventory (with the cluster's engine state) would change nothing.
func checkHostsClean(ctx context.Context, k *tfLab, engineState string) error {
	if engineState == "" {
		return fmt.Errorf("the create step did not finish: no engine state to check the hosts with")
	}
	e, done, err := k.engineFrom(engineState)
	if err != nil {
		return err
	}
	defer done()
	plan, err := e.PlanReset(ctx, installer.Options{})
	if err != nil {
		return fmt.Errorf("planning a reset after destroy: %w", err)
	}
	if len(plan.Changes) != 0 {
		return fmt.Errorf("after destroy the hosts still hold: %v", plan.Changes)
	}
	return nil
}

// engineFrom builds an engine over a tricenter_cluster's engine state (in
// memory, as the provider does).
func (k *tfLab) engineFrom(engineState string) (*installer.Engine, func(), error) {
	files, err := decodeFiles(types.StringValue(engineState))
	if err != nil {
		return nil, nil, fmt.Errorf("engine state from the create step: %w", err)
	}
	st, err := state.NewMem(files, "")
	if err != nil {
		return nil, nil, err
	}
	c, lines, err := inventory.Load(k.file)
	if err != nil {
		return nil, nil, err
	}
	e, err := installer.New(installer.Config{Cluster: c, Lines: lines, Store: st, AgentBinary: filepath.Join(k.arts, "tricenter-bgp")})
	if err != nil {
		return nil, nil, err
	}
	return e, func() { e.Close() }, nil
}

func pollFor(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
