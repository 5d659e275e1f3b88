package addons

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
)

// TestAgainstRealAPIServer applies the add-ons to a real kube-apiserver
// (server-side apply, defaulting, validation, admission, the eviction API
// and PodDisruptionBudgets), re-applies with no change, repairs out-of-band
// edits, takes over objects of the hash-annotation version, and drains a
// Node.
func TestAgainstRealAPIServer(t *testing.T) {
	o := options(t)
	// The inventory's service network, where the cluster DNS IP lies.
	cs := kubetest.Start(t, kubetest.Options{ServiceCIDR: o.Cluster.Spec.Network.ServiceCIDR})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o.FRU = map[string]FRU{"w1": {Serial: "SN-4711", Model: "R650"}}
	for _, n := range []string{"cp1", "w1", "cp2", "cp3"} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first apply in %v: %d changes", time.Since(start).Round(time.Millisecond), len(changed))
	if len(changed) != 7+4+2 { // 7 objects, 4 nodes labelled, cp1 and cp3 tainted
		t.Errorf("first apply made %d changes: %q", len(changed), changed)
	}
	svc, err := cs.CoreV1().Services(Namespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != o.IPs.ClusterDNSIP.String() {
		t.Errorf("kube-dns at %s, want %s", svc.Spec.ClusterIP, o.IPs.ClusterDNSIP)
	}
	w1, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w1.Labels[LabelSerial] != "SN-4711" || w1.Labels[LabelZone] != "dc1" || w1.Labels[LabelRack] != "dc1-r01" {
		t.Errorf("w1 labels %v", w1.Labels)
	}

	// The server defaulted every object; re-applying still changes nothing.
	checkQuietApply(t, ctx, cs, o, "the first against the real API")
	// An edit of the objects' spec by tricenter (more replicas) updates
	// the Deployment only, and the server accepts the update.
	o.CoreDNSReplicas = 3
	more, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(more, []string{"updated Deployment kube-system/coredns"}) {
		t.Errorf("replica change made %q", more)
	}
	checkRealDriftRepair(t, ctx, cs, o)
	checkRealTakeover(t, ctx, cs, o)

	// Drain: a budget that allows no disruption holds the pod; once it
	// is gone the drain evicts, skips the DaemonSet pod and deletes the Node.
	ctl := true
	mk := func(name, owner string, labels map[string]string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
			Spec: corev1.PodSpec{NodeName: "w1", Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10.2"}}}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: owner, Name: name + "-owner",
				UID: "00000000-0000-0000-0000-000000000001", Controller: &ctl}}
		}
		got, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Running, as a kubelet would report it: the eviction API ignores
		// budgets for Pending pods.
		got.Status.Phase = corev1.PodRunning
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// (no controller-manager here to create the default ServiceAccount)
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mk("web", "ReplicaSet", map[string]string{"app": "web"})
	mk("agent", "DaemonSet", nil)
	zero := intstr.FromInt32(0)
	if _, err := cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = DrainAndDelete(ctx, cs, "w1", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "default/web (a PodDisruptionBudget refuses the eviction)") {
		t.Fatalf("drain held by a budget: %v", err)
	}
	if n, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{}); err != nil || !n.Spec.Unschedulable {
		t.Fatalf("w1 after a held drain: %v (cordoned: %v)", err, err == nil && n.Spec.Unschedulable)
	}
	if err := cs.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := DrainAndDelete(ctx, cs, "w1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node w1 not deleted: %v", err)
	}
	web, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
	if err == nil && web.DeletionTimestamp == nil {
		t.Error("pod web was not evicted")
	}
	agent, err := cs.CoreV1().Pods("default").Get(ctx, "agent", metav1.GetOptions{})
	if err != nil || agent.DeletionTimestamp != nil {
		t.Errorf("DaemonSet pod was evicted: %v", err)
	}
}

// checkRealDriftRepair edits what tricenter applied the way an operator
// would with kubectl (scale to 0 through the scale subresource, edit the
// Corefile and the ClusterRole, overwrite and remove Node labels); the
// next apply puts tricenter's fields back and names exactly those objects,
// leaves the fields others added, and the apply after it writes nothing.
func checkRealDriftRepair(t *testing.T, ctx context.Context, cs kubernetes.Interface, o Options) {
	t.Helper()
	driftOutOfBand(t, ctx, cs, func() error {
		deployments := cs.AppsV1().Deployments(Namespace)
		sc, err := deployments.GetScale(ctx, CoreDNSName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = 0
		_, err = deployments.UpdateScale(ctx, CoreDNSName, sc, metav1.UpdateOptions{FieldManager: "kubectl"})
		return err
	})
	checkDriftRepaired(t, ctx, cs, o)
	checkQuietApply(t, ctx, cs, o, "the repair")
}

// checkRealTakeover: a ServiceAccount as the hash-annotation version of
// tricenter created it is taken over by server-side apply (its annotation
// removed, tricenter's update entry gone), then left alone.
func checkRealTakeover(t *testing.T, ctx context.Context, cs kubernetes.Interface, o Options) {
	t.Helper()
	sas := cs.CoreV1().ServiceAccounts(Namespace)
	if err := sas.Delete(ctx, CoreDNSName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	old := &corev1.ServiceAccount{ObjectMeta: preSSAMeta()}
	if _, err := sas.Create(ctx, old, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		t.Fatal(err)
	}
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(changed, []string{"updated ServiceAccount kube-system/coredns"}) {
		t.Errorf("taking over the ServiceAccount reported %q", changed)
	}
	sa, err := sas.Get(ctx, CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkTakenOver(t, sa)
	checkQuietApply(t, ctx, cs, o, "the takeover")
}
