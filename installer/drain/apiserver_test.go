package drain

// Drain against a real kube-apiserver (with etcd) and a real
// kube-controller-manager running the disruption controller, which
// computes the PodDisruptionBudgets' status the eviction subresource
// checks. The binaries come from make artifacts (.cache/artifacts). No
// kubelet runs: the pods are bound to a node that exists only in the API,
// and the test sets their status (Running, Ready) itself, as a kubelet
// would; with a budget allowing one disruption it also plays the
// ReplicaSet controller, scheduler and kubelet of another node by creating
// a Ready replacement for each evicted pod.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
)

// kube is what the test does as the cluster's other parts would.
type kube struct {
	t   *testing.T
	cs  kubernetes.Interface
	ctx context.Context
}

// readyNode registers a Node with a Ready condition and a fresh kubelet
// heartbeat (health's rule for Ready).
func (k kube) readyNode(name string) {
	k.t.Helper()
	n, err := k.cs.CoreV1().Nodes().Create(k.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: now, LastTransitionTime: now, Reason: "KubeletReady"}}
	if _, err := k.cs.CoreV1().Nodes().UpdateStatus(k.ctx, n, metav1.UpdateOptions{}); err != nil {
		k.t.Fatal(err)
	}
	renew, secs := metav1.NewMicroTime(time.Now()), int32(600)
	if _, err := k.cs.CoordinationV1().Leases(health.LeaseNamespace).Create(k.ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &name, RenewTime: &renew, LeaseDurationSeconds: &secs},
	}, metav1.CreateOptions{}); err != nil {
		k.t.Fatal(err)
	}
}

// readyPod creates a pod bound to node and sets its status Running and
// Ready, as its kubelet would.
func (k kube) readyPod(name, node string, lbls map[string]string, owner metav1.OwnerReference) *corev1.Pod {
	k.t.Helper()
	p, err := k.makeReadyPod(name, node, lbls, owner)
	if err != nil {
		k.t.Fatal(err)
	}
	return p
}

// makeReadyPod is readyPod for goroutines: it returns its error.
func (k kube) makeReadyPod(name, node string, lbls map[string]string, owner metav1.OwnerReference) (*corev1.Pod, error) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: lbls, OwnerReferences: []metav1.OwnerReference{owner}},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr(int64(30)),
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10.2"}}},
	}
	p, err := k.cs.CoreV1().Pods("default").Create(k.ctx, p, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &now
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	return k.cs.CoreV1().Pods("default").UpdateStatus(k.ctx, p, metav1.UpdateOptions{})
}

