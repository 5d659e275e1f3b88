package addons

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestRolledOut(t *testing.T) {
	two := int32(2)
	for _, tc := range []struct {
		name string
		gen  int64
		st   appsv1.DeploymentStatus
		want string // "" = rolled out
	}{
		{"not observed", 2, appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}, "not seen"},
		{"one updated", 2, appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2}, "1 of 2 replicas updated"},
		{"an old one left", 2, appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 2, AvailableReplicas: 2}, "1 old replicas left"},
		{"not available", 2, appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 1}, "1 of 2 replicas available"},
		{"done", 2, appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}, ""},
	} {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: tc.gen}, Spec: appsv1.DeploymentSpec{Replicas: &two}, Status: tc.st}
		done, why := rolledOut(d)
		if done != (tc.want == "") || !strings.Contains(why, tc.want) {
			t.Errorf("%s: rolledOut = %v %q, want %q", tc.name, done, why, tc.want)
		}
	}
}

// With a fake clientset (no controller): the restart annotation lands on
// the pod template, and a Deployment that never rolls out is reported
// with what is missing.
func TestRestartCoreDNSFake(t *testing.T) {
	one := int32(1)
	cs := fake.NewClientset(&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: CoreDNSName, Namespace: Namespace, Generation: 1},
		Spec:       appsv1.DeploymentSpec{Replicas: &one},
		Status:     appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 0, AvailableReplicas: 1},
	})
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	err := RestartCoreDNS(context.Background(), cs, at, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not rolled out") || !strings.Contains(err.Error(), "0 of 1 replicas updated") {
		t.Fatalf("err = %v", err)
	}
	d, err := cs.AppsV1().Deployments(Namespace).Get(context.Background(), CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Annotations[RestartedAtAnnotation]; got != "2026-12-06T12:00:00Z" {
		t.Errorf("restart annotation %q", got)
	}
}
