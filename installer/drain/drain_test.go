package drain

// Unit tests of the selection, retry and error logic against client-go's
// fake clientset, with fakeEvictions standing in for the API server's
// eviction subresource. The real API server, with the disruption
// controller computing budgets, is apiserver_test.go's.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/health"
)

const nodeName = "w1"

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func node(ready bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	return n
}

// lease is a fresh kubelet heartbeat (a Ready node needs one).
func lease() *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Namespace: health.LeaseNamespace},
		Spec: coordinationv1.LeaseSpec{RenewTime: &now}}
}

func pod(name string, owner string, lbls map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Labels: lbls},
		Spec:       corev1.PodSpec{NodeName: nodeName},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if kind, name, ok := strings.Cut(owner, "/"); ok {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: "owner", Controller: &yes}}
	}
	return p
}

// fakeEvictions stands in for the API server's eviction subresource: a
// pod a budget selects is evicted only while the budget allows a
// disruption (else 429 with the API server's cause); an evicted pod is
// deleted, or only marked for deletion when graceful.
type fakeEvictions struct {
	cs       *fake.Clientset
	graceful bool
	refuse   error // returned for every eviction when set

	mu       sync.Mutex
	attempts map[string]int
	options  []*metav1.DeleteOptions
}

func newFake(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *fakeEvictions) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	fe := &fakeEvictions{cs: cs, attempts: map[string]int{}}
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		return true, nil, fe.evict(ev)
	})
	return cs, fe
}

func (f *fakeEvictions) evict(ev *policyv1.Eviction) error {
	f.mu.Lock()
	f.attempts[ev.Name]++
	f.options = append(f.options, ev.DeleteOptions)
	f.mu.Unlock()
	if f.refuse != nil {
		return f.refuse
	}
	tr := f.cs.Tracker()
	obj, err := tr.Get(podsGVR, ev.Namespace, ev.Name)
	if err != nil {
		return err
	}
	p := obj.(*corev1.Pod)
	if pre := ev.DeleteOptions.Preconditions; pre != nil && pre.UID != nil && *pre.UID != p.UID {
		return apierrors.NewConflict(podsGVR.GroupResource(), p.Name, errors.New("UID precondition failed"))
	}
	pdbs, _ := tr.List(schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"},
		schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}, ev.Namespace)
	for _, b := range pdbs.(*policyv1.PodDisruptionBudgetList).Items {
		s, _ := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if !s.Matches(labels.Set(p.Labels)) {
			continue
		}
		if b.Status.DisruptionsAllowed == 0 {
			err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
			err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause,
				Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", b.Name, b.Status.DesiredHealthy, b.Status.CurrentHealthy)})
			return err
		}
		b.Status.DisruptionsAllowed--
		if err := tr.Update(schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}, &b, b.Namespace); err != nil {
			return err
		}
	}
	if f.graceful {
		now := metav1.Now()
		p.DeletionTimestamp = &now
		return tr.Update(podsGVR, p, p.Namespace)
	}
	return tr.Delete(podsGVR, p.Namespace, p.Name)
}

func (f *fakeEvictions) tries(pod string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[pod]
}

func budget(name string, allowed int32, app string) *policyv1.PodDisruptionBudget {
	zero := intOrString(0)
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed, CurrentHealthy: 2, DesiredHealthy: 2, ExpectedPods: 2},
	}
}

func remaining(t *testing.T, cs *fake.Clientset) []string {
	t.Helper()
	list, err := cs.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		out = append(out, p.Name)
	}
	return out
}

func TestSelectPods(t *testing.T) {
	mirror := pod("kube-apiserver-w1", "Node/w1", nil)
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "abc"}
	done := pod("job-done", "", nil)
	done.Status.Phase = corev1.PodSucceeded
	pods := []corev1.Pod{*pod("web-1", "ReplicaSet/web-7f", nil), *pod("proxy-x", "DaemonSet/kube-proxy", nil),
		*mirror, *pod("bare", "", nil), *done, *pod("db-0", "StatefulSet/db", nil)}

	s := selectPods(pods, false)
	var evict []string
	for _, p := range s.evict {
		evict = append(evict, p.Name)
	}
	if got, want := strings.Join(evict, ","), "db-0,job-done,web-1"; got != want {
		t.Errorf("evicted %s, want %s", got, want)
	}
	if got, want := strings.Join(s.skipped, "; "), "default/kube-apiserver-w1: static pod (its kubelet runs it from a manifest); default/proxy-x: DaemonSet pod (DaemonSet kube-proxy would recreate it)"; got != want {
		t.Errorf("skipped %q, want %q", got, want)
	}
	if got, want := strings.Join(s.bare, "; "), "default/bare: no controller"; got != want {
		t.Errorf("bare %q, want %q", got, want)
	}
	if s := selectPods(pods, true); len(s.bare) != 0 || len(s.evict) != 4 {
		t.Errorf("with force: evict %d, bare %v; want 4 and none", len(s.evict), s.bare)
	}
}

