package installer

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/lb/controller"
)

// The controller is judged from what holds now, with a fake clientset
// (client-go's): a Lease holder whose renewal is older than the Lease's
// duration is nobody, and a Ready pod counts only on a node whose
// heartbeat is fresh.
func TestObserveLoadBalancerControllerNow(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	cfg := testConfig(t)
	cfg.Clock = func() time.Time { return now }
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app.kubernetes.io/name": addons.LBName}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: addons.LBName, Namespace: addons.LBNamespace},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels}},
		// kube-controller-manager's last word: both available.
		Status: appsv1.DeploymentStatus{AvailableReplicas: 2},
	}
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: addons.LBNamespace, Labels: labels},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
	}
	node := func(name string, heartbeatAge time.Duration) []runtime.Object {
		return []runtime.Object{
			&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: health.LeaseNamespace}, Spec: coordinationv1.LeaseSpec{
				LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &metav1.MicroTime{Time: now.Add(-heartbeatAge)}}},
		}
	}
	lease := func(renewedAgo time.Duration) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: controller.LeaseName, Namespace: addons.LBNamespace}, Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("tricenter-lb-a"), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &metav1.MicroTime{Time: now.Add(-renewedAgo)}}}
	}
	for _, tc := range []struct {
		name       string
		renewedAgo time.Duration
		// heartbeat age of the node under pod b (pod a's node is fresh).
		bHeartbeat    time.Duration
		wantAvailable int32
		wantLeader    string
		wantProblem   string
	}{
		{"fresh", 3 * time.Second, 5 * time.Second, 2, "tricenter-lb-a", ""},
		{"holder gone, node b dead", 40 * time.Second, 2 * time.Minute, 1, "", "last renewed the Lease 40s ago (expired after 15s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{deploy, pod("a", "dc1-cp"), pod("b", "dc2-cp"), lease(tc.renewedAgo)}
			objs = append(objs, node("dc1-cp", time.Second)...)
			objs = append(objs, node("dc2-cp", tc.bHeartbeat)...)
			cs := fake.NewClientset(objs...)
			st, problems, _, err := e.observeLoadBalancers(context.Background(), cs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.Controller.Available != tc.wantAvailable || st.Controller.Replicas != 2 || st.Controller.Leader != tc.wantLeader {
				t.Fatalf("controller %+v", st.Controller)
			}
			if tc.wantProblem != "" && !strings.Contains(st.Controller.LeaderNote, tc.wantProblem) {
				t.Fatalf("leader note %q, want %q", st.Controller.LeaderNote, tc.wantProblem)
			}
			if tc.wantProblem == "" && (st.Controller.LeaderNote != "" || len(problems) != 0) {
				t.Fatalf("note %q, problems %q", st.Controller.LeaderNote, problems)
			}
		})
	}
}
