package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
	"github.com/tricenter/terraform-provider-tricenter/lb"
)

// agentRules are all the agent's credential may do.
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
}

// TestAgainstRealAPIServer runs a Watcher against a real kube-apiserver
// (etcd and kube-apiserver from the artifact cache), with a kubeconfig
// whose user may only list and watch Services and EndpointSlices, and
// times the announce (Service created → route) and the withdrawal
// (EndpointSlice not ready → route gone).
func TestAgainstRealAPIServer(t *testing.T) {
	store := &pki.Store{Dir: filepath.Join(t.TempDir(), "pki")}
	admin := kubetest.Start(t, kubetest.Options{PKI: store})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The agent's identity and its kubeconfig file.
	const user = "tricenter-bgp:dc2-w01"
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "tricenter-bgp"}, Rules: agentRules,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tricenter-bgp"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "tricenter-bgp"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca, err := store.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := store.Leaf(ca, pki.KubernetesCA, "bgp-agent", pki.Request{CommonName: user, Usage: pki.Client})
	if err != nil {
		t.Fatal(err)
	}
	server := admin.CoreV1().RESTClient().Get().URL()
	kc, err := kubeconfig.Render(kubeconfig.Config{Cluster: "kubetest", User: user, Server: server.Scheme + "://" + server.Host,
		CA: ca.CertPEM, CertPEM: cert.CertPEM, KeyPEM: cert.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	agentClient, err := NewClient(path)
	if err != nil {
		t.Fatal(err)
	}
	// What the watcher works with is all the credential allows.
	if _, err := agentClient.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent's credential lists Nodes: %v", err)
	}
	if _, err := agentClient.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent's credential lists Pods: %v", err)
	}

	r := &running{sets: make(chan []lb.Route, 100), log: &syncBuffer{}}
	r.w = New(Config{Kubeconfig: path, Node: dr, Prefer: lb.PreferProduction, OnChange: func(rs []lb.Route) { r.sets <- rs }})
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.w.Run(wctx) }()
	t.Cleanup(func() {
		wcancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if got := r.next(t, 30*time.Second); got != "" {
		t.Fatalf("empty cluster: routes %q", got)
	}
	if s := r.w.Status(); !s.Synced || s.Error != "" {
		t.Fatalf("status %+v, want synced without error", s)
	}

	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Service, its slice (the endpointslice controller's part) and its
	// address (the allocator's part), as fast as they would come.
	start := time.Now()
	svc := lbService("shop", "web")
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	status := svc.Status
	svc.Status = corev1.ServiceStatus{}
	created, err := admin.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sl := slice("shop", "web", "web-abcde", ep{"dc1-w01", "dc1", yes}, ep{"dc2-w01", "dc2", nil})
	if _, err := admin.DiscoveryV1().EndpointSlices("shop").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created.Status = status
	if _, err := admin.CoreV1().Services("shop").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := r.next(t, 10*time.Second), "198.18.46.30:1:shop/web"; got != want {
		t.Fatalf("routes %q, want %q", got, want)
	}
	took := time.Since(start)
	t.Logf("route delivered %v after the Service was created", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("route delivered %v after the Service was created: the announce must work within 2s", took)
	}

	// The DR center's only endpoint stops being ready: its node withdraws.
	start = time.Now()
	sl.Endpoints[1].Conditions.Ready = no
	if _, err := admin.DiscoveryV1().EndpointSlices("shop").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := r.next(t, 10*time.Second); got != "" {
		t.Fatalf("routes %q, want none", got)
	}
	took = time.Since(start)
	t.Logf("withdrawal delivered %v after the EndpointSlice update", took.Round(time.Millisecond))
	if took > 500*time.Millisecond {
		t.Errorf("withdrawal delivered %v after the EndpointSlice update: it must reach the routers within 1s", took)
	}
	if s := r.w.Status(); !s.Synced || s.Services != 1 || s.Routes != 0 || s.Error != "" {
		t.Errorf("status %+v, want synced, 1 Service, no route, no error", s)
	}
}
