// Package kubetest starts a real Kubernetes control plane for integration
// tests: etcd and kube-apiserver, and on request kube-controller-manager
// running only the named controllers, all on loopback from the binaries
// make artifacts puts in .cache/artifacts at the repository root. No
// kubelet runs. Tests only: product code must not import it.
//
//	cs := kubetest.Start(t, kubetest.Options{Controllers: []string{"disruption"}})
//
// A missing binary ends the test through testenv (skipped, or failed under
// CI=true) with a message naming the files and "run make artifacts".
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
)

// DefaultServiceCIDR is the service network of the lab inventories
// (installer/sshtest, internal/invgen): kube-apiserver allocates Service
// cluster IPs from it unless Options.ServiceCIDR says otherwise.
const DefaultServiceCIDR = "198.19.96.0/20"

// readyTimeout bounds the start: etcd, kube-apiserver and its system
// namespaces.
const readyTimeout = 2 * time.Minute

// Options says what to start besides etcd and kube-apiserver.
type Options struct {
	// ServiceCIDR is kube-apiserver's --service-cluster-ip-range
	// (default DefaultServiceCIDR).
	ServiceCIDR string
	// Controllers, when not empty, starts kube-controller-manager with
	// only these controllers (its --controllers, e.g. "disruption") once
	// the API is ready. The test fails if it exits before the test ends.
	Controllers []string
	// ExtraArgs are more kube-apiserver flags, after the harness's own
	// (e.g. --encryption-provider-config=FILE).
	ExtraArgs []string
	// PKI is the store the cluster CA and the client certificates come
	// from (default: a new one in the test's temporary directory); a test
	// that signs client certificates of its own passes one.
	PKI *pki.Store
}

// Start starts etcd and kube-apiserver (and kube-controller-manager when
// o.Controllers is set) on free loopback ports, waits until the API is
// ready and its system namespaces (kube-system, kube-node-lease) exist,
// and returns an admin client (10s request timeout, QPS 50, burst 100, as
// the engine's clients). Every process is killed when the test ends; on
// failure the test log gets each one's output tail.
func Start(t testing.TB, o Options) kubernetes.Interface {
	t.Helper()
	return StartCluster(t, o).Client
}

// Cluster is what StartCluster started.
type Cluster struct {
	// Client is an admin client (see Start).
	Client kubernetes.Interface
	// EtcdURL is the etcd client URL kube-apiserver stores into (plain
	// http on loopback), for tests that read what the API wrote.
	EtcdURL string
}

// StartCluster is Start, also returning the etcd client URL.
func StartCluster(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = DefaultServiceCIDR
	}
	arts := artifactDir(t)
	etcdBin := filepath.Join(arts, artifacts.DefaultName("etcd"))
	apiBin := filepath.Join(arts, artifacts.DefaultName("kube-apiserver"))
	kcmBin := filepath.Join(arts, artifacts.DefaultName("kube-controller-manager"))
	bins := []string{etcdBin, apiBin}
	if len(o.Controllers) > 0 {
		bins = append(bins, kcmBin)
	}
	testenv.RequireFile(t, "run make artifacts", bins...)

	dir := t.TempDir()
	apiPort := freePort(t)
	if o.PKI == nil {
		o.PKI = &pki.Store{Dir: filepath.Join(dir, "pki")}
	}
	kc := writePKI(t, o.PKI, dir, apiPort)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	etcd := startProcess(t, etcdBin, "--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL, "--log-level=warn")
	api := startProcess(t, apiBin, append([]string{"--etcd-servers=" + etcdURL, "--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort), "--advertise-address=198.18.127.1",
		"--service-cluster-ip-range=" + o.ServiceCIDR,
		"--client-ca-file=" + filepath.Join(dir, "ca.crt"),
		"--tls-cert-file=" + filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file=" + filepath.Join(dir, "apiserver.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--authorization-mode=Node,RBAC", "--cert-dir=" + filepath.Join(dir, "certs"), "--profiling=false"}, o.ExtraArgs...)...)
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

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	start := time.Now()
	procs := []*process{etcd, api}
	waitFor(t, ctx, "kube-apiserver ready", procs, func() (bool, string) {
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok", fmt.Sprint(string(b), err)
	})
	// The apiserver's own controllers create the system namespaces.
	for _, ns := range []string{metav1.NamespaceSystem, corev1.NamespaceNodeLease} {
		waitFor(t, ctx, "namespace "+ns, procs, func() (bool, string) {
			_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
	}
	if len(o.Controllers) == 0 {
		t.Logf("etcd and kube-apiserver ready in %v", time.Since(start).Round(time.Millisecond))
		return &Cluster{Client: cs, EtcdURL: etcdURL}
	}
	kcm := startProcess(t, kcmBin, "--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--controllers="+strings.Join(o.Controllers, ","), "--leader-elect=false", "--secure-port=0", "--profiling=false")
	t.Logf("etcd and kube-apiserver ready in %v; kube-controller-manager started (controllers %s)",
		time.Since(start).Round(time.Millisecond), strings.Join(o.Controllers, ","))
	// Registered after startProcess's cleanup, so it runs before the kill.
	t.Cleanup(func() {
		if kcm.exited() {
			t.Errorf("kube-controller-manager exited early:\n%s", kcm.tail())
		}
	})
	return &Cluster{Client: cs, EtcdURL: etcdURL}
}

// writePKI writes into dir the cluster CA of store (ca.crt), kube-apiserver's
// serving pair for 127.0.0.1 (apiserver.crt, .key), the service-account
// key pair (sa.key, sa.pub) and a system:masters kubeconfig for the API on
// apiPort (kubeconfig), which it also returns.
func writePKI(t testing.TB, store *pki.Store, dir string, apiPort int) []byte {
	t.Helper()
	ca, err := store.CA(pki.KubernetesCA, pki.KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	serving, _, err := store.Leaf(ca, pki.KubernetesCA, "apiserver", pki.Request{CommonName: "kube-apiserver",
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.Server})
	if err != nil {
		t.Fatal(err)
	}
	// The break-glass certificate (system:masters): the harness's client
	// needs no binding.
	admin, err := store.EnsureBreakGlass()
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubeconfig.Render(kubeconfig.Config{Cluster: "kubetest", User: "admin",
		Server: fmt.Sprintf("https://127.0.0.1:%d", apiPort), CA: ca.CertPEM, CertPEM: admin.CertPEM, KeyPEM: admin.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	for n, b := range map[string][]byte{
		"ca.crt": ca.CertPEM, "apiserver.crt": serving.CertPEM, "apiserver.key": serving.KeyPEM,
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}),
		"kubeconfig": kc,
	} {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return kc
}

// waitFor polls ok every 200ms until it returns true, failing the test
// when one of procs exits (with its output tail) or ctx ends (with what
// and ok's last word).
func waitFor(t testing.TB, ctx context.Context, what string, procs []*process, ok func() (bool, string)) {
	t.Helper()
	for {
		for _, p := range procs {
			if p.exited() {
				t.Fatalf("%s exited:\n%s", p.name, p.tail())
			}
		}
		done, last := ok()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s within %s: %s", what, readyTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
