package acceptance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/provider"
)

// The site-loss lab: one etcd member per center (dc1-r01-s01, dc2-r01-s01,
// dc3-r01-s01), a worker in dc1, and two spare servers in dc3 with
// addresses no member ever had, powered off until the restore.
var (
	siteLossOff    = []string{"dc1-r02-s01", "dc2-r01-w01", "dc2-r02-s01"}
	siteLossLost   = []string{"dc1-r01-s01", "dc1-r01-w01", "dc2-r01-s01"}
	siteLossSpares = []inventory.Server{
		{Name: "dc3-r01-s02", Roles: []inventory.Role{inventory.RoleEtcd, inventory.RoleControlPlane},
			SSH: inventory.SSH{Address: "198.19.5.11"}, PodCIDR: "198.19.135.0/24"},
		{Name: "dc3-r01-s03", Roles: []inventory.Role{inventory.RoleEtcd, inventory.RoleControlPlane},
			SSH: inventory.SSH{Address: "198.19.5.12"}, PodCIDR: "198.19.136.0/24"},
	}
)

const siteLossBMCPassword = "TRICENTER_LAB_BMC_PASSWORD"

// TestSiteLossRestore first loses dc1 alone and fences it (the
// StatefulSet's pod moves), brings it back, unfences it and brings the
// etcd leader home (fenceAndReturn). Then it loses the local site (production and local DR, two
// of three etcd members) with a Deployment and a StatefulSet running
// there, through the servers' BMCs, and brings the cluster back from the
// remote-DR center's newest snapshot onto the surviving member and two
// replacement servers with new addresses, from a copy of the state kept
// outside the lost site. It checks: restore refuses while the quorum
// answers; the snapshot chosen is the newest one in dc3; what was written
// before it is there and what was written after it is not (the RPO the
// snapshot's time predicts); the API answers behind the VIP; etcd runs on
// the three dc3 servers; the surviving node reconnects without a
// reinstall; the lost Nodes are fenced and both pods run in dc3.
func TestSiteLossRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	s := startSiteLossLab(t, ctx)
	k, e, cs, bmcs := s.k, s.e, s.cs, s.bmcs
	fenceAndReturn(t, ctx, k, e, cs, bmcs)
	before := writeMarker(t, ctx, cs, "before-snapshot")
	var snap *installer.StoredSnapshot
	if err := pollUntil(ctx, 3*time.Minute, func() error {
		stores, err := e.ListSnapshots(ctx)
		if err != nil {
			return err
		}
		for _, s := range stores {
			if s.Server == "dc3-r01-s01" && s.Newest() != nil && s.Newest().TakenAt.After(before) {
				snap = s.Newest()
				return nil
			}
		}
		return errors.New("no snapshot in dc3 taken after the marker")
	}); err != nil {
		t.Fatal(err)
	}
	after := writeMarker(t, ctx, cs, "after-snapshot")
	t.Logf("snapshot %s taken %v after the first marker; the second written %v after it", snap.ID,
		snap.TakenAt.Sub(before).Round(time.Second), after.Sub(snap.TakenAt).Round(time.Second))

	// A cluster with its quorum is not restored.
	if _, err := e.Restore(ctx, installer.RestoreOptions{}); !errors.Is(err, etcd.ErrQuorumAnswers) {
		t.Fatalf("restore of a healthy cluster: %v, want ErrQuorumAnswers", err)
	}

	// The state's copy outside the lost site.
	stateCopy := filepath.Join(k.dir, "state-copy")
	if out, err := exec.CommandContext(ctx, "cp", "-a", k.stateDir, stateCopy).CombinedOutput(); err != nil {
		t.Fatalf("copying the state: %v\n%s", err, out)
	}

	// The local site goes dark: its servers powered off through their
	// BMCs (ipmitool, the password from the environment).
	lossAt := time.Now()
	s.powerOffSite(t, ctx)
	t.Logf("local site powered off through %d BMCs in %v", len(siteLossLost), time.Since(lossAt).Round(time.Millisecond))

	// The operator adds the replacements, marks dc1 and dc2 lost, and
	// restores with the state copy.
	s.startSpares(t, ctx)
	c2 := s.afterLoss(t)
	e2 := k.engineAt(t, c2, stateCopy)
	plan, err := e2.Restore(ctx, installer.RestoreOptions{DryRun: true, WaitReachable: 2 * time.Minute})
	if err != nil {
		t.Fatalf("restore dry run: %v", err)
	}
	if plan.From != "dc3-r01-s01" || plan.Snapshot == nil || plan.Snapshot.TakenAt.Before(snap.TakenAt) ||
		!slices.Equal(plan.New, []string{"dc3-r01-s02", "dc3-r01-s03"}) || plan.Rehearsal == nil || !plan.Rehearsal.OK {
		t.Fatalf("restore plan: from %s, snapshot %+v, new %v, rehearsal %+v", plan.From, plan.Snapshot, plan.New, plan.Rehearsal)
	}
	// The restore itself through Terraform: the cluster imported from
	// the state copy, restore_from = "newest".
	restoreWithTerraform(t, ctx, s, c2, filepath.Join(stateCopy, c2.Metadata.Name))
	e2 = k.engineAt(t, c2, stateCopy)
	rep := plan
	apiAt := time.Now()
	cs2, err := e2.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"before-snapshot": true, "after-snapshot": rep.Snapshot.TakenAt.After(after)} {
		_, err := cs2.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
		if got := err == nil; got != want {
			t.Errorf("ConfigMap %s present %v after the restore, want %v (snapshot taken %s): %v", name, got, want, rep.Snapshot.TakenAt, err)
		}
	}
	p, err := e2.EtcdPKI(false)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := e2.EtcdClient(p)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	h := cli.Health(ctx, e2.Placement().Etcd.Members)
	if h.PerCenter["dc3"] != 3 || len(h.Members) != 3 {
		t.Errorf("etcd after the restore: %d members, per center %v", len(h.Members), h.PerCenter)
	}
	for _, n := range siteLossLost {
		node, err := cs2.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(node.Spec.Taints, func(tn corev1.Taint) bool { return tn.Key == installer.OutOfServiceTaint.Key }) {
			t.Errorf("lost server %s not fenced: taints %v", n, node.Spec.Taints)
		}
	}
	waitWorkloads(t, ctx, cs2, inCenter(c2, "dc3"))
	t.Logf("RTO: API through the VIP %v after the loss, both pods Running in dc3 %v after it",
		apiAt.Sub(lossAt).Round(time.Second), time.Since(lossAt).Round(time.Second))
	// The surviving node kept its installation: its kubelet's boot and
	// certificate did not change, it is Ready again.
	n, err := cs2.CoreV1().Nodes().Get(ctx, "dc3-r01-s01", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cnd := range n.Status.Conditions {
		if cnd.Type == corev1.NodeReady && cnd.Status != corev1.ConditionTrue {
			t.Errorf("dc3-r01-s01 not Ready after the restore: %s", cnd.Message)
		}
	}
}

