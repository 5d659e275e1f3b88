package controlplane

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/internal/testenv"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Addresses of the smoke test's namespace (on its loopback only): the
// server's address and the API VIP, as the BGP agent would put it on lo.
var (
	smokeAddr = netip.MustParseAddr("198.18.119.10")
	smokeVIP  = netip.MustParseAddr("198.18.119.100")
)

// proc is a real peer started by the test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (p *proc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.log.String()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return s
}

// startProc starts a program in the namespace and stops it (kill, wait)
// when the test ends.
func startProc(t *testing.T, ns *labnet.NS, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(name), log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	p.cmd = ns.Command(context.Background(), name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	w := lockedWriter{p.mu, p.log}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", p.name, p.tail())
		}
	})
	return p
}

// TestSmokeRealControlPlane runs the real kube-apiserver,
// kube-controller-manager and kube-scheduler (from make artifacts) against
// a real etcd, all in a network namespace of their own, with the flags,
// certificates, kubeconfigs and security configurations this package
// renders (only /etc/kubernetes and the audit log directory are moved to a
// temporary directory), once per supported release in the artifacts (the
// lab installs the older one and upgrades to the newer). It waits with the
// phase's own ready checks, then asserts /readyz through the server address
// and the VIP (anonymously too), leader leases, the kubernetes Service
// endpoint, a service-account token from the issuer we configured, and the
// security defaults (checkSecurity). About 20 s per release here once the
// binaries are in the page cache.
func TestSmokeRealControlPlane(t *testing.T) {
	testenv.RequireRoot(t, "the control plane runs in a network namespace of its own")
	testenv.Need(t, labnet.Available())
	arts, err := filepath.Abs("../../.cache/artifacts")
	if err != nil {
		t.Fatal(err)
	}
	testenv.RequireFile(t, "run make artifacts", filepath.Join(arts, artifacts.DefaultName(APIServer)))
	var releases []string
	for _, minor := range inventory.SupportedKubernetesMinors {
		found, _ := filepath.Glob(filepath.Join(arts, APIServer+"-v"+minor+".*"))
		slices.Sort(found)
		if len(found) > 0 {
			releases = append(releases, strings.TrimPrefix(filepath.Base(found[len(found)-1]), APIServer+"-"))
		}
	}
	for _, release := range releases {
		t.Run(release, func(t *testing.T) { smokeControlPlane(t, arts, release) })
	}
}

