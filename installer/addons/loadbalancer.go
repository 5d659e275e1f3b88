package addons

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/lb"
	"github.com/tricenter/terraform-provider-tricenter/lb/controller"
)

// The load-balancer controller's objects.
const (
	// LBNamespace holds the controller, under the restricted Pod Security
	// level.
	LBNamespace = "tricenter-lb"
	// LBName names its ServiceAccount, ConfigMap, Deployment and PDB.
	LBName = "tricenter-lb"
	// LBImage is the image the lb.oci.tar artifact holds (hack/artifacts
	// build.sh LB_IMAGE).
	LBImage = "tricenter.io/tricenter-lb:v1"
	// LBArchive is that image's artifact, imported on the control-plane
	// servers (where the controller runs).
	LBArchive = "lb.oci.tar"
	// LBControllerRole is the controller's ClusterRole: Services, their
	// status, Events.
	LBControllerRole = "tricenter:lb-controller"
	// LBAgentRole is the node agents' ClusterRole: read-only Services and
	// EndpointSlices, bound to pki.LBAgentGroup.
	LBAgentRole = "tricenter:lb-agent"
	// LBReplicas run the controller: one leads, the other takes over
	// within the Lease's duration.
	LBReplicas = 2
	// LBHealthPort is the controller's /healthz port.
	LBHealthPort = 8080
	lbConfigKey  = "config.yaml"
	// Annotations on the pod template that roll the Deployment when the
	// configuration or the image's bytes change (the image's name does
	// not: it is imported on the nodes, never pulled).
	annotationLBConfig = "lb.tricenter.io/config-sha256"
	annotationLBImage  = "lb.tricenter.io/image-sha256"
)

// LoadBalancerObjects are the load-balancer controller's objects and the
// node agents' RBAC, as tricenter applies them, in apply order.
type LoadBalancerObjects struct {
	Namespace             *corev1ac.NamespaceApplyConfiguration
	ServiceAccount        *corev1ac.ServiceAccountApplyConfiguration
	ControllerRole        *rbacv1ac.ClusterRoleApplyConfiguration
	ControllerRoleBinding *rbacv1ac.ClusterRoleBindingApplyConfiguration
	LeaseRole             *rbacv1ac.RoleApplyConfiguration
	LeaseRoleBinding      *rbacv1ac.RoleBindingApplyConfiguration
	AgentRole             *rbacv1ac.ClusterRoleApplyConfiguration
	AgentRoleBinding      *rbacv1ac.ClusterRoleBindingApplyConfiguration
	ConfigMap             *corev1ac.ConfigMapApplyConfiguration
	Deployment            *appsv1ac.DeploymentApplyConfiguration
	PDB                   *policyv1ac.PodDisruptionBudgetApplyConfiguration
}

