package kubeconfig

import (
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// The admin identity bound through RBAC, as kubeadm (1.29 and later) binds
// kubeadm:cluster-admins: the admin kubeconfig's certificate names
// AdminGroup, and AdminClusterRoleBinding binds that group to cluster-admin,
// so deleting the binding revokes it (system:masters cannot be revoked).
const (
	// AdminGroup is the admin kubeconfig's group (the certificate's
	// organization).
	AdminGroup = pki.AdminGroup
	// AdminBindingName names the ClusterRoleBinding of AdminGroup.
	AdminBindingName = "tricenter:cluster-admins"
	// ClusterAdminRole is the ClusterRole AdminGroup is bound to
	// (Kubernetes' own, created by the API server).
	ClusterAdminRole = "cluster-admin"
)

// The label of AdminClusterRoleBinding, as installer/addons labels what
// it applies (addons.ManagedByLabel: addons.FieldManager).
const (
	managedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "tricenter"
)

// AdminClusterRoleBinding is the ClusterRoleBinding of AdminGroup to
// cluster-admin, as a server-side apply configuration holding exactly the
// fields tricenter owns (the add-ons apply it as they apply CoreDNS's).
// It must exist before the admin kubeconfig names AdminGroup instead of
// system:masters, and is applied with a credential that does not depend on
// it (the break-glass system:masters one).
func AdminClusterRoleBinding() *rbacv1ac.ClusterRoleBindingApplyConfiguration {
	return rbacv1ac.ClusterRoleBinding(AdminBindingName).
		WithLabels(map[string]string{managedByLabel: managedBy}).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(ClusterAdminRole)).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Group").WithName(AdminGroup))
}
