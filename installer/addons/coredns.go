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
// them, in creation order.
type CoreDNSObjects struct {
	ServiceAccount     *corev1.ServiceAccount
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
	ConfigMap          *corev1.ConfigMap
	Deployment         *appsv1.Deployment
	PDB                *policyv1.PodDisruptionBudget
	Service            *corev1.Service
}

// CoreDNS builds the add-on's objects from o (defaults applied).
func CoreDNS(o Options) (*CoreDNSObjects, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	labels := func() map[string]string { return map[string]string{labelApp: "kube-dns"} }
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels()}
	}
	tm := func(apiVersion, kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
	}
	x := &CoreDNSObjects{}
	x.ServiceAccount = &corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta(CoreDNSName)}
	x.ClusterRole = &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: coreDNSRole, Labels: map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	x.ClusterRoleBinding = &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: coreDNSRole, Labels: map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: coreDNSRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: CoreDNSName, Namespace: Namespace}},
	}
	x.ConfigMap = &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta(CoreDNSName),
		Data: map[string]string{"Corefile": RenderCorefile(o.domain(), o.Forward)}}
	one := intstr.FromInt32(1)
	podLabels := labels()
	x.Deployment = &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: meta(CoreDNSName),
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.CoreDNSReplicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels()},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &one}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					PriorityClassName:  "system-cluster-critical",
					ServiceAccountName: CoreDNSName,
					DNSPolicy:          corev1.DNSDefault,
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					Tolerations: []corev1.Toleration{
						{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
						{Key: controlPlane, Effect: corev1.TaintEffectNoSchedule},
					},
					// One replica per center while centers last; never
					// blocked when a center is down.
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: zoneKey, WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector: &metav1.LabelSelector{MatchLabels: labels()},
					}},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{
								TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: labels()},
							},
						}},
					}},
					Containers: []corev1.Container{{
						Name: "coredns", Image: o.CoreDNSImage, ImagePullPolicy: o.PullPolicy,
						Args: []string{"-conf", "/etc/coredns/Corefile"},
						Resources: corev1.ResourceRequirements{
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")},
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("70Mi")},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false),
							Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"},
								Drop: []corev1.Capability{"ALL"}},
							ReadOnlyRootFilesystem: ptr(true),
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health",
								Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTP}},
							InitialDelaySeconds: 60, TimeoutSeconds: 5, SuccessThreshold: 1, FailureThreshold: 5,
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready",
								Port: intstr.FromInt32(8181), Scheme: corev1.URISchemeHTTP}},
						},
					}},
					Volumes: []corev1.Volume{{Name: "config-volume", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: CoreDNSName},
							Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
						},
					}}},
				},
			},
		},
	}
	x.PDB = &policyv1.PodDisruptionBudget{
		TypeMeta:   tm("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: meta(CoreDNSName),
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels()}},
	}
	svcLabels := labels()
	svcLabels["kubernetes.io/cluster-service"] = "true"
	svcLabels["kubernetes.io/name"] = "CoreDNS"
	x.Service = &corev1.Service{
		TypeMeta:   tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: DNSServiceName, Namespace: Namespace, Labels: svcLabels},
		Spec: corev1.ServiceSpec{
			Selector:  labels(),
			ClusterIP: o.IPs.ClusterDNSIP.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	return x, nil
}

func ptr[T any](v T) *T { return &v }

// coreDNS applies the CoreDNS objects.
func (a *applier) coreDNS(ctx context.Context, o *Options) error {
	x, err := CoreDNS(*o)
	if err != nil {
		return err
	}
	core, rbac := a.cs.CoreV1(), a.cs.RbacV1()
	if _, err := ensure(ctx, a, core.ServiceAccounts(Namespace), "ServiceAccount", x.ServiceAccount); err != nil {
		return err
	}
	if _, err := ensure(ctx, a, rbac.ClusterRoles(), "ClusterRole", x.ClusterRole); err != nil {
		return err
	}
	if _, err := ensure(ctx, a, rbac.ClusterRoleBindings(), "ClusterRoleBinding", x.ClusterRoleBinding); err != nil {
		return err
	}
	if _, err := ensure(ctx, a, core.ConfigMaps(Namespace), "ConfigMap", x.ConfigMap); err != nil {
		return err
	}
	if _, err := ensure(ctx, a, a.cs.AppsV1().Deployments(Namespace), "Deployment", x.Deployment); err != nil {
		return err
	}
	if _, err := ensure(ctx, a, a.cs.PolicyV1().PodDisruptionBudgets(Namespace), "PodDisruptionBudget", x.PDB); err != nil {
		return err
	}
	// A Service's cluster IP cannot change: one at another address is
	// replaced.
	svc, err := core.Services(Namespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	switch {
	case err == nil && svc.Spec.ClusterIP != x.Service.Spec.ClusterIP:
		a.log.Warn("Replacing the DNS Service at another cluster IP", "service", DNSServiceName,
			"have", svc.Spec.ClusterIP, "want", x.Service.Spec.ClusterIP)
		if err := core.Services(Namespace).Delete(ctx, DNSServiceName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Service %s/%s at %s: %w", Namespace, DNSServiceName, svc.Spec.ClusterIP, err)
		}
		a.record("deleted Service %s/%s at %s", Namespace, DNSServiceName, svc.Spec.ClusterIP)
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("reading Service %s/%s: %w", Namespace, DNSServiceName, err)
	}
	_, err = ensure(ctx, a, core.Services(Namespace), "Service", x.Service)
	return err
}
