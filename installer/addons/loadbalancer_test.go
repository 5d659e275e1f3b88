package addons

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// lbOptions are options with a load-balancer pool whose first address is
// the API VIP and a static VIP.
func lbOptions(t *testing.T) Options {
	t.Helper()
	o := options(t)
	c := o.Cluster
	c.Spec.Network.LoadBalancerPool = []string{"198.19.120.0/28"}
	c.Spec.Network.LoadBalancerVIPs = []string{"198.19.120.11"}
	if res := c.Validate(nil); !res.OK() {
		t.Fatal(res.Err())
	}
	ips, err := inventory.AllocateIPs(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.IPs = ips
	return o
}

// TestLoadBalancerAgainstRealAPIServer applies the load-balancer objects
// to a real kube-apiserver: the namespace's restricted Pod Security level
// admits the controller's pod, the ConfigMap holds the inventory's pool
// with the API VIP and the static VIP reserved, the RBAC gives the
// controller and the node agents what they need and nothing more, and a
// re-apply changes nothing.
func TestLoadBalancerAgainstRealAPIServer(t *testing.T) {
	o := lbOptions(t)
	o.LBImageSHA256 = strings.Repeat("ab", 32)
	cs := kubetest.Start(t, kubetest.Options{ServiceCIDR: o.Cluster.Spec.Network.ServiceCIDR})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	changed, err := ApplyStep(ctx, cs, IDLoadBalancer, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 11 {
		t.Errorf("first apply made %d changes, want 11: %q", len(changed), changed)
	}
	again, err := ApplyStep(ctx, cs, IDLoadBalancer, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Errorf("re-apply changed %q", again)
	}

	cm, err := cs.CoreV1().ConfigMaps(LBNamespace).Get(ctx, LBName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := t.TempDir() + "/config.yaml"
	writeFile(t, f, cm.Data[lbConfigKey])
	pool, err := lb.LoadControllerConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(pool.Ranges) != 1 || pool.Ranges[0].String() != "198.19.120.0/28" || len(pool.Reserved) != 2 {
		t.Errorf("pool in the ConfigMap: %+v", pool)
	}
	for _, r := range []string{"198.19.120.10", "198.19.120.11"} {
		found := false
		for a := range pool.Reserved {
			found = found || a.String() == r
		}
		if !found {
			t.Errorf("%s is not reserved: %v", r, pool.Reserved)
		}
	}

	// The restricted level admits the controller's pod (server-side dry
	// run of a pod with the template's spec: admission runs, nothing is
	// stored).
	dep, err := cs.AppsV1().Deployments(LBNamespace).Get(ctx, LBName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Template.Annotations[annotationLBImage] != o.LBImageSHA256 {
		t.Errorf("template annotations %v", dep.Spec.Template.Annotations)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "admission-check", Namespace: LBNamespace}, Spec: dep.Spec.Template.Spec}
	if _, err := cs.CoreV1().Pods(LBNamespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("the controller's pod is not admitted in %s: %v", LBNamespace, err)
	}
	// A privileged pod is refused there.
	priv := pod.DeepCopy()
	yes := true
	priv.Spec.Containers[0].SecurityContext.Privileged = &yes
	priv.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
	if _, err := cs.CoreV1().Pods(LBNamespace).Create(ctx, priv, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil {
		t.Errorf("a privileged pod was admitted in %s: the namespace is not restricted", LBNamespace)
	}

	controllerSA := "system:serviceaccount:" + LBNamespace + ":" + LBName
	agent := pki.LBAgentUser("w1")
	for _, c := range []struct {
		user   string
		groups []string
		attr   authorizationv1.ResourceAttributes
		want   bool
	}{
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "watch", Resource: "services"}, true},
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "update", Resource: "services", Subresource: "status", Namespace: "default"}, true},
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "create", Resource: "events", Namespace: "default"}, true},
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "tricenter-lb", Namespace: LBNamespace}, true},
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "kube-scheduler", Namespace: "kube-system"}, false},
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "update", Resource: "services", Namespace: "default"}, false},
		{controllerSA, nil, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: LBNamespace}, false},
		{agent, []string{pki.LBAgentGroup}, authorizationv1.ResourceAttributes{Verb: "watch", Resource: "services"}, true},
		{agent, []string{pki.LBAgentGroup}, authorizationv1.ResourceAttributes{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"}, true},
		{agent, []string{pki.LBAgentGroup}, authorizationv1.ResourceAttributes{Verb: "update", Resource: "services", Subresource: "status", Namespace: "default"}, false},
		{agent, []string{pki.LBAgentGroup}, authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}, false},
		{agent, []string{pki.LBAgentGroup}, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "default"}, false},
	} {
		if got := allowed(t, ctx, cs, c.user, c.groups, c.attr); got != c.want {
			t.Errorf("%s may %s %s/%s in %q: %v, want %v", c.user, c.attr.Verb, c.attr.Resource, c.attr.Subresource, c.attr.Namespace, got, c.want)
		}
	}
}

func allowed(t *testing.T, ctx context.Context, cs kubernetes.Interface, user string, groups []string, attr authorizationv1.ResourceAttributes) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &attr}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