func TestCordonUncordon(t *testing.T) {
	ctx := context.Background()
	cs, _ := newFake(t, node(true))
	patches := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if a.GetVerb() == "patch" {
				n++
			}
		}
		return n
	}
	unschedulable := func() bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Spec.Unschedulable
	}
	for i := range 2 {
		if err := Cordon(ctx, cs, nodeName); err != nil {
			t.Fatal(err)
		}
		if !unschedulable() || patches() != 1 {
			t.Errorf("cordon #%d: unschedulable %v after %d patch(es), want true after 1", i+1, unschedulable(), patches())
		}
	}
	for i := range 2 {
		if err := Uncordon(ctx, cs, nodeName); err != nil {
			t.Fatal(err)
		}
		if unschedulable() || patches() != 2 {
			t.Errorf("uncordon #%d: unschedulable %v after %d patch(es), want false after 2", i+1, unschedulable(), patches())
		}
	}
	err := Cordon(ctx, cs, "w9")
	if err == nil || err.Error() != "cordoning Node w9: no such Node (kubectl get nodes lists them)" {
		t.Errorf("cordoning a missing node: %v", err)
	}
}

// Drain evicts the controller-managed pods with the grace period and UID
// preconditions, leaves DaemonSet and mirror pods, and returns once the
// evicted pods are gone.
func TestDrainEvicts(t *testing.T) {
	mirror := pod("kube-apiserver-w1", "Node/w1", nil)
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "abc"}
	elsewhere := pod("web-3", "ReplicaSet/web-7f", nil)
	elsewhere.Spec.NodeName = "w2"
	cs, fe := newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", map[string]string{"app": "web"}),
		pod("web-2", "ReplicaSet/web-7f", map[string]string{"app": "web"}), pod("proxy-x", "DaemonSet/kube-proxy", nil),
		mirror, elsewhere, budget("web", 2, "web"))
	grace := int64(7)
	if err := Drain(context.Background(), cs, nodeName, Options{Timeout: 5 * time.Second, GracePeriod: &grace}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(remaining(t, cs), ","), "kube-apiserver-w1,proxy-x,web-3"; got != want {
		t.Errorf("pods left %s, want %s", got, want)
	}
	for _, o := range fe.options {
		if o == nil || o.GracePeriodSeconds == nil || *o.GracePeriodSeconds != 7 || o.Preconditions == nil || o.Preconditions.UID == nil {
			t.Errorf("eviction options %+v: want grace 7 and a UID precondition", o)
		}
	}
	if fe.tries("proxy-x") != 0 || fe.tries("kube-apiserver-w1") != 0 || fe.tries("web-3") != 0 {
		t.Errorf("evicted a pod Drain must leave: %v", fe.attempts)
	}
}

// A budget that allows no disruption: the eviction is retried with
// backoff until the timeout, then BlockedError names each pod and the
// budget.
func TestDrainBlockedByBudget(t *testing.T) {
	cs, fe := newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", map[string]string{"app": "web"}),
		pod("web-2", "ReplicaSet/web-7f", map[string]string{"app": "web"}), pod("db-0", "StatefulSet/db", map[string]string{"app": "db"}),
		budget("web", 0, "web"))
	start := time.Now()
	err := Drain(context.Background(), cs, nodeName, Options{Timeout: 1600 * time.Millisecond})
	took := time.Since(start)
	var be *BlockedError
	if !errors.As(err, &be) {
		t.Fatalf("Drain: %v, want a BlockedError", err)
	}
	want := []string{
		"default/web-1: PodDisruptionBudget default/web allows no disruption (2 healthy of 2 desired, 2 expected)",
		"default/web-2: PodDisruptionBudget default/web allows no disruption (2 healthy of 2 desired, 2 expected)",
	}
	if be.Node != nodeName || strings.Join(be.Pods, "\n") != strings.Join(want, "\n") || be.Reason != "2 pod(s) still there after 1.6s" {
		t.Errorf("BlockedError %+v, want pods %q", be, want)
	}
	if got := err.Error(); got != "draining Node w1: 2 pod(s) still there after 1.6s: "+strings.Join(want, "; ") {
		t.Errorf("message %q", got)
	}
	// 0, 0.5, 1.5 s: three attempts each; no hammering.
	if n := fe.tries("web-1"); n < 2 || n > 4 {
		t.Errorf("web-1 evicted %d times in %s, want 2-4 (backoff from 500ms)", n, took)
	}
	if took < 1600*time.Millisecond || took > 3*time.Second {
		t.Errorf("Drain returned after %s, want the 1.6s timeout", took)
	}
	if got := strings.Join(remaining(t, cs), ","); got != "web-1,web-2" {
		t.Errorf("pods left %s, want the budget's only (db-0 evicted)", got)
	}
}

