package controlplane

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file (go test -update to accept):\n%s", name, got)
	}
}

var testSettings = Settings{
	ClusterName:   "lab",
	ServiceCIDR:   "198.19.96.0/20",
	ClusterDomain: "cluster.local",
	EtcdServers:   []string{"https://198.19.1.10:2379", "https://198.19.2.10:2379", "https://198.19.3.10:2379"},
}

var testServer = inventory.Member{Name: "dc1-r01-s01", Site: "site-a", Center: "dc1", Rack: "dc1-r01", Address: "198.19.1.10"}

// Fixed placeholders instead of real keys, so the goldens are stable.
var (
	fakeCA   = []byte("-----BEGIN CERTIFICATE-----\nVEVTVCBDQQ==\n-----END CERTIFICATE-----\n")
	fakeCert = []byte("-----BEGIN CERTIFICATE-----\nVEVTVCBDRVJU\n-----END CERTIFICATE-----\n")
	fakeKey  = []byte("-----BEGIN EC PRIVATE KEY-----\nVEVTVCBLRVk=\n-----END EC PRIVATE KEY-----\n")
)

func TestUnitsGolden(t *testing.T) {
	for _, c := range Components() {
		flags, err := Flags(c, testSettings, testServer.Address)
		if err != nil {
			t.Fatal(err)
		}
		unit, err := RenderUnit(c, flags)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, UnitName(c), unit)
	}
}

func TestKubeconfigsGolden(t *testing.T) {
	for file, user := range map[string]string{
		"controller-manager.conf": pki.ControllerManagerUser,
		"scheduler.conf":          pki.SchedulerUser,
	} {
		b, err := Kubeconfig(testSettings, user, fakeCA, fakeCert, fakeKey)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, file, b)
		rc, err := kubeconfig.REST(b)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if rc.Host != "https://127.0.0.1:6443" || string(rc.CAData) != string(fakeCA) ||
			string(rc.CertData) != string(fakeCert) || string(rc.KeyData) != string(fakeKey) {
			t.Errorf("%s: server %s or credentials are not the ones given", file, rc.Host)
		}
	}
}

func flagMap(flags []string) map[string]string {
	m := map[string]string{}
	for _, f := range flags {
		k, v, _ := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		m[k] = v
	}
	return m
}

func TestEtcdServersFor(t *testing.T) {
	if got := strings.Join(EtcdServersFor(testSettings, "198.19.3.10"), ","); got != "https://198.19.3.10:2379" {
		t.Errorf("stacked server: %s, want its own member only", got)
	}
	if got := strings.Join(EtcdServersFor(testSettings, "198.19.9.10"), ","); got != strings.Join(testSettings.EtcdServers, ",") {
		t.Errorf("control-plane server without etcd: %s, want every member", got)
	}
}

func TestAPIServerFlags(t *testing.T) {
	f := flagMap(APIServerFlags(testSettings, "198.19.2.10"))
	want := map[string]string{
		"advertise-address":               "198.19.2.10",
		"bind-address":                    "0.0.0.0",
		"secure-port":                     "6443",
		"etcd-servers":                    "https://198.19.2.10:2379",
		"service-cluster-ip-range":        "198.19.96.0/20",
		"service-account-issuer":          "https://kubernetes.default.svc.cluster.local",
		"authorization-mode":              "Node,RBAC",
		"enable-admission-plugins":        "NodeRestriction",
		"kubelet-preferred-address-types": "InternalIP",
		"kubelet-certificate-authority":   CACert,
		"anonymous-auth":                  "true",
		"requestheader-client-ca-file":    FrontProxyCACert,
		"etcd-cafile":                     EtcdCACert,
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("--%s=%q, want %q", k, f[k], v)
		}
	}
	for _, k := range []string{"etcd-certfile", "etcd-keyfile", "kubelet-client-certificate", "kubelet-client-key",
		"proxy-client-cert-file", "proxy-client-key-file", "service-account-key-file", "service-account-signing-key-file",
		"tls-cert-file", "tls-private-key-file", "client-ca-file"} {
		if !strings.HasPrefix(f[k], PKIDir+"/") {
			t.Errorf("--%s=%q is not a file under %s", k, f[k], PKIDir)
		}
	}
}

