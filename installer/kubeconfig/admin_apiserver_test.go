package kubeconfig_test

import (
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
)

// TestAdminBindingAgainstAPIServer asks a real kube-apiserver (RBAC
// authorizer) what a user in AdminGroup may do: nothing before
// AdminClusterRoleBinding is applied, everything (cluster-admin) once it
// is, and nothing again once it is deleted: unlike system:masters, the
// admin identity is revocable.
func TestAdminBindingAgainstAPIServer(t *testing.T) {
	cs := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	may := func(verb, resource string) bool {
		t.Helper()
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: "ops-admin", Groups: []string{kubeconfig.AdminGroup, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Namespace: ""}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	// The RBAC authorizer reads bindings from an informer: poll.
	waitMay := func(want bool, verb, resource string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for may(verb, resource) != want {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s the admin group may %s %s: %v, want %v", verb, resource, !want, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	apply := func(cs kubernetes.Interface) {
		t.Helper()
		if _, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, kubeconfig.AdminClusterRoleBinding(),
			metav1.ApplyOptions{FieldManager: addons.FieldManager, Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	if may("delete", "nodes") || may("list", "secrets") {
		t.Fatal("the admin group may act before its binding exists")
	}
	apply(cs)
	apply(cs) // idempotent
	waitMay(true, "delete", "nodes")
	for _, p := range [][2]string{{"list", "secrets"}, {"create", "clusterrolebindings"}, {"escalate", "clusterroles"}} {
		if !may(p[0], p[1]) {
			t.Errorf("with the binding, the admin group may not %s %s", p[0], p[1])
		}
	}
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, kubeconfig.AdminBindingName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitMay(false, "delete", "nodes")
	if may("list", "secrets") {
		t.Error("the admin group still may list secrets once its binding is deleted")
	}
}