func writeMarker(t testing.TB, ctx context.Context, cs kubernetes.Interface, name string) time.Time {
	t.Helper()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
		Data: map[string]string{"written": time.Now().UTC().Format(time.RFC3339Nano)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// startSiteLossWorkloads runs a Deployment and a StatefulSet of one
// replica each, preferring dc1.
func startSiteLossWorkloads(t testing.TB, ctx context.Context, cs kubernetes.Interface) {
	t.Helper()
	no, yes := false, true
	one := int32(1)
	spec := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
			// The default grace period (30 s): a pod deleted on a dead
			// node stays Terminating until someone confirms the node is
			// gone, as in production (a zero grace would delete it at once).
			Spec: corev1.PodSpec{
				Tolerations: []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
				Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
					Weight: 100, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
						Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"dc1"}}}}}}}},
				SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes,
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Containers: []corev1.Container{{Name: "probe", Image: installer.ProbeImage, ImagePullPolicy: corev1.PullNever,
					Args: []string{"serve", "--listen", ":8080"},
					SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}}}}
	}
	sel := func(app string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: sel("web"), Template: spec("web")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().StatefulSets("default").Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, Selector: sel("db"), Template: spec("db"), ServiceName: "db"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitWorkloads waits until web's and db's pods are Running and Ready,
// each on a node where (nil).
func waitWorkloads(t testing.TB, ctx context.Context, cs kubernetes.Interface, where func(node string) error) {
	t.Helper()
	if err := pollUntil(ctx, 8*time.Minute, func() error {
		for _, app := range []string{"web", "db"} {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				return err
			}
			ok := false
			var seen []string
			for _, p := range pods.Items {
				ready := podReady(&p)
				seen = append(seen, p.Name+"@"+p.Spec.NodeName+":"+string(p.Status.Phase)+":ready="+strconv.FormatBool(ready))
				if ready && where(p.Spec.NodeName) == nil {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("%s: no pod Running and Ready where wanted: %v", app, seen)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// ipmiPowerOff powers a server off through its BMC with ipmitool, and
// waits until the BMC reports
// it off.
func ipmiPowerOff(t testing.TB, ctx context.Context, b *ipmisim.BMC) {
	t.Helper()
	run := func(args ...string) string {
		out, err := b.Ipmitool(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	run("chassis", "power", "off")
	if err := pollUntil(ctx, time.Minute, func() error {
		if out := run("chassis", "power", "status"); !slices.Contains([]string{"Chassis Power is off\n"}, out) {
			return fmt.Errorf("%s: %q", b.Name(), out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// siteLossLab is the site-loss lab with the cluster applied and the
// Deployment and StatefulSet running in dc1.
type siteLossLab struct {
	k    *kubeLab
	e    *installer.Engine
	cs   kubernetes.Interface
	bmcs map[string]*ipmisim.BMC
}

func startSiteLossLab(tb testing.TB, ctx context.Context) *siteLossLab {
	tb.Helper()
	k := startKubeLabWith(tb, kubeLabOptions{Off: siteLossOff, Spares: siteLossSpares, SpareRack: "dc3-r01"})
	// One etcd member per center: the local site holds two of three.
	if !bytes.Contains(k.inv, []byte("\n    members: 5\n")) {
		tb.Fatal("acceptance/testdata/nspawn-lab.yaml: no spec.etcd.members: 5 to lower")
	}
	k.inv = bytes.Replace(k.inv, []byte("\n    members: 5\n"), []byte("\n    members: 3\n"), 1)
	tb.Setenv(siteLossBMCPassword, "lab-secret")
	s := &siteLossLab{k: k, bmcs: labBMCs(tb, ctx, k, 70, siteLossLost...)}
	s.e = k.engine(tb, s.withBMCs(k.cluster(tb, siteLossOff...)))
	start := time.Now()
	res, err := s.e.Apply(ctx, installer.Options{})
	if err != nil {
		tb.Fatalf("apply: %v\ngates failed: %v", err, failedGates(res))
	}
	tb.Logf("cold apply of %d servers: %v", len(s.e.Cluster().Hosts()), time.Since(start).Round(time.Second))
	if s.cs, err = s.e.Clientset(); err != nil {
		tb.Fatal(err)
	}
	startSiteLossWorkloads(tb, ctx, s.cs)
	waitWorkloads(tb, ctx, s.cs, inCenter(s.e.Cluster(), "dc1"))
	return s
}

// withBMCs gives the lost servers their lab BMCs in c.
func (s *siteLossLab) withBMCs(c *inventory.Cluster) *inventory.Cluster {
	for i := range c.Spec.Racks {
		for j := range c.Spec.Racks[i].Servers {
			srv := &c.Spec.Racks[i].Servers[j]
			if b := s.bmcs[srv.Name]; b != nil {
				srv.BMC = &inventory.BMC{Address: b.Address().String(), Port: b.Port(), User: "admin",
					Password: inventory.SecretRef{Env: siteLossBMCPassword}}
			}
		}
	}
	return c
}

// afterLoss is the inventory the operator restores with: the spares
// added to dc3, dc1 and dc2 marked lost.
func (s *siteLossLab) afterLoss(tb testing.TB) *inventory.Cluster {
	tb.Helper()
	c := s.withBMCs(s.k.cluster(tb, siteLossOff...))
	c.Rack("dc3-r01").Servers = append(c.Rack("dc3-r01").Servers, siteLossSpares...)
	c.SetDefaults()
	if err := c.MarkLost([]string{"dc1", "dc2"}); err != nil {
		tb.Fatal(err)
	}
	if err := c.Validate(nil).Err(); err != nil {
		tb.Fatal(err)
	}
	return c
}

// powerOffSite cuts the local site's servers through their BMCs.
func (s *siteLossLab) powerOffSite(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for _, n := range siteLossLost {
		ipmiPowerOff(tb, ctx, s.bmcs[n])
	}
	for _, n := range siteLossLost {
		if s.k.lab.Machine(n).Running() {
			tb.Fatalf("%s still runs after its BMC powered it off", n)
		}
	}
}

// startSpares powers the replacement servers on.
func (s *siteLossLab) startSpares(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for _, srv := range siteLossSpares {
		if err := s.k.lab.Machine(srv.Name).Start(ctx); err != nil {
			tb.Fatal(err)
		}
	}
}

// inCenter accepts nodes of center, outside refuses them.
func inCenter(c *inventory.Cluster, center string) func(string) error {
	return func(node string) error {
		if h, ok := c.Host(node); !ok || h.Center.Name != center {
			return fmt.Errorf("on %s, want a %s server", node, center)
		}
		return nil
	}
}

func outside(c *inventory.Cluster, center string) func(string) error {
	return func(node string) error {
		if h, ok := c.Host(node); !ok || h.Center.Name == center {
			return fmt.Errorf("on %s, want a server outside %s", node, center)
		}
		return nil
	}
}

// fenceAndReturn loses dc1 alone (its two servers powered off through
// their BMCs): etcd keeps its quorum, fence confirms the servers off and
// taints their Nodes, and the StatefulSet's pod, which Kubernetes never
// moves by itself, runs in another center. dc1 comes back: unfence takes
// the taints off once its Nodes are Ready by the health rule, and an apply
// brings the etcd leader home into dc1. The pods go back to dc1.
func fenceAndReturn(t testing.TB, ctx context.Context, k *kubeLab, e *installer.Engine, cs kubernetes.Interface, bmcs map[string]*ipmisim.BMC) {
	t.Helper()
	dc1 := []string{"dc1-r01-s01", "dc1-r01-w01"}
	lossAt := time.Now()
	for _, n := range dc1 {
		ipmiPowerOff(t, ctx, bmcs[n])
	}
	f, err := e.Fence(ctx, installer.FenceOptions{Center: "dc1"})
	if err != nil || !f.Fenced {
		t.Fatalf("fence dc1: %v, %+v", err, f)
	}
	fencedAt := time.Now()
	for _, s := range f.Servers {
		if s.Power != installer.FencePowerOff || s.Node != installer.FenceNodeTainted {
			t.Errorf("fence of %s: power %q, node %q", s.Name, s.Power, s.Node)
		}
	}
	waitWorkloads(t, ctx, cs, outside(e.Cluster(), "dc1"))
	t.Logf("center loss with fencing: fenced %v after the power-off, the StatefulSet's and the Deployment's pods Ready outside dc1 %v after the fence (%v after the loss)",
		fencedAt.Sub(lossAt).Round(time.Millisecond), time.Since(fencedAt).Round(time.Second), time.Since(lossAt).Round(time.Second))

	for _, n := range dc1 {
		if err := k.lab.Machine(n).Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Not before the Nodes are Ready again.
	if u, err := e.Unfence(ctx, "dc1", false); err == nil && u.Unfenced {
		t.Fatalf("unfence right after power-on: %+v", u)
	}
	var u *installer.UnfenceReport
	if err := pollUntil(ctx, 5*time.Minute, func() error {
		u, err = e.Unfence(ctx, "dc1", false)
		if err != nil {
			return err
		}
		if !u.Unfenced {
			return fmt.Errorf("not unfenced: %+v", u.Servers)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range dc1 {
		node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range node.Spec.Taints {
			if tn.Key == installer.OutOfServiceTaint.Key {
				t.Errorf("%s keeps %s after unfence", n, tn.ToString())
			}
		}
	}
	waitUntainted(t, ctx, cs, dc1...)
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	was := st.EtcdLeader
	res, err := e.Apply(ctx, installer.Options{})
	if err != nil {
		t.Fatalf("apply after dc1 came back: %v\ngates failed: %v", err, failedGates(res))
	}
	if st, err = e.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if l := st.EtcdLeader; l == nil || l.LeaderCenter != "dc1" || !l.Home {
		t.Errorf("etcd leader after the apply: %+v (before: %+v)", l, was)
	}
	t.Logf("etcd leader: %s (%s) before the apply, %s (%s) after it (%s)", was.Leader, was.LeaderCenter,
		st.EtcdLeader.Leader, st.EtcdLeader.LeaderCenter, res.Etcd.LeaderMoved)
	// Back to dc1, where the pods prefer to run.
	for _, app := range []string{"web", "db"} {
		if err := cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=" + app}); err != nil {
			t.Fatal(err)
		}
	}
	waitWorkloads(t, ctx, cs, inCenter(e.Cluster(), "dc1"))
}

// podReady: Running, not being deleted, its Ready condition True.
func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// restoreWithTerraform imports the cluster from the state directory dir
// with the inventory c (lost centers marked, replacements added) and
// applies restore_from = "newest": the plan is an update warning of the
// restore, the apply leaves a healthy cluster with its etcd members in
// dc3. The engine state it ends with is written back to dir; a removed
// block then forgets the cluster without destroying it.
func restoreWithTerraform(t *testing.T, ctx context.Context, s *siteLossLab, c *inventory.Cluster, dir string) {
	t.Helper()
	inv := filepath.Join(s.k.dir, "after-loss.yaml")
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, b, 0o600); err != nil {
		t.Fatal(err)
	}
	const addr = "tricenter_cluster.lab"
	config := fmt.Sprintf(`
resource "tricenter_cluster" "lab" {
  path           = %q
  restore_from   = "newest"
  wait_reachable = "2m"
}
`, inv)
	start := time.Now()
	resource.UnitTest(t, resource.TestCase{
		ProtoV6ProviderFactories: map[string]func() (tfprotov6.ProviderServer, error){
			"tricenter": providerserver.NewProtocol6WithError(provider.New("test")()),
		},
		Steps: []resource.TestStep{
			{
				Config: config + importConfig(addr, dir+"#"+inv),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "healthy", "true"),
					resource.TestCheckResourceAttr(addr, "etcd_members.%", "3"),
					resource.TestCheckResourceAttr(addr, "etcd_members.dc3-r01-s02", "dc3"),
					resource.TestCheckResourceAttr(addr, "etcd_members.dc3-r01-s03", "dc3"),
					resource.TestCheckResourceAttr(addr, "etcd_members_per_center.dc3", "3"),
					func(st *terraform.State) error {
						return stateToDir(dir, st.RootModule().Resources[addr].Primary.Attributes["state"])
					},
				),
			},
			{
				Config: forgetConfig(addr),
			},
		},
	})
	t.Logf("terraform import + apply with restore_from: %v", time.Since(start).Round(time.Second))
}

// waitUntainted waits until the nodes carry no node.kubernetes.io/ taint
// (unreachable, not-ready, out-of-service): a Node Ready again keeps
// node-lifecycle's taints for a moment, and the scheduler avoids it
// meanwhile.
func waitUntainted(tb testing.TB, ctx context.Context, cs kubernetes.Interface, nodes ...string) {
	tb.Helper()
	if err := pollUntil(ctx, 2*time.Minute, func() error {
		for _, n := range nodes {
			node, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, tn := range node.Spec.Taints {
				if strings.HasPrefix(tn.Key, "node.kubernetes.io/") {
					return fmt.Errorf("%s: %s", n, tn.ToString())
				}
			}
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
}
