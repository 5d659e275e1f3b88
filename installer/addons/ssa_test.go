package addons

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// versions maps every add-on object and Node to its resourceVersion.
func versions(t *testing.T, cs kubernetes.Interface) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	add := func(kind string, m metav1.Object, err error) {
		if err != nil {
			t.Fatalf("reading %s: %v", kind, err)
		}
		out[kind+" "+m.GetNamespace()+"/"+m.GetName()] = m.GetResourceVersion()
	}
	get := metav1.GetOptions{}
	sa, err := cs.CoreV1().ServiceAccounts(Namespace).Get(ctx, CoreDNSName, get)
	add("ServiceAccount", sa, err)
	cr, err := cs.RbacV1().ClusterRoles().Get(ctx, coreDNSRole, get)
	add("ClusterRole", cr, err)
	crb, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, coreDNSRole, get)
	add("ClusterRoleBinding", crb, err)
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, CoreDNSName, get)
	add("ConfigMap", cm, err)
	d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, CoreDNSName, get)
	add("Deployment", d, err)
	pdb, err := cs.PolicyV1().PodDisruptionBudgets(Namespace).Get(ctx, CoreDNSName, get)
	add("PodDisruptionBudget", pdb, err)
	svc, err := cs.CoreV1().Services(Namespace).Get(ctx, DNSServiceName, get)
	add("Service", svc, err)
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes.Items {
		add("Node", &nodes.Items[i], nil)
	}
	return out
}

// applies counts the server-side applies among the fake's actions from
// index from on.
func applies(cs *fake.Clientset, from int) int {
	n := 0
	for _, a := range cs.Actions()[from:] {
		if p, ok := a.(k8stesting.PatchAction); ok && p.GetPatchType() == types.ApplyPatchType {
			n++
		}
	}
	return n
}

// owns reports whether manager (with operation op) owns the field path
// (as written in FieldsV1, e.g. `"f:data":{"f:Corefile"`) of m.
func owns(m metav1.Object, manager string, op metav1.ManagedFieldsOperationType, path string) bool {
	for _, e := range m.GetManagedFields() {
		if e.Manager == manager && e.Operation == op && e.FieldsV1 != nil && strings.Contains(string(e.FieldsV1.Raw), path) {
			return true
		}
	}
	return false
}

