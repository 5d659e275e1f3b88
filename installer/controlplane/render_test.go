package controlplane

import (
	"slices"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	goldenfile "github.com/tricenter/terraform-provider-tricenter/internal/golden"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// golden compares got with testdata/name (go test -update rewrites it).
func golden(t *testing.T, name string, got []byte) { t.Helper(); goldenfile.Check(t, name, got) }

var testSettings = Settings{
	ClusterName:   "lab",
	ServiceCIDR:   "198.19.96.0/20",
	ClusterDomain: "cluster.local",
	EtcdServers:   []string{"https://198.19.1.10:2379", "https://198.19.2.10:2379", "https://198.19.3.10:2379"},
	PodSecurity:   PodSecurityFor(&inventory.Cluster{}),
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
		"enable-admission-plugins":        "NodeRestriction,PodSecurity",
		"kubelet-preferred-address-types": "InternalIP",
		"kubelet-certificate-authority":   CACert,
		"requestheader-client-ca-file":    FrontProxyCACert,
		"etcd-cafile":                     EtcdCACert,
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("--%s=%q, want %q", k, f[k], v)
		}
	}
	// --anonymous-auth conflicts with the anonymous block of the
	// authentication configuration: kube-apiserver refuses both.
	if v, ok := f["anonymous-auth"]; ok {
		t.Errorf("--anonymous-auth=%s is set next to --authentication-config", v)
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
		"controllers": "*,bootstrapsigner,tokencleaner", "cluster-signing-cert-file": CASignerCert,
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
	ring := testKeyring(t)
	files, err := hostFiles(testSettings, cp, ring, testServer)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	byPath := map[string]file{}
	for _, f := range files {
		paths = append(paths, f.path)
		byPath[f.path] = f
		isKey := strings.HasSuffix(f.path, ".key") || strings.HasSuffix(f.path, ".conf") || f.path == EncryptionConfig
		// The security configurations are 0600 (CIS 1.1.x), secret or not.
		private := isKey || strings.HasSuffix(f.path, ".yaml")
		if isKey != f.secret || (private && f.mode != 0o600) || (!private && f.mode != 0o644) {
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
		AuditPolicy:                         {APIServer},
		AuthenticationConfig:                {APIServer},
		AdmissionConfig:                     {APIServer},
		EncryptionConfig:                    {APIServer},
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
	if !strings.Contains(string(byPath[EncryptionConfig].data), ring.Keys[0].Secret) {
		t.Error("the encryption configuration does not carry the state's key")
	}
	if _, err := hostFiles(testSettings, nil, ring, testServer); err == nil {
		t.Error("hostFiles without the PKI did not fail")
	}
	if _, err := hostFiles(testSettings, cp, nil, testServer); err == nil {
		t.Error("hostFiles without the encryption keys did not fail")
	}
}

// testKeyring is a real keyring, generated in a temporary store.
func testKeyring(t *testing.T) *encryption.Keyring {
	t.Helper()
	r, _, err := encryption.Ensure(&pki.Store{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
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

// TestSecurityFlags: every component serves TLS 1.2+ with the ECDHE/AEAD
// suites and no profiling; kube-apiserver reads the security
// configurations, logs audit events with rotation and does not extend
// service-account tokens.
func TestSecurityFlags(t *testing.T) {
	suites := strings.Join(TLSCipherSuites, ",")
	for _, c := range Components() {
		flags, err := Flags(c, testSettings, testServer.Address)
		if err != nil {
			t.Fatal(err)
		}
		f := flagMap(flags)
		for k, v := range map[string]string{"profiling": "false", "tls-min-version": "VersionTLS12", "tls-cipher-suites": suites} {
			if f[k] != v {
				t.Errorf("%s --%s=%q, want %q", c, k, f[k], v)
			}
		}
		for _, s := range strings.Split(f["tls-cipher-suites"], ",") {
			if !strings.HasPrefix(s, "TLS_ECDHE_") || !(strings.Contains(s, "_GCM_") || strings.Contains(s, "_CHACHA20_POLY1305")) {
				t.Errorf("%s serves %s: not ECDHE with AES-GCM or ChaCha20-Poly1305", c, s)
			}
		}
	}
	f := flagMap(APIServerFlags(testSettings, testServer.Address))
	for k, v := range map[string]string{
		"admission-control-config-file":               AdmissionConfig,
		"authentication-config":                       AuthenticationConfig,
		"audit-policy-file":                           AuditPolicy,
		"audit-log-path":                              "/var/log/kubernetes/audit/audit.log",
		"audit-log-maxage":                            "30",
		"audit-log-maxbackup":                         "10",
		"audit-log-maxsize":                           "100",
		"encryption-provider-config":                  EncryptionConfig,
		"encryption-provider-config-automatic-reload": "true",
		"service-account-extend-token-expiration":     "false",
		"enable-admission-plugins":                    "NodeRestriction,PodSecurity",
	} {
		if f[k] != v {
			t.Errorf("kube-apiserver --%s=%q, want %q", k, f[k], v)
		}
	}
	for _, p := range []string{AdmissionConfig, AuthenticationConfig, AuditPolicy, EncryptionConfig} {
		if !strings.HasPrefix(p, ConfDir+"/") {
			t.Errorf("%s is not under %s (Remove and the CIS file checks look there)", p, ConfDir)
		}
	}
}

func TestSecurityConfigsGolden(t *testing.T) {
	for name, render := range map[string]func() ([]byte, error){
		"audit-policy.yaml":          RenderAuditPolicy,
		"authentication-config.yaml": RenderAuthenticationConfig,
		"admission-config.yaml":      func() ([]byte, error) { return RenderAdmissionConfig(testSettings.PodSecurity) },
		"admission-config-custom.yaml": func() ([]byte, error) {
			return RenderAdmissionConfig(inventory.PodSecurity{Enforce: "restricted", Warn: "restricted", Audit: "baseline",
				ExemptNamespaces: []string{"monitoring", "kube-system", "monitoring"}})
		},
	} {
		b, err := render()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden(t, name, b)
	}
	if _, err := RenderAdmissionConfig(inventory.PodSecurity{Enforce: "strict", Warn: "restricted", Audit: "restricted"}); err == nil {
		t.Error("rendered an unknown Pod Security level")
	}
}

// TestAuditPolicyRules checks the policy's decisions by walking its rules
// as kube-apiserver does (first match wins) for the requests that matter.
func TestAuditPolicyRules(t *testing.T) {
	rules := auditRules()
	level := func(user string, groups []string, verb, group, resource, ns, url string) string {
		for _, r := range rules {
			if len(r.Users) > 0 && !slices.Contains(r.Users, user) {
				continue
			}
			if len(r.UserGroups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(r.UserGroups, g) }) {
				continue
			}
			if len(r.Verbs) > 0 && !slices.Contains(r.Verbs, verb) {
				continue
			}
			if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, ns) {
				continue
			}
			if url != "" {
				if len(r.Resources) > 0 {
					continue
				}
				if len(r.NonResourceURLs) > 0 && !slices.ContainsFunc(r.NonResourceURLs, func(p string) bool {
					return p == url || (strings.HasSuffix(p, "*") && strings.HasPrefix(url, strings.TrimSuffix(p, "*")))
				}) {
					continue
				}
				return r.Level
			}
			if len(r.NonResourceURLs) > 0 {
				continue
			}
			if len(r.Resources) > 0 && !slices.ContainsFunc(r.Resources, func(g auditGroup) bool {
				return g.Group == group && (len(g.Resources) == 0 || slices.Contains(g.Resources, resource))
			}) {
				continue
			}
			return r.Level
		}
		return "none matched"
	}
	admin, nodes := []string{"system:masters"}, []string{"system:nodes"}
	for _, c := range []struct {
		what                                 string
		user                                 string
		groups                               []string
		verb, group, resource, ns, url, want string
	}{
		{"secret read", "alice", admin, "get", "", "secrets", "default", "", auditMetadata},
		{"secret write", "alice", admin, "update", "", "secrets", "default", "", auditMetadata},
		{"configmap write", "alice", admin, "create", "", "configmaps", "default", "", auditMetadata},
		{"token request", "system:node:n1", nodes, "create", "", "serviceaccounts/token", "default", "", auditMetadata},
		{"token review", "system:kube-controller-manager", nil, "create", "authentication.k8s.io", "tokenreviews", "", "", auditMetadata},
		{"role binding", "alice", admin, "create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", auditRequestResponse},
		{"role change", "alice", admin, "patch", "rbac.authorization.k8s.io", "roles", "default", "", auditRequestResponse},
		{"role read", "alice", admin, "list", "rbac.authorization.k8s.io", "clusterroles", "", "", auditMetadata},
		{"exec", "alice", admin, "create", "", "pods/exec", "default", "", auditRequest},
		{"attach", "alice", admin, "create", "", "pods/attach", "default", "", auditRequest},
		{"port-forward", "alice", admin, "create", "", "pods/portforward", "default", "", auditRequest},
		{"pod create", "alice", admin, "create", "", "pods", "default", "", auditMetadata},
		{"readyz poll", "system:anonymous", []string{"system:unauthenticated"}, "get", "", "", "", "/readyz", auditNone},
		{"readyz detail", "system:anonymous", []string{"system:unauthenticated"}, "get", "", "", "", "/readyz/etcd", auditNone},
		{"metrics", "prometheus", nil, "get", "", "", "", "/metrics", auditMetadata},
		{"kube-proxy watch", "system:kube-proxy", nil, "watch", "discovery.k8s.io", "endpointslices", "", "", auditNone},
		{"kube-proxy writes", "system:kube-proxy", nil, "create", "", "events", "default", "", auditNone},
		{"node lease", "system:node:n1", nodes, "update", "coordination.k8s.io", "leases", "kube-node-lease", "", auditNone},
		{"node deletes a lease", "system:node:n1", nodes, "delete", "coordination.k8s.io", "leases", "kube-node-lease", "", auditMetadata},
		{"leader election", "system:kube-scheduler", nil, "update", "coordination.k8s.io", "leases", "kube-system", "", auditNone},
		{"someone else's lease", "alice", admin, "update", "coordination.k8s.io", "leases", "kube-system", "", auditMetadata},
		{"node reads its node", "system:node:n1", nodes, "get", "", "nodes", "", "", auditNone},
		{"node status patch", "system:node:n1", nodes, "patch", "", "nodes/status", "", "", auditMetadata},
		{"event delete", "alice", admin, "delete", "", "events", "default", "", auditMetadata},
		{"secret read by a node", "system:node:n1", nodes, "get", "", "secrets", "default", "", auditMetadata},
	} {
		if got := level(c.user, c.groups, c.verb, c.group, c.resource, c.ns, c.url); got != c.want {
			t.Errorf("%s: level %s, want %s", c.what, got, c.want)
		}
	}
}
