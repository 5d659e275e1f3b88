package addons

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// RestartedAtAnnotation is set on a Deployment's pod template to replace
// its pods (as `kubectl rollout restart` does with its own annotation).
const RestartedAtAnnotation = "tricenter.io/restarted-at"

// RestartCoreDNS replaces CoreDNS's pods one by one (the Deployment's
// rolling update and its PodDisruptionBudget keep it serving) and waits
// until every replica is a new, available one. A pod reads its service
// account's CA bundle once, when it starts: after the Kubernetes CA's
// trust phase, only new pods trust the new CA.
func RestartCoreDNS(ctx context.Context, cs kubernetes.Interface, at time.Time, timeout time.Duration) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RestartedAtAnnotation: at.UTC().Format(time.RFC3339)}}}}})
	if err != nil {
		return err
	}
	deps := cs.AppsV1().Deployments(Namespace)
	d, err := deps.Patch(ctx, CoreDNSName, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "tricenter-restart"})
	if err != nil {
		return fmt.Errorf("restarting Deployment %s/%s: %w", Namespace, CoreDNSName, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		done, why := rolledOut(d)
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s/%s not rolled out after %v: %s", Namespace, CoreDNSName, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		if d, err = deps.Get(ctx, CoreDNSName, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("reading Deployment %s/%s: %w", Namespace, CoreDNSName, err)
		}
	}
}

// rolledOut says whether every replica of d runs its current template and
// is available, or what is still missing.
func rolledOut(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		return false, "the controller has not seen the change yet"
	case st.UpdatedReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)
	case st.Replicas > st.UpdatedReplicas:
		return false, fmt.Sprintf("%d old replicas left", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < want:
		return false, fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)
	}
	return true, ""
}