// LoadBalancer builds the load-balancer objects from o (defaults
// applied). The pool and its reserved addresses come from the inventory
// (lb.PoolFor).
func LoadBalancer(o Options) (*LoadBalancerObjects, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	cfg, err := lb.ControllerConfigFor(o.Cluster, o.IPs)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cfg)
	labels := func() map[string]string { return map[string]string{"app.kubernetes.io/name": LBName} }
	managed := func() map[string]string {
		l := labels()
		l[ManagedByLabel] = FieldManager
		return l
	}
	selector := func() *metav1ac.LabelSelectorApplyConfiguration {
		return metav1ac.LabelSelector().WithMatchLabels(labels())
	}
	roleRef := func(kind, name string) *rbacv1ac.RoleRefApplyConfiguration {
		return rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind(kind).WithName(name)
	}
	sa := rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(LBName).WithNamespace(LBNamespace)
	x := &LoadBalancerObjects{}
	x.Namespace = corev1ac.Namespace(LBNamespace).WithLabels(managed()).WithLabels(map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/audit":   "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	})
	x.ServiceAccount = corev1ac.ServiceAccount(LBName, LBNamespace).WithLabels(managed())
	x.ControllerRole = rbacv1ac.ClusterRole(LBControllerRole).WithLabels(managed()).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("services").WithVerbs("get", "list", "watch"),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("services/status").WithVerbs("update", "patch"),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("events").WithVerbs("create", "patch"),
	)
	x.ControllerRoleBinding = rbacv1ac.ClusterRoleBinding(LBControllerRole).WithLabels(managed()).
		WithRoleRef(roleRef("ClusterRole", LBControllerRole)).WithSubjects(sa)
	x.LeaseRole = rbacv1ac.Role(LBName, LBNamespace).WithLabels(managed()).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups(coordinationv1.GroupName).WithResources("leases").
			WithResourceNames(controller.LeaseName).WithVerbs("get", "update"),
		// create cannot be limited to a name.
		rbacv1ac.PolicyRule().WithAPIGroups(coordinationv1.GroupName).WithResources("leases").WithVerbs("create"),
	)
	x.LeaseRoleBinding = rbacv1ac.RoleBinding(LBName, LBNamespace).WithLabels(managed()).
		WithRoleRef(roleRef("Role", LBName)).WithSubjects(sa)
	x.AgentRole = rbacv1ac.ClusterRole(LBAgentRole).WithLabels(managed()).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("services").WithVerbs("get", "list", "watch"),
		rbacv1ac.PolicyRule().WithAPIGroups("discovery.k8s.io").WithResources("endpointslices").WithVerbs("get", "list", "watch"),
	)
	x.AgentRoleBinding = rbacv1ac.ClusterRoleBinding(LBAgentRole).WithLabels(managed()).
		WithRoleRef(roleRef("ClusterRole", LBAgentRole)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.GroupKind).WithAPIGroup(rbacv1.GroupName).WithName(pki.LBAgentGroup))
	x.ConfigMap = corev1ac.ConfigMap(LBName, LBNamespace).WithLabels(managed()).
		WithData(map[string]string{lbConfigKey: string(cfg)})

	annotations := map[string]string{annotationLBConfig: hex.EncodeToString(sum[:])}
	if o.LBImageSHA256 != "" {
		annotations[annotationLBImage] = o.LBImageSHA256
	}
	fieldEnv := func(name, path string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath(path)))
	}
	health := corev1ac.HTTPGetAction().WithPath("/healthz").WithPort(intstr.FromInt32(LBHealthPort)).WithScheme(corev1.URISchemeHTTP)
	container := corev1ac.Container().WithName("controller").WithImage(LBImage).WithImagePullPolicy(o.PullPolicy).
		WithArgs("--config", "/etc/tricenter-lb/"+lbConfigKey, "--health-listen", ":8080").
		WithEnv(fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace")).
		WithPorts(corev1ac.ContainerPort().WithName("health").WithContainerPort(LBHealthPort).WithProtocol(corev1.ProtocolTCP)).
		WithResources(corev1ac.ResourceRequirements().
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")}).
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("32Mi")})).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("config").WithMountPath("/etc/tricenter-lb").WithReadOnly(true)).
		WithSecurityContext(corev1ac.SecurityContext().WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithReadOnlyRootFilesystem(true).WithRunAsNonRoot(true).WithRunAsUser(65534).WithRunAsGroup(65534).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithLivenessProbe(corev1ac.Probe().WithHTTPGet(health).WithPeriodSeconds(10).WithFailureThreshold(3)).
		WithReadinessProbe(corev1ac.Probe().WithHTTPGet(health).WithPeriodSeconds(5))
	// On the control-plane servers, where its image is imported: the
	// servers the cluster keeps healthiest, as kube-controller-manager.
	pod := corev1ac.PodSpec().
		WithPriorityClassName("system-cluster-critical").
		WithServiceAccountName(LBName).
		WithNodeSelector(map[string]string{"kubernetes.io/os": "linux", LabelControlPlane: ""}).
		WithTolerations(corev1ac.Toleration().WithKey(controlPlane).WithEffect(corev1.TaintEffectNoSchedule)).
		// The replicas in different centers while they last.
		WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
			WithMaxSkew(1).WithTopologyKey(zoneKey).WithWhenUnsatisfiable(corev1.ScheduleAnyway).
			WithLabelSelector(selector())).
		WithContainers(container).
		WithVolumes(corev1ac.Volume().WithName("config").WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(LBName)))
	one := intstr.FromInt32(1)
	x.Deployment = appsv1ac.Deployment(LBName, LBNamespace).WithLabels(managed()).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(LBReplicas).
			WithSelector(selector()).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().WithMaxUnavailable(one))).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels()).WithAnnotations(annotations).WithSpec(pod)))
	x.PDB = policyv1ac.PodDisruptionBudget(LBName, LBNamespace).WithLabels(managed()).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().WithMaxUnavailable(one).WithSelector(selector()))
	return x, nil
}

// loadBalancer applies the load-balancer objects. A cluster without
// spec.network.loadBalancerPool has none.
func (a *applier) loadBalancer(ctx context.Context, o *Options) error {
	if len(o.IPs.LoadBalancerPool) == 0 {
		a.log.Info("No spec.network.loadBalancerPool: no load-balancer controller")
		return nil
	}
	x, err := LoadBalancer(*o)
	if err != nil {
		return err
	}
	core, rbac := a.cs.CoreV1(), a.cs.RbacV1()
	if _, err := apply[*corev1.Namespace](ctx, a, core.Namespaces(), "Namespace", "", x.Namespace); err != nil {
		return err
	}
	if _, err := apply[*corev1.ServiceAccount](ctx, a, core.ServiceAccounts(LBNamespace), "ServiceAccount", LBNamespace, x.ServiceAccount); err != nil {
		return err
	}
	for _, r := range []*rbacv1ac.ClusterRoleApplyConfiguration{x.ControllerRole, x.AgentRole} {
		if _, err := apply[*rbacv1.ClusterRole](ctx, a, rbac.ClusterRoles(), "ClusterRole", "", r); err != nil {
			return err
		}
	}
	for _, b := range []*rbacv1ac.ClusterRoleBindingApplyConfiguration{x.ControllerRoleBinding, x.AgentRoleBinding} {
		if _, err := apply[*rbacv1.ClusterRoleBinding](ctx, a, rbac.ClusterRoleBindings(), "ClusterRoleBinding", "", b); err != nil {
			return err
		}
	}
	if _, err := apply[*rbacv1.Role](ctx, a, rbac.Roles(LBNamespace), "Role", LBNamespace, x.LeaseRole); err != nil {
		return err
	}
	if _, err := apply[*rbacv1.RoleBinding](ctx, a, rbac.RoleBindings(LBNamespace), "RoleBinding", LBNamespace, x.LeaseRoleBinding); err != nil {
		return err
	}
	if _, err := apply[*corev1.ConfigMap](ctx, a, core.ConfigMaps(LBNamespace), "ConfigMap", LBNamespace, x.ConfigMap); err != nil {
		return err
	}
	if _, err := apply[*appsv1.Deployment](ctx, a, a.cs.AppsV1().Deployments(LBNamespace), "Deployment", LBNamespace, x.Deployment); err != nil {
		return err
	}
	_, err = apply[*policyv1.PodDisruptionBudget](ctx, a, a.cs.PolicyV1().PodDisruptionBudgets(LBNamespace), "PodDisruptionBudget", LBNamespace, x.PDB)
	return err
}
