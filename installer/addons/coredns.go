package addons

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
)

// CoreDNS object names (as upstream's deployment/kubernetes manifests).
const (
	Namespace      = "kube-system"
	CoreDNSName    = "coredns"
	DNSServiceName = "kube-dns"
	coreDNSRole    = "system:coredns"
	labelApp       = "k8s-app"
	zoneKey        = "topology.kubernetes.io/zone"
	controlPlane   = "node-role.kubernetes.io/control-plane"
)

// RenderCorefile renders CoreDNS's configuration: the kubernetes plugin
// for the cluster domain and the reverse zones, and forwarding only to
// the resolvers in forward (none: names outside the cluster fail fast,
// nothing leaves the cluster).
func RenderCorefile(domain string, forward []string) string {
	var fw string
	if len(forward) > 0 {
		fw = "    forward . " + strings.Join(forward, " ") + " {\n       max_concurrent 1000\n    }\n"
	}
	return `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes ` + domain + ` in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
` + fw + `    cache 30
    loop
    reload
    loadbalance
}
`
}

// CoreDNSObjects are the CoreDNS add-on's objects as tricenter applies
// them (server-side, as field manager tricenter), in apply order. Each
// holds exactly the fields tricenter owns.
type CoreDNSObjects struct {
	ServiceAccount     *corev1ac.ServiceAccountApplyConfiguration
	ClusterRole        *rbacv1ac.ClusterRoleApplyConfiguration
	ClusterRoleBinding *rbacv1ac.ClusterRoleBindingApplyConfiguration
	ConfigMap          *corev1ac.ConfigMapApplyConfiguration
	Deployment         *appsv1ac.DeploymentApplyConfiguration
	PDB                *policyv1ac.PodDisruptionBudgetApplyConfiguration
	Service            *corev1ac.ServiceApplyConfiguration
}

// CoreDNS builds the add-on's objects from o (defaults applied).
func CoreDNS(o Options) (*CoreDNSObjects, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	labels := func() map[string]string { return map[string]string{labelApp: "kube-dns"} }
	managed := func(l map[string]string) map[string]string {
		l[ManagedByLabel] = FieldManager
		return l
	}
	selector := func() *metav1ac.LabelSelectorApplyConfiguration {
		return metav1ac.LabelSelector().WithMatchLabels(labels())
	}
	rbacDefaults := func() map[string]string {
		return managed(map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"})
	}
	x := &CoreDNSObjects{}
	x.ServiceAccount = corev1ac.ServiceAccount(CoreDNSName, Namespace).WithLabels(managed(labels()))
	x.ClusterRole = rbacv1ac.ClusterRole(coreDNSRole).WithLabels(rbacDefaults()).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("endpoints", "services", "pods", "namespaces").WithVerbs("list", "watch"),
		rbacv1ac.PolicyRule().WithAPIGroups("discovery.k8s.io").WithResources("endpointslices").WithVerbs("list", "watch"),
	)
	x.ClusterRoleBinding = rbacv1ac.ClusterRoleBinding(coreDNSRole).WithLabels(rbacDefaults()).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(coreDNSRole)).
		WithSubjects(rbacv1ac.Subject().WithKind("ServiceAccount").WithName(CoreDNSName).WithNamespace(Namespace))
	x.ConfigMap = corev1ac.ConfigMap(CoreDNSName, Namespace).WithLabels(managed(labels())).
		WithData(map[string]string{"Corefile": RenderCorefile(o.domain(), o.Forward)})
	one := intstr.FromInt32(1)
	httpGet := func(path string, port int32) *corev1ac.HTTPGetActionApplyConfiguration {
		return corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromInt32(port)).WithScheme(corev1.URISchemeHTTP)
	}
	container := corev1ac.Container().WithName("coredns").WithImage(o.CoreDNSImage).WithImagePullPolicy(o.PullPolicy).
		WithArgs("-conf", "/etc/coredns/Corefile").
		WithResources(corev1ac.ResourceRequirements().
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")}).
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("70Mi")})).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("config-volume").WithMountPath("/etc/coredns").WithReadOnly(true)).
		WithPorts(
			corev1ac.ContainerPort().WithName("dns").WithContainerPort(53).WithProtocol(corev1.ProtocolUDP),
			corev1ac.ContainerPort().WithName("dns-tcp").WithContainerPort(53).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("metrics").WithContainerPort(9153).WithProtocol(corev1.ProtocolTCP),
		).
		WithSecurityContext(corev1ac.SecurityContext().WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithAdd("NET_BIND_SERVICE").WithDrop("ALL")).
			WithReadOnlyRootFilesystem(true)).
		WithLivenessProbe(corev1ac.Probe().WithHTTPGet(httpGet("/health", 8080)).
			WithInitialDelaySeconds(60).WithTimeoutSeconds(5).WithSuccessThreshold(1).WithFailureThreshold(5)).
		WithReadinessProbe(corev1ac.Probe().WithHTTPGet(httpGet("/ready", 8181)))
	pod := corev1ac.PodSpec().
		WithPriorityClassName("system-cluster-critical").
		WithServiceAccountName(CoreDNSName).
		WithDNSPolicy(corev1.DNSDefault).
		WithNodeSelector(map[string]string{"kubernetes.io/os": "linux"}).
		WithTolerations(
			corev1ac.Toleration().WithKey("CriticalAddonsOnly").WithOperator(corev1.TolerationOpExists),
			corev1ac.Toleration().WithKey(controlPlane).WithEffect(corev1.TaintEffectNoSchedule),
		).
		// One replica per center while centers last; never blocked when
		// a center is down.
		WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
			WithMaxSkew(1).WithTopologyKey(zoneKey).WithWhenUnsatisfiable(corev1.ScheduleAnyway).
			WithLabelSelector(selector())).
		WithAffinity(corev1ac.Affinity().WithPodAntiAffinity(corev1ac.PodAntiAffinity().
			WithPreferredDuringSchedulingIgnoredDuringExecution(corev1ac.WeightedPodAffinityTerm().WithWeight(100).
				WithPodAffinityTerm(corev1ac.PodAffinityTerm().WithTopologyKey("kubernetes.io/hostname").
					WithLabelSelector(selector()))))).
		WithContainers(container).
		WithVolumes(corev1ac.Volume().WithName("config-volume").WithConfigMap(corev1ac.ConfigMapVolumeSource().
			WithName(CoreDNSName).WithItems(corev1ac.KeyToPath().WithKey("Corefile").WithPath("Corefile"))))
	x.Deployment = appsv1ac.Deployment(CoreDNSName, Namespace).WithLabels(managed(labels())).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(o.CoreDNSReplicas).
			WithSelector(selector()).
			WithStrategy(appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType).
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().WithMaxUnavailable(one))).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels()).WithSpec(pod)))
	x.PDB = policyv1ac.PodDisruptionBudget(CoreDNSName, Namespace).WithLabels(managed(labels())).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().WithMaxUnavailable(one).WithSelector(selector()))
	svcLabels := managed(labels())
	svcLabels["kubernetes.io/cluster-service"] = "true"
	svcLabels["kubernetes.io/name"] = "CoreDNS"
	servicePort := func(name string, port int32, proto corev1.Protocol) *corev1ac.ServicePortApplyConfiguration {
		return corev1ac.ServicePort().WithName(name).WithPort(port).WithProtocol(proto).WithTargetPort(intstr.FromInt32(port))
	}
	x.Service = corev1ac.Service(DNSServiceName, Namespace).WithLabels(svcLabels).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(labels()).
			WithClusterIP(o.IPs.ClusterDNSIP.String()).
			WithPorts(
				servicePort("dns", 53, corev1.ProtocolUDP),
				servicePort("dns-tcp", 53, corev1.ProtocolTCP),
				servicePort("metrics", 9153, corev1.ProtocolTCP),
			))
	return x, nil
}