// driftOutOfBand edits what tricenter applied the way an operator would
// with kubectl: CoreDNS scaled to 0 (scaleToZero: a real API server takes
// it through the scale subresource, the fake as an update), its Corefile
// edited and a label of the operator's added (kubectl-edit), its
// ClusterRole cut to one rule, Node w1's rack label overwritten, its zone
// label removed and a label of the operator's added (kubectl-label).
func driftOutOfBand(t *testing.T, ctx context.Context, cs kubernetes.Interface, scaleToZero func() error) {
	t.Helper()
	get := metav1.GetOptions{}
	if err := scaleToZero(); err != nil {
		t.Fatal(err)
	}
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, CoreDNSName, get)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["Corefile"] = ".:53 {\n    forward . 192.0.2.1\n}\n"
	cm.Labels["team"] = "dns"
	if _, err := cs.CoreV1().ConfigMaps(Namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	cr, err := cs.RbacV1().ClusterRoles().Get(ctx, coreDNSRole, get)
	if err != nil {
		t.Fatal(err)
	}
	cr.Rules = cr.Rules[:1]
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, "w1", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"tricenter.io/rack":"elsewhere","topology.kubernetes.io/zone":null,"example.com/owner":"ops"}}}`),
		metav1.PatchOptions{FieldManager: "kubectl-label"}); err != nil {
		t.Fatal(err)
	}
}

// checkDriftRepaired: after driftOutOfBand the next apply puts
// tricenter's fields back and names exactly the objects edited; it forces
// tricenter's fields only, so the fields the operator added stay, and stay
// the operator's.
func checkDriftRepaired(t *testing.T, ctx context.Context, cs kubernetes.Interface, o Options) {
	t.Helper()
	want, err := CoreDNS(o)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(changed)
	if wantChanges := []string{
		"labelled Node w1 (topology.kubernetes.io/zone, tricenter.io/rack)",
		"updated ClusterRole system:coredns",
		"updated ConfigMap kube-system/coredns",
		"updated Deployment kube-system/coredns",
	}; !slices.Equal(changed, wantChanges) {
		t.Fatalf("repairing apply reported %q, want %q", changed, wantChanges)
	}
	get := metav1.GetOptions{}
	d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, CoreDNSName, get)
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != *want.Deployment.Spec.Replicas {
		t.Errorf("CoreDNS replicas %d after the repair, want %d", *d.Spec.Replicas, *want.Deployment.Spec.Replicas)
	}
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, CoreDNSName, get)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["Corefile"] != want.ConfigMap.Data["Corefile"] {
		t.Errorf("Corefile after the repair:\n%s", cm.Data["Corefile"])
	}
	if cm.Labels["team"] != "dns" {
		t.Errorf("the repair removed a label tricenter does not apply: %v", cm.Labels)
	}
	if !owns(cm, "kubectl-edit", metav1.ManagedFieldsOperationUpdate, `"f:team"`) ||
		owns(cm, "kubectl-edit", metav1.ManagedFieldsOperationUpdate, `"f:Corefile"`) ||
		!owns(cm, FieldManager, metav1.ManagedFieldsOperationApply, `"f:Corefile"`) {
		t.Errorf("ConfigMap field owners after the repair: %+v", cm.ManagedFields)
	}
	cr, err := cs.RbacV1().ClusterRoles().Get(ctx, coreDNSRole, get)
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Rules) != 2 {
		t.Errorf("ClusterRole rules after the repair: %+v", cr.Rules)
	}
	w1, err := cs.CoreV1().Nodes().Get(ctx, "w1", get)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelRack: "dc1-r01", LabelZone: "dc1", "example.com/owner": "ops"} {
		if w1.Labels[k] != v {
			t.Errorf("w1 label %s = %q after the repair, want %q", k, w1.Labels[k], v)
		}
	}
}

// checkQuietApply: an apply with nothing to change (after what) reports
// nothing and writes no object (no resourceVersion moves).
func checkQuietApply(t *testing.T, ctx context.Context, cs kubernetes.Interface, o Options, after string) {
	t.Helper()
	before := versions(t, cs)
	again, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Errorf("the apply after %s reported %q", after, again)
	}
	if now := versions(t, cs); !maps.Equal(before, now) {
		t.Errorf("the apply after %s wrote objects: resourceVersions %v, then %v", after, before, now)
	}
}

// TestApplyRepairsDrift: edits made out of band to what tricenter applies
// (CoreDNS scaled to 0, its Corefile and RBAC changed, a Node's topology
// labels overwritten and removed) are put back by the next apply, which
// names exactly those objects; fields others added stay theirs; the apply
// after that reports nothing and writes nothing (but still applies).
func TestApplyRepairsDrift(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	cs := newFakeAPI(t, registeredNodes("cp1", "w1", "cp2", "cp3")...)
	if _, err := Apply(ctx, cs, o); err != nil {
		t.Fatal(err)
	}
	driftOutOfBand(t, ctx, cs, func() error {
		// The fake has no scale subresource: kubectl scale as an update.
		deployments := cs.AppsV1().Deployments(Namespace)
		d, err := deployments.Get(ctx, CoreDNSName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Replicas = ptr(int32(0))
		_, err = deployments.Update(ctx, d, metav1.UpdateOptions{FieldManager: "kubectl-scale"})
		return err
	})
	checkDriftRepaired(t, ctx, cs, o)
	w1, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w1.Labels["kubernetes.io/hostname"] != "w1" {
		t.Errorf("the repair removed the kubelet's hostname label: %v", w1.Labels)
	}
	from := len(cs.Actions())
	checkQuietApply(t, ctx, cs, o, "the repair")
	if applies(cs, from) == 0 {
		t.Error("the apply after the repair applied nothing")
	}
}

// preSSAMeta is the metadata the hash-annotation version of tricenter
// gave CoreDNS's objects (it created them as field manager tricenter,
// operation Update).
func preSSAMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: CoreDNSName, Namespace: Namespace,
		Labels:      map[string]string{labelApp: "kube-dns", ManagedByLabel: FieldManager},
		Annotations: map[string]string{AppliedAnnotation: "0123456789abcdef0123456789abcdef"}}
}

// checkTakenOver: m, created with preSSAMeta, is server-side applied now:
// the annotation tricenter no longer applies is gone, and so is its update
// entry.
func checkTakenOver(t *testing.T, m metav1.Object) {
	t.Helper()
	if _, ok := m.GetAnnotations()[AppliedAnnotation]; ok {
		t.Errorf("the applied-hash annotation is still there: %v", m.GetAnnotations())
	}
	for _, e := range m.GetManagedFields() {
		if e.Manager == FieldManager && e.Operation == metav1.ManagedFieldsOperationUpdate {
			t.Errorf("tricenter's update entry is left: %+v", m.GetManagedFields())
		}
	}
}

// TestApplyTakesOverPreSSAObjects: objects the hash-annotation version of
// tricenter created and updated (field manager tricenter, operation Update)
// move to server-side apply: tricenter's update entry is folded into its
// apply entry, so the annotation it no longer applies is removed; the
// apply after that reports nothing.
func TestApplyTakesOverPreSSAObjects(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	cs := newFakeAPI(t)
	want, err := CoreDNS(o)
	if err != nil {
		t.Fatal(err)
	}
	old := &corev1.ConfigMap{ObjectMeta: preSSAMeta(), Data: map[string]string{"Corefile": want.ConfigMap.Data["Corefile"]}}
	if _, err := cs.CoreV1().ConfigMaps(Namespace).Create(ctx, old, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		t.Fatal(err)
	}
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(changed, "updated ConfigMap kube-system/coredns") || slices.Contains(changed, "created ConfigMap kube-system/coredns") {
		t.Errorf("changes %q, want the ConfigMap updated", changed)
	}
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkTakenOver(t, cm)
	if !owns(cm, FieldManager, metav1.ManagedFieldsOperationApply, `"f:Corefile"`) {
		t.Errorf("tricenter does not apply the Corefile: %+v", cm.ManagedFields)
	}
	checkQuietApply(t, ctx, cs, o, "the takeover")
}

// TestApplyRemovesControlPlaneRoleOfWorker: a role label tricenter wants
// gone is removed even when another manager set it.
func TestApplyRemovesControlPlaneRoleOfWorker(t *testing.T) {
	ctx := context.Background()
	o := options(t)
	nodes := registeredNodes("w1")
	nodes[0].(*corev1.Node).Labels[LabelControlPlane] = ""
	cs := newFakeAPI(t, nodes...)
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	var labelled string
	for _, c := range changed {
		if strings.HasPrefix(c, "labelled Node w1 ") {
			labelled = c
		}
	}
	if !strings.Contains(labelled, LabelControlPlane) {
		t.Errorf("changes %q do not name the removed role label", changed)
	}
	w1, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w1.Labels[LabelControlPlane]; ok {
		t.Errorf("worker w1 keeps the control-plane role: %v", w1.Labels)
	}
	checkQuietApply(t, ctx, cs, o, "the removal")
}

func ptr[T any](v T) *T { return &v }
