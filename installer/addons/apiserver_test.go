package addons

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// peer is a real process the test started; it is killed and reaped when
// the test ends.
type peer struct {
	name string
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *peer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *peer) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.out.String()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return s
}

func startPeer(t *testing.T, bin string, args ...string) *peer {
	t.Helper()
	p := &peer{name: filepath.Base(bin), done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", p.name, p.tail())
		}
	})
	return p
}

// freePort picks a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// realAPIServer starts etcd and kube-apiserver (from make artifacts) on
// loopback and returns an admin client.
func realAPIServer(t *testing.T) kubernetes.Interface {
	t.Helper()
	arts, err := filepath.Abs("../../.cache/artifacts")
	if err != nil {
		t.Fatal(err)
	}
	etcdBin, apiBin := filepath.Join(arts, artifacts.DefaultName("etcd")), filepath.Join(arts, artifacts.DefaultName("kube-apiserver"))
	testenv.RequireFile(t, "run make artifacts", etcdBin, apiBin)
	dir := t.TempDir()
	store := &pki.Store{Dir: filepath.Join(dir, "pki")}
	ca, err := store.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	serving, _, err := store.Leaf(ca, pki.KubernetesCA, "apiserver", pki.Request{CommonName: "kube-apiserver",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.Server})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := store.EnsureAdmin()
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(saKey)
	pder, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	files := map[string][]byte{
		"ca.crt": ca.CertPEM, "apiserver.crt": serving.CertPEM, "apiserver.key": serving.KeyPEM,
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}),
	}
	for n, b := range files {
		writeTestFile(t, filepath.Join(dir, n), b)
	}
	client, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcd := startPeer(t, etcdBin, "--name=addons", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=addons="+peerURL, "--log-level=warn")
	api := startPeer(t, apiBin, "--etcd-servers="+etcdURL, "--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort), "--advertise-address=198.18.127.1",
		"--service-cluster-ip-range=198.19.96.0/20",
		"--client-ca-file="+filepath.Join(dir, "ca.crt"),
		"--tls-cert-file="+filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(dir, "apiserver.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--authorization-mode=Node,RBAC", "--cert-dir="+filepath.Join(dir, "certs"), "--profiling=false")
	kc, err := kubeconfig.Render(kubeconfig.Config{Cluster: "addons", User: "admin",
		Server: fmt.Sprintf("https://127.0.0.1:%d", apiPort), CA: ca.CertPEM, CertPEM: admin.CertPEM, KeyPEM: admin.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := kubeconfig.REST(kc)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 10 * time.Second
	rc.QPS, rc.Burst = 50, 100 // as the engine's clients
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	last := ""
	for {
		for _, p := range []*peer{etcd, api} {
			select {
			case <-p.done:
				t.Fatalf("%s exited:\n%s", p.name, p.tail())
			default:
			}
		}
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(b) == "ok" {
			break
		}
		last = fmt.Sprint(string(b), err)
		select {
		case <-ctx.Done():
			t.Fatalf("kube-apiserver not ready within 2m: %s", last)
		case <-time.After(300 * time.Millisecond):
		}
	}
	// kube-system exists once the apiserver's own controllers ran.
	for {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no kube-system namespace")
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("etcd and kube-apiserver ready in %v", time.Since(start).Round(time.Millisecond))
	return cs
}

// TestAgainstRealAPIServer applies the add-ons to a real kube-apiserver
// (server-side apply, defaulting, validation, admission, the eviction API
// and PodDisruptionBudgets), re-applies with no change, repairs out-of-band
// edits, takes over objects of the hash-annotation version, and drains a
// Node.
func TestAgainstRealAPIServer(t *testing.T) {
	cs := realAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := options(t)
	o.FRU = map[string]FRU{"w1": {Serial: "SN-4711", Model: "R650"}}
	for _, n := range []string{"cp1", "w1", "cp2", "cp3"} {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first apply in %v: %d changes", time.Since(start).Round(time.Millisecond), len(changed))
	if len(changed) != 7+4+2 { // 7 objects, 4 nodes labelled, cp1 and cp3 tainted
		t.Errorf("first apply made %d changes: %q", len(changed), changed)
	}
	svc, err := cs.CoreV1().Services(Namespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != o.IPs.ClusterDNSIP.String() {
		t.Errorf("kube-dns at %s, want %s", svc.Spec.ClusterIP, o.IPs.ClusterDNSIP)
	}
	w1, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w1.Labels[LabelSerial] != "SN-4711" || w1.Labels[LabelZone] != "dc1" || w1.Labels[LabelRack] != "dc1-r01" {
		t.Errorf("w1 labels %v", w1.Labels)
	}

	// The server defaulted every object; re-applying still changes nothing.
	checkQuietApply(t, ctx, cs, o, "the first against the real API")
	// An edit of the objects' spec by tricenter (more replicas) updates
	// the Deployment only, and the server accepts the update.
	o.CoreDNSReplicas = 3
	more, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(more, []string{"updated Deployment kube-system/coredns"}) {
		t.Errorf("replica change made %q", more)
	}
	checkRealDriftRepair(t, ctx, cs, o)
	checkRealTakeover(t, ctx, cs, o)

	// Drain: a budget that allows no disruption holds the pod; once it
	// is gone the drain evicts, skips the DaemonSet pod and deletes the Node.
	ctl := true
	mk := func(name, owner string, labels map[string]string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
			Spec: corev1.PodSpec{NodeName: "w1", Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10.2"}}}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: owner, Name: name + "-owner",
				UID: "00000000-0000-0000-0000-000000000001", Controller: &ctl}}
		}
		got, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Running, as a kubelet would report it: the eviction API ignores
		// budgets for Pending pods.
		got.Status.Phase = corev1.PodRunning
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// (no controller-manager here to create the default ServiceAccount)
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mk("web", "ReplicaSet", map[string]string{"app": "web"})
	mk("agent", "DaemonSet", nil)
	zero := intstr.FromInt32(0)
	if _, err := cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = DrainAndDelete(ctx, cs, "w1", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "default/web (a PodDisruptionBudget refuses the eviction)") {
		t.Fatalf("drain held by a budget: %v", err)
	}
	if n, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{}); err != nil || !n.Spec.Unschedulable {
		t.Fatalf("w1 after a held drain: %v (cordoned: %v)", err, err == nil && n.Spec.Unschedulable)
	}
	if err := cs.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := DrainAndDelete(ctx, cs, "w1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, "w1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Node w1 not deleted: %v", err)
	}
	web, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
	if err == nil && web.DeletionTimestamp == nil {
		t.Error("pod web was not evicted")
	}
	agent, err := cs.CoreV1().Pods("default").Get(ctx, "agent", metav1.GetOptions{})
	if err != nil || agent.DeletionTimestamp != nil {
		t.Errorf("DaemonSet pod was evicted: %v", err)
	}
}

// checkRealDriftRepair edits what tricenter applied the way an operator
// would with kubectl (scale to 0 through the scale subresource, edit the
// Corefile and the ClusterRole, overwrite and remove Node labels); the
// next apply puts tricenter's fields back and names exactly those objects,
// leaves the fields others added, and the apply after it writes nothing.
func checkRealDriftRepair(t *testing.T, ctx context.Context, cs kubernetes.Interface, o Options) {
	t.Helper()
	driftOutOfBand(t, ctx, cs, func() error {
		deployments := cs.AppsV1().Deployments(Namespace)
		sc, err := deployments.GetScale(ctx, CoreDNSName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = 0
		_, err = deployments.UpdateScale(ctx, CoreDNSName, sc, metav1.UpdateOptions{FieldManager: "kubectl"})
		return err
	})
	checkDriftRepaired(t, ctx, cs, o)
	checkQuietApply(t, ctx, cs, o, "the repair")
}

// checkRealTakeover: a ServiceAccount as the hash-annotation version of
// tricenter created it is taken over by server-side apply (its annotation
// removed, tricenter's update entry gone), then left alone.
func checkRealTakeover(t *testing.T, ctx context.Context, cs kubernetes.Interface, o Options) {
	t.Helper()
	sas := cs.CoreV1().ServiceAccounts(Namespace)
	if err := sas.Delete(ctx, CoreDNSName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	old := &corev1.ServiceAccount{ObjectMeta: preSSAMeta()}
	if _, err := sas.Create(ctx, old, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		t.Fatal(err)
	}
	changed, err := Apply(ctx, cs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(changed, []string{"updated ServiceAccount kube-system/coredns"}) {
		t.Errorf("taking over the ServiceAccount reported %q", changed)
	}
	sa, err := sas.Get(ctx, CoreDNSName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkTakenOver(t, sa)
	checkQuietApply(t, ctx, cs, o, "the takeover")
}
