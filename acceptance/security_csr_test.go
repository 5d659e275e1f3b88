package acceptance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// csrWatch is how long a CSR is watched for an approval or a certificate.
const csrWatch = 15 * time.Second

// checkKubeletCSR checks, on the running lab, that a worker's own kubelet
// credential (its kubeconfig on the server, read over SSH) cannot obtain a
// certificate for another node's name: a CertificateSigningRequest for
// CN system:node:<control-plane server>, O system:nodes, signer
// kubernetes.io/kube-apiserver-client-kubelet, is refused at creation or
// never approved nor issued within csrWatch (Denied, when an approver
// denies it); the node cannot approve a CSR itself (its own nor the
// foreign one: the approval subresource is forbidden to it). What happens
// to a CSR for the node's own name is logged: tricenter renews kubelet
// certificates itself (rotateCertificates is off), so nothing is expected
// to approve it either. Both CSRs are deleted with the admin credential.
func checkKubeletCSR(t *testing.T, ctx context.Context, k *kubeLab, e *installer.Engine) {
	t.Helper()
	_ = k // the lab's machines are reached through e (SSH through the jump hosts)
	p := e.Placement()
	var worker string
	for _, h := range e.Cluster().Hosts() {
		if p.IsControlPlane(h.Name) || p.IsEtcdMember(h.Name) {
			continue
		}
		if worker == "" || (worker == staleWorker || worker == newWorker) {
			worker = h.Name
		}
	}
	if worker == "" || len(p.ControlPlane) == 0 {
		t.Fatalf("the lab inventory has no worker (%q) or no control-plane server", worker)
	}
	foreign := p.ControlPlane[0].Name

	// The worker's own credential, as its kubelet uses it.
	m := e.Manager(true)
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: []string{worker}})
	if err != nil || len(hosts) != 1 {
		t.Fatalf("host %s: %v", worker, err)
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	kc, err := hosts[0].Query(qctx, "cat "+node.KubeletKubeconfig)
	cancel()
	if err != nil {
		t.Fatalf("%s: reading %s: %v", worker, node.KubeletKubeconfig, err)
	}
	clientOf := func(kc []byte) kubernetes.Interface { return labClient(t, e, kc) }
	nodeClient := clientOf([]byte(kc))
	adminKC, err := e.AdminKubeconfig("")
	if err != nil {
		t.Fatal(err)
	}
	admin := clientOf(adminKC)
	if w, err := nodeClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err == nil {
		if u := w.Status.UserInfo.Username; u != pki.NodeUser(worker) {
			t.Fatalf("%s's kubelet credential authenticates as %q, want %s", worker, u, pki.NodeUser(worker))
		}
	}

	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	names := map[string]string{} // CSR name → whose name it asks for
	created := map[string]bool{}
	// Removed when the check ends (not at the end of the whole test, when
	// the cluster is reset and its API gone).
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for name := range created {
			if err := admin.CertificatesV1().CertificateSigningRequests().Delete(cctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting CSR %s: %v", name, err)
			}
		}
	}()
	create := func(forNode string) (string, error) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: pki.NodeUser(forNode), Organization: []string{"system:nodes"}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		name := "tricenter-csr-test-" + forNode + "-" + suffix
		names[name] = forNode
		_, err = nodeClient.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
				Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			},
		}, metav1.CreateOptions{})
		if err == nil {
			created[name] = true
		}
		return name, err
	}

	foreignCSR, err := create(foreign)
	switch {
	case err != nil && (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)):
		t.Logf("%s's CSR for %s refused at creation: %v", worker, pki.NodeUser(foreign), err)
	case err != nil:
		t.Fatalf("creating %s's CSR for %s: %v", worker, pki.NodeUser(foreign), err)
	}
	ownCSR, err := create(worker)
	if err != nil {
		t.Logf("%s's CSR for its own name refused at creation: %v", worker, err)
	}

	// The node cannot approve a CSR, its own nor the foreign one.
	for _, name := range []string{foreignCSR, ownCSR} {
		if !created[name] {
			continue
		}
		csr, err := nodeClient.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s reading its CSR %s: %v", worker, name, err)
			continue
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: "SelfApproved", Message: "approved by the node itself (must be forbidden)"})
		_, err = nodeClient.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s approving CSR %s (for %s) itself: %v, want Forbidden", worker, name, pki.NodeUser(names[name]), err)
		}
	}

	// Watched for csrWatch: the foreign CSR is never approved nor issued.
	type outcome struct{ approved, denied, failed, issued bool }
	csrState := func(name string) (outcome, error) {
		csr, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return outcome{}, err
		}
		var o outcome
		for _, c := range csr.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case certificatesv1.CertificateApproved:
				o.approved = true
			case certificatesv1.CertificateDenied:
				o.denied = true
			case certificatesv1.CertificateFailed:
				o.failed = true
			}
		}
		o.issued = len(csr.Status.Certificate) > 0
		return o, nil
	}
	var foreignOut, ownOut outcome
	deadline := time.Now().Add(csrWatch)
	for {
		if created[foreignCSR] {
			o, err := csrState(foreignCSR)
			if err != nil {
				t.Fatalf("reading CSR %s: %v", foreignCSR, err)
			}
			foreignOut = o
			if o.approved || o.issued {
				t.Errorf("%s's CSR for another node's name (%s) was approved (%v) or issued (%v): a node can obtain another node's identity",
					worker, pki.NodeUser(foreign), o.approved, o.issued)
				break
			}
		}
		if created[ownCSR] {
			if o, err := csrState(ownCSR); err == nil {
				ownOut = o
			}
		}
		if time.Now().After(deadline) || foreignOut.denied {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
	if created[foreignCSR] {
		verdict := "left pending: no approver in the cluster approves it"
		if foreignOut.denied {
			verdict = "Denied"
		}
		t.Logf("%s's CSR for %s: %s after %v", worker, pki.NodeUser(foreign), verdict, csrWatch)
	}
	if created[ownCSR] {
		var what []string
		for flag, s := range map[string]bool{"approved": ownOut.approved, "denied": ownOut.denied, "failed": ownOut.failed, "issued": ownOut.issued} {
			if s {
				what = append(what, flag)
			}
		}
		if len(what) == 0 {
			what = []string{"pending (tricenter renews kubelet certificates itself; nothing approves kubelet CSRs)"}
		}
		t.Logf("%s's CSR for its own name %s: %s after %v", worker, pki.NodeUser(worker), strings.Join(what, ", "), csrWatch)
	}
}