func TestControllerManagerAndSchedulerFlags(t *testing.T) {
	kcm := flagMap(ControllerManagerFlags(testSettings))
	for k, v := range map[string]string{
		"leader-elect": "true", "allocate-node-cidrs": "false", "use-service-account-credentials": "true",
		"controllers": "*,bootstrapsigner,tokencleaner", "cluster-signing-cert-file": CACert,
		"cluster-signing-key-file": CAKey, "root-ca-file": CACert, "service-account-private-key-file": ServiceAccountKey,
		"kubeconfig": ControllerManagerConf, "secure-port": "10257", "cluster-name": "lab",
	} {
		if kcm[k] != v {
			t.Errorf("controller-manager --%s=%q, want %q", k, kcm[k], v)
		}
	}
	s := flagMap(SchedulerFlags())
	for k, v := range map[string]string{"leader-elect": "true", "kubeconfig": SchedulerConf, "secure-port": "10259"} {
		if s[k] != v {
			t.Errorf("scheduler --%s=%q, want %q", k, s[k], v)
		}
	}
}

func TestRenderUnitRejectsUnsafeFlags(t *testing.T) {
	for _, f := range []string{"", "--cluster-name=a b", "--x=%h", "--x=$HOME", "--x=\"q\"", "--x=a;b", "--x=a\\b"} {
		if _, err := RenderUnit(Scheduler, []string{f}); err == nil {
			t.Errorf("flag %q accepted", f)
		}
	}
	if _, err := RenderUnit("kubelet", nil); err == nil {
		t.Error("unknown component accepted")
	}
}

func TestHostFilesAndReaders(t *testing.T) {
	cp := testPKI(t)
	files, err := hostFiles(testSettings, cp, testServer)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	byPath := map[string]file{}
	for _, f := range files {
		paths = append(paths, f.path)
		byPath[f.path] = f
		isKey := strings.HasSuffix(f.path, ".key") || strings.HasSuffix(f.path, ".conf")
		if isKey != f.secret || (isKey && f.mode != 0o600) || (!isKey && f.mode != 0o644) {
			t.Errorf("%s: secret %v mode %o", f.path, f.secret, f.mode)
		}
		if len(f.readers) == 0 {
			t.Errorf("%s restarts no component when it changes", f.path)
		}
	}
	if !slices.Equal(paths, managedFiles()) {
		t.Errorf("written files %v differ from the queried ones %v", paths, managedFiles())
	}
	for path, want := range map[string][]string{
		CAKey:                               {ControllerManager},
		ServiceAccountKey:                   {APIServer, ControllerManager},
		SchedulerConf:                       {Scheduler},
		APIServerCert:                       {APIServer},
		UnitDir + "/kube-scheduler.service": {Scheduler},
	} {
		if got := byPath[path].readers; !slices.Equal(got, want) {
			t.Errorf("%s restarts %v, want %v", path, got, want)
		}
	}
	if string(byPath[CAKey].data) != string(cp.CA.KeyPEM) || string(byPath[EtcdClientCert].data) != string(cp.EtcdClient.CertPEM) {
		t.Error("files do not carry the store's keys and certificates")
	}
	rc, err := kubeconfig.REST(byPath[ControllerManagerConf].data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(rc.CertData)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != pki.ControllerManagerUser {
		t.Errorf("controller-manager.conf authenticates as %s", c.Subject.CommonName)
	}
	if _, err := hostFiles(testSettings, nil, testServer); err == nil {
		t.Error("hostFiles without the PKI did not fail")
	}
}

// testPKI is a real control-plane PKI in a temporary store.
func testPKI(t *testing.T) *pki.ControlPlane {
	t.Helper()
	s := &pki.Store{Dir: t.TempDir()}
	return ensurePKI(t, s, []inventory.Member{testServer})
}

func ensurePKI(t *testing.T, s *pki.Store, servers []inventory.Member) *pki.ControlPlane {
	t.Helper()
	var members []pki.EtcdMember
	req := pki.ControlPlaneRequest{ClusterDomain: "cluster.local"}
	for _, m := range servers {
		members = append(members, pki.EtcdMember{Name: m.Name, Address: m.Address})
		req.Servers = append(req.Servers, pki.ControlPlaneServer{Name: m.Name, Address: m.Address})
	}
	if _, err := s.EnsureEtcd(members); err != nil {
		t.Fatal(err)
	}
	plan := testIPs()
	req.ServiceIP, req.APIVIP = plan.KubernetesServiceIP, plan.APIVIP
	cp, err := s.EnsureControlPlane(req)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}