func smokeControlPlane(t *testing.T, arts, release string) {
	bins := map[string]string{}
	var paths []string
	for _, b := range Binaries() {
		bins[b] = filepath.Join(arts, artifacts.Versioned(b, release))
		paths = append(paths, bins[b])
	}
	for _, b := range artifacts.EtcdBinaries {
		bins[b] = filepath.Join(arts, artifacts.DefaultName(b))
		paths = append(paths, bins[b])
	}
	testenv.RequireFile(t, "run make artifacts", paths...)
	testenv.RequireBinary(t, "curl")

	lab, err := labnet.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	ns, err := lab.Namespace("cp")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{smokeAddr, smokeVIP} {
		if err := ns.IP("addr", "add", a.String()+"/32", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	server := inventory.Member{Name: "smoke-cp", Site: "site-a", Center: "dc1", Rack: "dc1-r01", Address: smokeAddr.String()}

	// etcd as installer/etcd configures it, paths moved into dir.
	store := &pki.Store{Dir: filepath.Join(dir, "store")}
	e, err := store.EnsureEtcd([]pki.EtcdMember{{Name: server.Name, Address: server.Address}})
	if err != nil {
		t.Fatal(err)
	}
	etcdPKI := filepath.Join(dir, "etcd-pki")
	for name, data := range map[string][]byte{
		"ca.crt": e.CA.CertPEM, "peer-ca.crt": e.PeerCA.CertPEM, "peer.crt": e.Peer[server.Name].CertPEM, "peer.key": e.Peer[server.Name].KeyPEM,
		"server.crt": e.Server[server.Name].CertPEM, "server.key": e.Server[server.Name].KeyPEM,
	} {
		writeFile(t, filepath.Join(etcdPKI, name), data, 0o600)
	}
	es := etcd.Settings{ClusterName: "smoke", Timers: inventory.Timers{HeartbeatMs: 100, ElectionTimeoutMs: 1000}}
	moveEtcd := strings.NewReplacer(etcd.PKIDir, etcdPKI, etcd.DataDir, filepath.Join(dir, "etcd-data"))
	var env []string
	for _, b := range [][]byte{etcd.RenderEnv(es, server),
		etcd.RenderBootstrap(es, []etcd.InitialMember{{Name: server.Name, PeerURL: etcd.PeerURL(server.Address)}}, false)} {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "ETCD_") {
				env = append(env, moveEtcd.Replace(l))
			}
		}
	}
	startProc(t, ns, env, bins["etcd"])

	// The control plane, from this package's renderings.
	c := &inventory.Cluster{}
	c.Metadata.Name = "smoke"
	c.Spec.Network = inventory.Network{ServiceCIDR: "198.19.96.0/20", PodCIDR: "198.19.128.0/17", ClusterDomain: "cluster.local"}
	p := &inventory.Placement{ControlPlane: []inventory.Member{server}}
	p.Etcd.Members = []inventory.Member{server}
	ips := &inventory.IPPlan{KubernetesServiceIP: netip.MustParseAddr("198.19.96.1"), APIVIP: smokeVIP}
	r, err := newRun(Options{Cluster: c, Placement: p, IPs: ips, PKI: store, Binaries: bins, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkEtcdClient(store); err != nil {
		t.Fatal(err)
	}
	if err := r.certificates(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, err := hostFiles(r.settings, r.pki, r.ring, server)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		writeFile(t, r.path(f.path), f.data, f.mode)
	}
	if err := os.MkdirAll(r.path(BinDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bins[Kubectl], r.path(BinDir+"/"+Kubectl)); err != nil {
		t.Fatal(err)
	}
	// The configuration phase creates the audit log directory 0700.
	if err := os.MkdirAll(r.path(AuditLogDir), 0o700); err != nil {
		t.Fatal(err)
	}
	move := strings.NewReplacer(ConfDir, r.path(ConfDir), AuditLogDir, r.path(AuditLogDir))
	procs := map[string]*proc{}
	for _, comp := range Components() {
		flags, err := Flags(comp, r.settings, server.Address)
		if err != nil {
			t.Fatal(err)
		}
		for i := range flags {
			flags[i] = move.Replace(flags[i])
		}
		procs[comp] = startProc(t, ns, nil, bins[comp], flags...)
	}

	sh := func(ctx context.Context, cmd string) (string, error) {
		var stderr bytes.Buffer
		c := ns.Command(ctx, "sh", "-c", cmd)
		c.Stderr = &stderr
		out, err := c.Output()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The start phase's ready checks, but for the one on systemd units.
	start := time.Now()
	for _, rc := range r.readyChecks() {
		if rc.name == "units active" {
			continue
		}
		poll(t, ctx, rc.name, func() (bool, string) {
			for comp, pr := range procs {
				select {
				case <-pr.done:
					t.Fatalf("%s exited: %s", comp, pr.tail())
				default:
				}
			}
			out, err := sh(ctx, rc.cmd)
			return err == nil && out == "ok", fmt.Sprint(out, err)
		})
	}
	t.Logf("control plane ready in %v", time.Since(start).Round(time.Millisecond))

	admin, err := store.EnsureBreakGlass()
	if err != nil {
		t.Fatal(err)
	}
	adminConf, err := Kubeconfig(r.settings, pki.AdminUser, r.pki.CA.CertPEM, admin.CertPEM, admin.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin.conf")
	writeFile(t, adminPath, adminConf, 0o600)
	kubectl := bins[Kubectl] + " --kubeconfig=" + adminPath + " "

	// /readyz through the server address and the VIP (TLS verified: the
	// certificate names both), and anonymously.
	for _, cmd := range []string{
		kubectl + "--server=https://" + smokeAddr.String() + ":6443 get --raw=/readyz",
		kubectl + "--server=https://" + smokeVIP.String() + ":6443 get --raw=/readyz",
		"curl -sS --cacert " + r.path(CACert) + " https://" + smokeVIP.String() + ":6443/readyz",
	} {
		if out, err := sh(ctx, cmd); err != nil || out != "ok" {
			t.Errorf("%s: %q, %v", cmd, out, err)
		}
	}
	// Leader election: both leases held by this server.
	poll(t, ctx, "leader leases", func() (bool, string) {
		out, err := sh(ctx, kubectl+"-n kube-system get lease kube-controller-manager kube-scheduler -o jsonpath='{.items[*].spec.holderIdentity}'")
		holders := strings.Fields(out)
		return err == nil && len(holders) == 2, fmt.Sprint(out, err)
	})
	// The kubernetes Service points at the advertised address.
	poll(t, ctx, "kubernetes endpoints", func() (bool, string) {
		out, err := sh(ctx, kubectl+"get endpointslice -l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}:{.items[0].ports[0].port}'")
		return err == nil && out == smokeAddr.String()+":6443", fmt.Sprint(out, err)
	})
	// Service-account tokens: the controller-manager created the default
	// ServiceAccount; the apiserver signs with our key and issuer.
	var token string
	poll(t, ctx, "service-account token", func() (bool, string) {
		out, err := sh(ctx, kubectl+"-n default create token default")
		token = out
		return err == nil && strings.Count(out, ".") == 2, fmt.Sprint(err)
	})
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss != "https://kubernetes.default.svc.cluster.local" {
		t.Errorf("token issuer %q", claims.Iss)
	}
	// The token authenticates as the ServiceAccount.
	// (in a file, not on a command line)
	tokenConf := filepath.Join(dir, "token.conf")
	writeFile(t, tokenConf, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: smoke, cluster: {server: "https://%s:6443", certificate-authority: %q}}]
users: [{name: sa, user: {token: %q}}]
contexts: [{name: sa, context: {cluster: smoke, user: sa}}]
current-context: sa
`, smokeAddr, r.path(CACert), token)), 0o600)
	out, err := sh(ctx, bins[Kubectl]+" --kubeconfig="+tokenConf+" auth whoami -o jsonpath='{.status.userInfo.username}'")
	if err != nil || out != "system:serviceaccount:default:default" {
		t.Errorf("whoami with the token: %q, %v", out, err)
	}

	checkSecurity(t, ctx, smokeEnv{ns: ns, r: r, kubectl: kubectl, etcdctl: bins["etcdctl"], etcdPKI: etcdPKI,
		address: smokeAddr, adminCert: admin})
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// poll calls check every half second until it reports true or ctx ends.
func poll(t *testing.T, ctx context.Context, what string, check func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, out := check()
		if ok {
			return
		}
		last = out
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached before the deadline: %s", what, fmt.Sprint(last))
		case <-tick.C:
		}
	}
}