// coreDNS applies the CoreDNS objects.
func (a *applier) coreDNS(ctx context.Context, o *Options) error {
	x, err := CoreDNS(*o)
	if err != nil {
		return err
	}
	core, rbac := a.cs.CoreV1(), a.cs.RbacV1()
	if _, err := apply[*corev1.ServiceAccount](ctx, a, core.ServiceAccounts(Namespace), "ServiceAccount", Namespace, x.ServiceAccount); err != nil {
		return err
	}
	if _, err := apply[*rbacv1.ClusterRole](ctx, a, rbac.ClusterRoles(), "ClusterRole", "", x.ClusterRole); err != nil {
		return err
	}
	if _, err := apply[*rbacv1.ClusterRoleBinding](ctx, a, rbac.ClusterRoleBindings(), "ClusterRoleBinding", "", x.ClusterRoleBinding); err != nil {
		return err
	}
	if _, err := apply[*corev1.ConfigMap](ctx, a, core.ConfigMaps(Namespace), "ConfigMap", Namespace, x.ConfigMap); err != nil {
		return err
	}
	if _, err := apply[*appsv1.Deployment](ctx, a, a.cs.AppsV1().Deployments(Namespace), "Deployment", Namespace, x.Deployment); err != nil {
		return err
	}
	if _, err := apply[*policyv1.PodDisruptionBudget](ctx, a, a.cs.PolicyV1().PodDisruptionBudgets(Namespace), "PodDisruptionBudget", Namespace, x.PDB); err != nil {
		return err
	}
	// A Service's cluster IP cannot change: one at another address is
	// replaced.
	wantIP := *x.Service.Spec.ClusterIP
	svc, err := core.Services(Namespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	switch {
	case err == nil && svc.Spec.ClusterIP != wantIP:
		a.log.Warn("Replacing the DNS Service at another cluster IP", "service", DNSServiceName,
			"have", svc.Spec.ClusterIP, "want", wantIP)
		if err := core.Services(Namespace).Delete(ctx, DNSServiceName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Service %s/%s at %s: %w", Namespace, DNSServiceName, svc.Spec.ClusterIP, err)
		}
		a.record("deleted Service %s/%s at %s", Namespace, DNSServiceName, svc.Spec.ClusterIP)
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("reading Service %s/%s: %w", Namespace, DNSServiceName, err)
	}
	_, err = apply[*corev1.Service](ctx, a, core.Services(Namespace), "Service", Namespace, x.Service)
	return err
}
