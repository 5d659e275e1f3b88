package acceptance

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// checkIdentities checks, on the running lab, the identities apply set
// up: the admin kubeconfig (the file at adminKubeconfig, written from
// Engine.AdminKubeconfig) is in tricenter:cluster-admins and not in
// system:masters, as kubectl auth whoami shows; both ClusterRoleBindings
// exist; the break-glass credential is system:masters and works; the API
// server's kubelet client certificate on a control-plane server is in no
// group and kubectl logs works through its binding; deleting the admin
// binding revokes the admin kubeconfig and an add-ons apply (with the
// break-glass credential) puts it back.
func checkIdentities(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine, adminKubeconfig string) {
	t.Helper()
	kubectl := func(kc string, args ...string) (string, error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		out, err := exec.CommandContext(cctx, filepath.Join(k.arts, artifacts.DefaultName("kubectl")),
			append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput()
		return string(out), err
	}
	type whoami struct {
		Status struct {
			UserInfo struct {
				Username string   `json:"username"`
				Groups   []string `json:"groups"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	who := func(kc string) whoami {
		t.Helper()
		out, err := kubectl(kc, "auth", "whoami", "-o", "json")
		if err != nil {
			t.Fatalf("kubectl auth whoami (%s): %v\n%s", kc, err, out)
		}
		var w whoami
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("kubectl auth whoami: %v\n%s", err, out)
		}
		return w
	}
	clientOf := func(kc []byte) kubernetes.Interface { return labClient(t, e, kc) }

	// The admin kubeconfig's certificate and identity.
	adminKC, err := os.ReadFile(adminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := kubeconfig.REST(adminKC)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(rc.CertData)
	if b == nil {
		t.Fatalf("%s holds no client certificate", adminKubeconfig)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if o := cert.Subject.Organization; !slices.Equal(o, []string{kubeconfig.AdminGroup}) {
		t.Errorf("the admin kubeconfig's certificate is O=%v, want %s only (not %s)", o, kubeconfig.AdminGroup, pki.MastersGroup)
	}
	if w := who(adminKubeconfig).Status.UserInfo; w.Username != pki.AdminUser || !slices.Contains(w.Groups, kubeconfig.AdminGroup) ||
		slices.Contains(w.Groups, pki.MastersGroup) {
		t.Errorf("kubectl auth whoami with the admin kubeconfig: %s in %v, want %s in %s and not %s",
			w.Username, w.Groups, pki.AdminUser, kubeconfig.AdminGroup, pki.MastersGroup)
	}

	// The break-glass credential: system:masters, working.
	bgKC, err := e.BreakGlassKubeconfig("")
	if err != nil {
		t.Fatal(err)
	}
	bgFile := filepath.Join(t.TempDir(), "break-glass.conf")
	if err := os.WriteFile(bgFile, bgKC, 0o600); err != nil {
		t.Fatal(err)
	}
	if w := who(bgFile).Status.UserInfo; w.Username != pki.BreakGlassUser || !slices.Contains(w.Groups, pki.MastersGroup) {
		t.Errorf("kubectl auth whoami with the break-glass kubeconfig: %s in %v, want %s in %s", w.Username, w.Groups, pki.BreakGlassUser, pki.MastersGroup)
	}
	if out, err := kubectl(bgFile, "get", "nodes", "-o", "name"); err != nil || !strings.Contains(out, "node/") {
		t.Errorf("kubectl get nodes with the break-glass kubeconfig: %v\n%s", err, out)
	}
	bg := clientOf(bgKC)

	// The bindings.
	for name, role := range map[string]string{kubeconfig.AdminBindingName: kubeconfig.ClusterAdminRole,
		addons.KubeletAPIAdminBindingName: addons.KubeletAPIAdminRole} {
		crb, err := bg.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("ClusterRoleBinding %s: %v", name, err)
			continue
		}
		if crb.RoleRef.Name != role || len(crb.Subjects) != 1 {
			t.Errorf("ClusterRoleBinding %s binds %v to %s, want one subject to %s", name, crb.Subjects, crb.RoleRef.Name, role)
		}
	}

	// The API server's kubelet client: in no group, and kubectl logs
	// (API server to kubelet) works through system:kubelet-api-admin.
	cp := e.Placement().ControlPlane[0].Name
	m := e.Manager(true)
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: []string{cp}})
	if err != nil || len(hosts) != 1 {
		t.Fatalf("host %s: %v", cp, err)
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	out, err := hosts[0].Query(qctx, "cat "+controlplane.KubeletClientCert)
	cancel()
	if err != nil {
		t.Fatalf("%s: reading %s: %v", cp, controlplane.KubeletClientCert, err)
	}
	if b, _ := pem.Decode([]byte(out)); b == nil {
		t.Errorf("%s: %s is not PEM", cp, controlplane.KubeletClientCert)
	} else if c, err := x509.ParseCertificate(b.Bytes); err != nil {
		t.Errorf("%s: %s: %v", cp, controlplane.KubeletClientCert, err)
	} else if c.Subject.CommonName != pki.KubeletClientUser || len(c.Subject.Organization) != 0 {
		t.Errorf("%s: the kubelet client certificate is %v, want CN=%s in no group", cp, c.Subject, pki.KubeletClientUser)
	}
	if out, err := kubectl(adminKubeconfig, "--namespace", addons.Namespace, "logs", "deployment/"+addons.CoreDNSName, "--tail=1"); err != nil {
		t.Errorf("kubectl logs (API server to kubelet): %v\n%s", err, out)
	}

	// Revocable: without its binding the admin kubeconfig is refused; the
	// add-ons step puts the binding back with the break-glass credential.
	admin := clientOf(adminKC)
	t.Cleanup(func() {
		_, _ = bg.RbacV1().ClusterRoleBindings().Apply(context.Background(), kubeconfig.AdminClusterRoleBinding(),
			metav1.ApplyOptions{FieldManager: addons.FieldManager, Force: true})
	})
	if err := bg.RbacV1().ClusterRoleBindings().Delete(ctx, kubeconfig.AdminBindingName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(ctx, time.Minute, func() error {
		_, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		if apierrors.IsForbidden(err) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatalf("the admin kubeconfig still lists Nodes a minute after its binding was deleted: %v", err)
	}
	res, err := e.Apply(ctx, installer.Options{Only: []string{addons.IDCoreDNS}})
	if err != nil {
		t.Fatalf("apply --only %s with the admin binding deleted: %v", addons.IDCoreDNS, err)
	}
	if !slices.Contains(res.APIChanges, "created ClusterRoleBinding "+kubeconfig.AdminBindingName) {
		t.Errorf("the apply did not report the binding it put back: %q", res.APIChanges)
	}
	if _, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Errorf("the admin kubeconfig after the apply put its binding back: %v", err)
	}
}

// labClient is a client of the lab's API for a kubeconfig, dialled the way
// the engine dials (from this host, through the lab's routes).
func labClient(t *testing.T, e *installer.Engine, kc []byte) kubernetes.Interface {
	t.Helper()
	rc, err := kubeconfig.REST(kc)
	if err != nil {
		t.Fatal(err)
	}
	rc.Dial = e.Dial
	rc.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