// waitBudget waits until the disruption controller has processed the
// budget's current generation and it allows want disruptions.
func (k kube) waitBudget(name string, want int32) *policyv1.PodDisruptionBudget {
	k.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := k.cs.PolicyV1().PodDisruptionBudgets("default").Get(k.ctx, name, metav1.GetOptions{})
		if err != nil {
			k.t.Fatal(err)
		}
		if b.Status.ObservedGeneration == b.Generation && b.Status.DisruptionsAllowed == want {
			return b
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("PodDisruptionBudget %s: status %+v (generation %d), want %d disruptions allowed", name, b.Status, b.Generation, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (k kube) podsOn(node string) []string {
	k.t.Helper()
	list, err := k.cs.CoreV1().Pods("").List(k.ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		k.t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

func ptr[T any](v T) *T { return &v }

// testLog writes slog records to the test log and keeps them.
type testLog struct {
	t   *testing.T
	mu  sync.Mutex
	all strings.Builder
}

func (w *testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.Write(b)
}

// take returns the records written since the last take.
func (w *testLog) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.all.String()
	w.all.Reset()
	return s
}

func TestDrainAgainstRealAPIServer(t *testing.T) {
	cs := kubetest.Start(t, kubetest.Options{Controllers: []string{"disruption"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := kube{t: t, cs: cs, ctx: ctx}
	logs := &testLog{t: t}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const w1, w2 = "drain-w1", "drain-w2"
	k.readyNode(w1)
	k.readyNode(w2)
	// The ServiceAccount admission wants the namespace's default account
	// (the serviceaccount controller, not running here, would make it).
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	// A Deployment's ReplicaSet with two Ready pods on w1 (the budget's
	// expected count comes from the Deployment's replicas), and a
	// DaemonSet's pod Drain must leave.
	web := map[string]string{"app": "web"}
	dep, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: web},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: web},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10.2"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rsLabels := map[string]string{"app": "web", "pod-template-hash": "6d4f"}
	rs, err := cs.AppsV1().ReplicaSets("default").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-6d4f", Labels: rsLabels, OwnerReferences: []metav1.OwnerReference{
			*metav1.NewControllerRef(dep, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(2)), Selector: &metav1.LabelSelector{MatchLabels: rsLabels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: rsLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10.2"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rsRef := *metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	k.readyPod("web-6d4f-a", w1, rsLabels, rsRef)
	k.readyPod("web-6d4f-b", w1, rsLabels, rsRef)
	k.readyPod("agent-x1", w1, map[string]string{"app": "agent"}, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet",
		Name: "agent", UID: "0b5c1f9e-0000-4000-8000-000000000001", Controller: ptr(true)})

	if err := Cordon(ctx, cs, w1); err != nil {
		t.Fatal(err)
	}
	if err := Cordon(ctx, cs, w1); err != nil {
		t.Fatalf("cordoning again: %v", err)
	}
	if n, err := cs.CoreV1().Nodes().Get(ctx, w1, metav1.GetOptions{}); err != nil || !n.Spec.Unschedulable {
		t.Fatalf("after Cordon: %v, %v", n.Spec, err)
	}

	pdb, err := cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: web}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := k.waitBudget("web", 0)
	if b.Status.ExpectedPods != 2 || b.Status.CurrentHealthy != 2 {
		t.Fatalf("budget status %+v: want 2 expected and 2 healthy", b.Status)
	}

	t.Run("maxUnavailable 0 blocks the drain and names the budget", func(t *testing.T) {
		logs.take()
		start := time.Now()
		err := Drain(ctx, cs, w1, Options{Timeout: 4 * time.Second, GracePeriod: ptr(int64(0)), Logger: log})
		var be *BlockedError
		if !errors.As(err, &be) {
			t.Fatalf("Drain: %v, want a BlockedError", err)
		}
		t.Logf("Drain returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
		want := []string{
			"default/web-6d4f-a: PodDisruptionBudget default/web allows no disruption (2 healthy of 2 desired, 2 expected)",
			"default/web-6d4f-b: PodDisruptionBudget default/web allows no disruption (2 healthy of 2 desired, 2 expected)",
		}
		if be.Node != w1 || !slices.Equal(be.Pods, want) || be.Reason != "2 pod(s) still there after 4s" {
			t.Errorf("BlockedError %+v, want pods %q", be, want)
		}
		if got := k.podsOn(w1); !slices.Equal(got, []string{"agent-x1", "web-6d4f-a", "web-6d4f-b"}) {
			t.Errorf("pods on %s: %v, want all three still there", w1, got)
		}
	})

	t.Run("a budget allowing one evicts, one at a time", func(t *testing.T) {
		// Replacements: each web pod deleted from w1 comes back Ready on
		// w2, as the ReplicaSet controller, the scheduler and w2's
		// kubelet would make it.
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		replaced := make(chan error, 2)
		go func() {
			seen := map[string]bool{}
			for rctx.Err() == nil {
				for _, p := range []string{"web-6d4f-a", "web-6d4f-b"} {
					if seen[p] {
						continue
					}
					_, err := cs.CoreV1().Pods("default").Get(rctx, p, metav1.GetOptions{})
					if !apierrors.IsNotFound(err) {
						continue
					}
					seen[p] = true
					_, err = k.makeReadyPod(p+"-new", w2, rsLabels, rsRef)
					replaced <- err
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		pdb, err = cs.PolicyV1().PodDisruptionBudgets("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pdb.Spec.MaxUnavailable = ptr(intstr.FromInt32(1))
		if _, err := cs.PolicyV1().PodDisruptionBudgets("default").Update(ctx, pdb, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		k.waitBudget("web", 1)
		logs.take()
		start := time.Now()
		if err := Drain(ctx, cs, w1, Options{Timeout: time.Minute, GracePeriod: ptr(int64(0)), Logger: log}); err != nil {
			t.Fatal(err)
		}
		t.Logf("Drain evicted both pods in %s", time.Since(start).Round(time.Millisecond))
		if got := k.podsOn(w1); !slices.Equal(got, []string{"agent-x1"}) {
			t.Errorf("pods on %s after Drain: %v, want the DaemonSet pod only", w1, got)
		}
		// The budget let one go at a time: the second eviction was
		// refused until the first pod's replacement was Ready.
		if l := logs.take(); !strings.Contains(l, `msg="Eviction refused: retrying" node=drain-w1 pod=default/web-6d4f-b`) {
			t.Errorf("the second eviction was never refused:\n%s", l)
		}
		for range 2 {
			select {
			case err := <-replaced:
				if err != nil {
					t.Errorf("making a replacement: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a pod gone from w1 was not replaced")
			}
		}
	})

	if err := Uncordon(ctx, cs, w1); err != nil {
		t.Fatal(err)
	}
	if n, err := cs.CoreV1().Nodes().Get(ctx, w1, metav1.GetOptions{}); err != nil || n.Spec.Unschedulable {
		t.Fatalf("after Uncordon: %v, %v", n.Spec, err)
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "web-6d4f-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("web-6d4f-a after the drain: %v", err)
	}
}