// Bare pods are refused before anything is evicted, unless Force.
func TestDrainBarePods(t *testing.T) {
	objs := func() []runtime.Object {
		return []runtime.Object{node(true), lease(), pod("bare", "", nil), pod("web-1", "ReplicaSet/web-7f", nil)}
	}
	cs, fe := newFake(t, objs()...)
	err := Drain(context.Background(), cs, nodeName, Options{Timeout: time.Second})
	var be *BlockedError
	if !errors.As(err, &be) || err.Error() != "draining Node w1: pods no controller manages would not be recreated anywhere: delete them, or drain with Force to evict them anyway: default/bare: no controller" {
		t.Fatalf("Drain with a bare pod: %v", err)
	}
	if len(fe.attempts) != 0 {
		t.Errorf("evictions before refusing: %v", fe.attempts)
	}
	cs, _ = newFake(t, objs()...)
	if err := Drain(context.Background(), cs, nodeName, Options{Timeout: 5 * time.Second, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, cs); len(got) != 0 {
		t.Errorf("pods left with Force: %v", got)
	}
}

// On a Ready node Drain waits until an evicted pod is deleted or replaced
// (same name, another UID); at the timeout it names the pods still
// terminating. On a node that is not Ready a terminating pod counts as gone.
func TestDrainWaitsForTerminatingPods(t *testing.T) {
	ctx := context.Background()
	cs, fe := newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", nil), pod("db-0", "StatefulSet/db", nil))
	fe.graceful = true
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = cs.Tracker().Delete(podsGVR, "default", "web-1")
		// The StatefulSet recreates db-0 with another UID.
		_ = cs.Tracker().Delete(podsGVR, "default", "db-0")
		p := pod("db-0", "StatefulSet/db", nil)
		p.UID = "uid-db-0-new"
		_ = cs.Tracker().Add(p)
	}()
	start := time.Now()
	if err := Drain(ctx, cs, nodeName, Options{Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("Drain returned after %s, before the pods were gone", took)
	}

	cs, fe = newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", nil))
	fe.graceful = true
	err := Drain(ctx, cs, nodeName, Options{Timeout: 500 * time.Millisecond})
	var be *BlockedError
	if !errors.As(err, &be) || len(be.Pods) != 1 || !strings.HasPrefix(be.Pods[0], "default/web-1: terminating (deletion requested ") {
		t.Errorf("Drain with a pod that never terminates: %v", err)
	}

	cs, fe = newFake(t, node(false), pod("web-1", "ReplicaSet/web-7f", nil))
	fe.graceful = true
	if err := Drain(ctx, cs, nodeName, Options{Timeout: 5 * time.Second}); err != nil {
		t.Errorf("Drain of a NotReady node: %v (a terminating pod counts as gone)", err)
	}
}

func TestDrainErrors(t *testing.T) {
	ctx := context.Background()
	cs, fe := newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", nil))
	fe.refuse = apierrors.NewForbidden(podsGVR.GroupResource(), "web-1", errors.New("RBAC says no"))
	err := Drain(ctx, cs, nodeName, Options{Timeout: 5 * time.Second})
	if err == nil || !strings.HasPrefix(err.Error(), "draining Node w1: evicting pod default/web-1: ") || !apierrors.IsForbidden(err) {
		t.Errorf("forbidden eviction: %v", err)
	}

	// A transient error is retried, and named at the timeout.
	cs, fe = newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", nil))
	fe.refuse = apierrors.NewInternalError(errors.New("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
	err = Drain(ctx, cs, nodeName, Options{Timeout: 800 * time.Millisecond})
	var be *BlockedError
	if !errors.As(err, &be) || !strings.Contains(be.Pods[0], "more than one PodDisruptionBudget") || fe.tries("web-1") < 2 {
		t.Errorf("internal error: %v after %d tries", err, fe.tries("web-1"))
	}

	// Cancelled by the caller: not a BlockedError.
	cs, _ = newFake(t, node(true), lease(), pod("web-1", "ReplicaSet/web-7f", map[string]string{"app": "web"}), budget("web", 0, "web"))
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	err = Drain(cctx, cs, nodeName, Options{Timeout: 5 * time.Second})
	if !errors.Is(err, context.Canceled) || errors.As(err, &be) || !strings.Contains(err.Error(), "default/web-1: PodDisruptionBudget default/web allows no disruption") {
		t.Errorf("cancelled drain: %v", err)
	}

	err = Drain(ctx, cs, "w9", Options{})
	if err == nil || err.Error() != "draining Node w9: no such Node (kubectl get nodes lists them)" {
		t.Errorf("missing node: %v", err)
	}
}

func intOrString(i int) intstr.IntOrString { return intstr.FromInt32(int32(i)) }
