package acceptance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/internal/ipmisim"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
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

// TestSiteLossRestore loses the local site (production and local DR, two
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
	k := startKubeLabWith(t, kubeLabOptions{Off: siteLossOff, Spares: siteLossSpares, SpareRack: "dc3-r01"})
	// One etcd member per center: the local site holds two of three.
	if !bytes.Contains(k.inv, []byte("\n    members: 5\n")) {
		t.Fatal("acceptance/testdata/nspawn-lab.yaml: no spec.etcd.members: 5 to lower")
	}
	k.inv = bytes.Replace(k.inv, []byte("\n    members: 5\n"), []byte("\n    members: 3\n"), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	t.Setenv(siteLossBMCPassword, "lab-secret")
	bmcs := labBMCs(t, ctx, k, 70, siteLossLost...)
	withBMCs := func(c *inventory.Cluster) *inventory.Cluster {
		for i := range c.Spec.Racks {
			for j := range c.Spec.Racks[i].Servers {
				s := &c.Spec.Racks[i].Servers[j]
				if b := bmcs[s.Name]; b != nil {
					s.BMC = &inventory.BMC{Address: b.Address().String(), Port: b.Port(), User: "admin",
						Password: inventory.SecretRef{Env: siteLossBMCPassword}}
				}
			}
		}
		return c
	}
	e := k.engine(t, withBMCs(k.cluster(t, siteLossOff...)))
	start := time.Now()
	res, err := e.Apply(ctx, installer.Options{})
	if err != nil {
		t.Fatalf("apply: %v\ngates failed: %v", err, failedGates(res))
	}
	t.Logf("cold apply of %d servers: %v", len(e.Cluster().Hosts()), time.Since(start).Round(time.Second))
	cs, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}

	// Workloads in the local site, data before the snapshot.
	startSiteLossWorkloads(t, ctx, cs)
	waitWorkloads(t, ctx, cs, func(node string) error {
		if h, ok := e.Cluster().Host(node); !ok || h.Center.Name != "dc1" {
			return fmt.Errorf("on %s, want a dc1 server", node)
		}
		return nil
	})
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
	for _, n := range siteLossLost {
		ipmiPowerOff(t, ctx, bmcs[n])
	}
	for _, n := range siteLossLost {
		if k.lab.Machine(n).Running() {
			t.Fatalf("%s still runs after its BMC powered it off", n)
		}
	}
	t.Logf("local site powered off through %d BMCs in %v", len(siteLossLost), time.Since(lossAt).Round(time.Millisecond))

	// The operator adds the replacements, marks dc1 and dc2 lost, and
	// restores with the state copy.
	for _, s := range siteLossSpares {
		if err := k.lab.Machine(s.Name).Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	c2 := withBMCs(k.cluster(t, siteLossOff...))
	c2.Rack("dc3-r01").Servers = append(c2.Rack("dc3-r01").Servers, siteLossSpares...)
	c2.SetDefaults()
	if err := c2.MarkLost([]string{"dc1", "dc2"}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Validate(nil).Err(); err != nil {
		t.Fatal(err)
	}
	e2 := k.engineAt(t, c2, stateCopy)
	plan, err := e2.Restore(ctx, installer.RestoreOptions{DryRun: true, WaitReachable: 2 * time.Minute})
	if err != nil {
		t.Fatalf("restore dry run: %v", err)
	}
	if plan.From != "dc3-r01-s01" || plan.Snapshot == nil || plan.Snapshot.TakenAt.Before(snap.TakenAt) ||
		!slices.Equal(plan.New, []string{"dc3-r01-s02", "dc3-r01-s03"}) || plan.Rehearsal == nil || !plan.Rehearsal.OK {
		t.Fatalf("restore plan: from %s, snapshot %+v, new %v, rehearsal %+v", plan.From, plan.Snapshot, plan.New, plan.Rehearsal)
	}
	rep, err := e2.Restore(ctx, installer.RestoreOptions{WaitReachable: 2 * time.Minute})
	if rep != nil {
		t.Logf("restore: snapshot %s from %s, members %v (new %v), %d bytes moved, etcd and API after %v, done after %v",
			rep.Snapshot.ID, rep.From, rep.Members, rep.New, rep.BytesMoved, rep.EtcdHealthy.Round(time.Second), rep.Done.Round(time.Second))
	}
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
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
	for _, f := range rep.Fences {
		if !f.Fenced {
			t.Errorf("lost center %s not fenced: %+v", f.Center, f)
		}
	}
	waitWorkloads(t, ctx, cs2, func(node string) error {
		if h, ok := c2.Host(node); !ok || h.Center.Name != "dc3" {
			return fmt.Errorf("on %s, want a dc3 server", node)
		}
		return nil
	})
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

func writeMarker(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) time.Time {
	t.Helper()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
		Data: map[string]string{"written": time.Now().UTC().Format(time.RFC3339Nano)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// startSiteLossWorkloads runs a Deployment and a StatefulSet of one
// replica each, preferring dc1.
func startSiteLossWorkloads(t *testing.T, ctx context.Context, cs kubernetes.Interface) {
	t.Helper()
	no, yes := false, true
	one := int32(1)
	spec := func(app string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: new(int64),
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
func waitWorkloads(t *testing.T, ctx context.Context, cs kubernetes.Interface, where func(node string) error) {
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
				ready := p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
				for _, c := range p.Status.Conditions {
					ready = ready && (c.Type != corev1.PodReady || c.Status == corev1.ConditionTrue)
				}
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
func ipmiPowerOff(t *testing.T, ctx context.Context, b *ipmisim.BMC) {
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
