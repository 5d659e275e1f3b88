package addons

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/kubetest"
)

// TestIdentitiesAgainstAPIServer runs the identities step against a real
// kube-apiserver (RBAC authorizer) whose state holds an admin certificate
// in system:masters, as an earlier release issued it: a certificate of the
// admin group is refused before the binding exists; the step applies the
// bindings with the break-glass client and switches the admin certificate
// to the group, which then lists Nodes and creates a Namespace; a re-run
// changes nothing; the API server's kubelet client (in no group) may reach
// nodes/proxy but not list Secrets.
func TestIdentitiesAgainstAPIServer(t *testing.T) {
	store := pki.NewMemStore()
	breakGlass := kubetest.Start(t, kubetest.Options{PKI: store})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	server := "https://" + breakGlass.CoreV1().RESTClient().Get().URL().Host
	ca, err := store.LoadCA(pki.KubernetesCA)
	if err != nil {
		t.Fatal(err)
	}
	clientOf := func(kp *pki.KeyPair) kubernetes.Interface {
		t.Helper()
		kc, err := kubeconfig.Render(kubeconfig.Config{Cluster: "kubetest", User: kp.Cert.Subject.CommonName, Server: server,
			CA: ca.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := kubeconfig.REST(kc)
		if err != nil {
			t.Fatal(err)
		}
		rc.Timeout = 10 * time.Second
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	issue := func(cn string, groups ...string) kubernetes.Interface {
		t.Helper()
		kp, err := pki.Issue(ca, pki.Request{CommonName: cn, Organization: groups, Usage: pki.Client}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return clientOf(kp)
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: err = %v, want Forbidden", what, err)
		}
	}

	// A state of an earlier release: the admin certificate in system:masters.
	if _, _, err := store.Leaf(ca, pki.KubernetesCA, pki.Admin, pki.AdminRequest(pki.MastersGroup)); err != nil {
		t.Fatal(err)
	}
	// The group without its binding is nobody.
	_, err = issue("someone", kubeconfig.AdminGroup).CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	forbidden("a certificate of the admin group before the binding lists Nodes", err)

	sw := func(ctx context.Context) (bool, error) {
		_, changed, err := store.SwitchAdmin(func(kp *pki.KeyPair) error {
			return WaitSelfAdmin(ctx, clientOf(kp), 30*time.Second, 0)
		})
		return changed, err
	}
	start := time.Now()
	changed, err := ApplyIdentities(ctx, IdentityOptions{Client: breakGlass, SwitchAdmin: sw, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("identities applied and switched in %v: %q", time.Since(start).Round(time.Millisecond), changed)
	if len(changed) != 3 {
		t.Errorf("changes %q, want the two bindings created and the switch", changed)
	}
	admin, err := store.EnsureAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(admin.Cert.Subject.Organization, []string{kubeconfig.AdminGroup}) {
		t.Fatalf("admin certificate O=%v after the switch, want %s only", admin.Cert.Subject.Organization, kubeconfig.AdminGroup)
	}
	ac := clientOf(admin)
	if _, err := ac.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the switched admin certificate cannot list Nodes: %v", err)
	}
	if _, err := ac.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "identities"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("the switched admin certificate cannot create a Namespace: %v", err)
	}
	// What kubectl auth whoami shows.
	who, err := ac.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := who.Status.UserInfo; u.Username != pki.AdminUser || !slices.Contains(u.Groups, kubeconfig.AdminGroup) || slices.Contains(u.Groups, pki.MastersGroup) {
		t.Errorf("the switched admin is %s in %v, want %s in %s and not %s", u.Username, u.Groups, pki.AdminUser, kubeconfig.AdminGroup, pki.MastersGroup)
	}

	again, err := ApplyIdentities(ctx, IdentityOptions{Client: breakGlass, SwitchAdmin: sw, Timeout: time.Minute})
	if err != nil || len(again) != 0 {
		t.Errorf("re-run: changes %q, err %v", again, err)
	}
	if got, _ := store.EnsureAdmin(); !got.Cert.Equal(admin.Cert) {
		t.Error("the re-run reissued the admin certificate")
	}

	// The kubelet client certificate as the control plane issues it now.
	if _, err := store.EnsureEtcd([]pki.EtcdMember{{Name: "cp1", Address: "198.18.127.1"}}); err != nil {
		t.Fatal(err)
	}
	cp, err := store.EnsureControlPlane(pki.ControlPlaneRequest{Servers: []pki.ControlPlaneServer{{Name: "cp1", Address: "198.18.127.1"}},
		ServiceIP: netip.MustParseAddr("198.19.96.1"), ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if o := cp.KubeletClient.Cert.Subject.Organization; len(o) != 0 {
		t.Fatalf("kubelet client O=%v, want no group", o)
	}
	kc := clientOf(cp.KubeletClient)
	ssar, err := kc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "get", Resource: "nodes", Subresource: "proxy", Name: "cp1"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !ssar.Status.Allowed {
		t.Errorf("the kubelet client may not get nodes/proxy: %s", ssar.Status.Reason)
	}
	_, err = kc.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	forbidden("the kubelet client lists Secrets", err)
	_, err = kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelet-client"}}, metav1.CreateOptions{})
	forbidden("the kubelet client creates a Namespace", err)
}
