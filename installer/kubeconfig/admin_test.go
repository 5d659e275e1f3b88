package kubeconfig_test

import (
	"context"
	"encoding/json"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// TestAdminClusterRoleBinding: the binding names AdminGroup (a Group of
// rbac.authorization.k8s.io) and the ClusterRole cluster-admin, carries
// the add-ons' managed-by label, is not system:masters, and applies
// server-side (client-go's fake with field management) as the typed
// rbac/v1 object it describes.
func TestAdminClusterRoleBinding(t *testing.T) {
	ac := kubeconfig.AdminClusterRoleBinding()
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	var crb rbacv1.ClusterRoleBinding
	if err := json.Unmarshal(b, &crb); err != nil {
		t.Fatal(err)
	}
	check := func(where string, crb *rbacv1.ClusterRoleBinding) {
		t.Helper()
		want := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}
		if crb.Name != "tricenter:cluster-admins" || crb.RoleRef != want {
			t.Errorf("%s: binding %q to %+v, want tricenter:cluster-admins to %+v", where, crb.Name, crb.RoleRef, want)
		}
		wantSubj := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: kubeconfig.AdminGroup}}
		if len(crb.Subjects) != 1 || crb.Subjects[0] != wantSubj[0] {
			t.Errorf("%s: subjects %+v, want %+v", where, crb.Subjects, wantSubj)
		}
		if crb.Labels[addons.ManagedByLabel] != addons.FieldManager {
			t.Errorf("%s: labels %v, want %s=%s", where, crb.Labels, addons.ManagedByLabel, addons.FieldManager)
		}
	}
	if crb.Kind != "ClusterRoleBinding" || crb.APIVersion != "rbac.authorization.k8s.io/v1" {
		t.Errorf("type %s %s", crb.APIVersion, crb.Kind)
	}
	check("apply configuration", &crb)
	if kubeconfig.AdminGroup == pki.MastersGroup || kubeconfig.CheckIdentity("x", []string{kubeconfig.AdminGroup}, false) == nil {
		t.Errorf("the admin group %q is system:masters or may be issued to a user", kubeconfig.AdminGroup)
	}

	ctx := context.Background()
	cs := fake.NewClientset()
	got, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: addons.FieldManager, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	check("applied", got)
	again, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, kubeconfig.AdminClusterRoleBinding(), metav1.ApplyOptions{FieldManager: addons.FieldManager, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	check("applied again", again)
}
