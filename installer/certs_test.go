package installer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// renewEngine is an engine over the three-center example with every leaf
// an apply issues in its (memory) state, issued at *now; it touches no
// host.
func renewEngine(t *testing.T, now *time.Time) *Engine {
	t.Helper()
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.PKI = inventory.PKI{RenewBefore: "5m", LeafLifetime: "12m"}
	m, err := state.NewMem(map[string]string{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: m, Clock: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	s := e.PKIStore()
	s.Now = func() time.Time { return *now }
	var members []pki.EtcdMember
	for _, mem := range e.Placement().Etcd.Members {
		members = append(members, pki.EtcdMember{Name: mem.Name, Address: mem.Address})
	}
	if _, err := s.EnsureEtcd(members); err != nil {
		t.Fatal(err)
	}
	var servers []pki.ControlPlaneServer
	for _, m := range e.Placement().ControlPlane {
		servers = append(servers, pki.ControlPlaneServer{Name: m.Name, Address: m.Address})
	}
	if _, err := s.EnsureControlPlane(pki.ControlPlaneRequest{Servers: servers,
		ServiceIP: netip.MustParseAddr("10.96.0.1"), ClusterDomain: "cluster.local"}); err != nil {
		t.Fatal(err)
	}
	for i, h := range c.Hosts() {
		if _, _, err := s.EnsureKubelet(h.Name, []net.IP{net.IPv4(198, 18, 9, byte(i+1))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EnsureKubeProxy(); err != nil {
		t.Fatal(err)
	}
	return e
}

func planKinds(p *RenewResult) map[string]int {
	out := map[string]int{}
	for _, c := range p.Certificates {
		out[c.Kind]++
	}
	return out
}

// TestPlanRenewalSelection: nothing selected is every leaf in use (no CA,
// no service-account key); --kind, --host and --due narrow it and
// combine; the components and restarts follow the certificates.
func TestPlanRenewalSelection(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	now := start
	e := renewEngine(t, &now)
	ctx := context.Background()
	hosts := hostNames(e.cfg.Cluster.Hosts())
	cp := e.Placement().ControlPlane
	members := e.Placement().Etcd.Members

	all, err := e.PlanRenewal(ctx, RenewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := planKinds(all)
	for _, c := range all.Certificates {
		if c.Cert.IsCA || c.Name == "ca" || c.Name == pki.ServiceAccountKey {
			t.Errorf("plan renews an authority or key: %s", c.File)
		}
	}
	if kinds[pki.KindKubeletServing] != len(hosts) || kinds[pki.KindEtcdPeer] != len(members) ||
		kinds[pki.KindAPIServerServing] != 1 || kinds[pki.KindKubeProxy] != 1 {
		t.Fatalf("all: kinds %v (hosts %d, members %d)", kinds, len(hosts), len(members))
	}
	if !slices.Equal(all.Components, []Component{Etcd, ControlPlane, Nodes}) {
		t.Fatalf("all: components %v", all.Components)
	}
	restarts := map[string][]string{}
	for _, r := range all.Restarts {
		restarts[string(r.Component)+" "+r.Unit] = r.Servers
	}
	if len(restarts["etcd "+etcd.Unit]) != len(members) || len(restarts["control-plane "+controlplane.UnitName(controlplane.APIServer)]) != len(cp) ||
		len(restarts["nodes "+node.KubeProxyUnit]) != len(hosts) {
		t.Fatalf("all: restarts %v", restarts)
	}
	if all.nodeServers() != nil {
		t.Fatalf("kube-proxy's certificate is shared: every server, got %v", all.nodeServers())
	}

	// --host: that server's own certificates only.
	w := hosts[len(hosts)-1]
	one, err := e.PlanRenewal(ctx, RenewOptions{Servers: []string{w}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range one.Certificates {
		if c.Server != w {
			t.Errorf("--host %s selected %s", w, c.File)
		}
	}
	if k := planKinds(one); k[pki.KindKubeletServing] != 1 || k[pki.KindKubeletClient] != 1 {
		t.Fatalf("--host %s: %v", w, k)
	}
	if !slices.Equal(one.nodeServers(), []string{w}) {
		t.Fatalf("--host %s: node servers %v", w, one.nodeServers())
	}

	// --kind combined with --host.
	ks, err := e.PlanRenewal(ctx, RenewOptions{Kinds: []string{pki.KindKubeletServing}, Servers: []string{w}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Certificates) != 1 || ks.Certificates[0].Name != pki.KubeletServingFile(w) ||
		!slices.Equal(ks.Components, []Component{Nodes}) || len(ks.Restarts) != 1 || ks.Restarts[0].Unit != node.KubeletUnit {
		t.Fatalf("--kind kubelet serving --host %s: %+v", w, ks)
	}

	// State-only kinds: nothing restarts.
	admin, err := e.PlanRenewal(ctx, RenewOptions{Kinds: []string{pki.KindEtcdClient}})
	if err != nil {
		t.Fatal(err)
	}
	var comps []Component
	for _, c := range admin.Certificates {
		comps = append(comps, c.Component)
	}
	if len(admin.Certificates) != 2 || !slices.Contains(comps, ControlPlane) || !slices.Contains(comps, "") {
		t.Fatalf("etcd client: %+v", admin.Certificates)
	}

	// --due: nothing within renewBefore (5m of 12m) yet; 8m in, all.
	now = start.Add(time.Minute)
	due, err := e.PlanRenewal(ctx, RenewOptions{Due: true})
	if err != nil || len(due.Certificates) != 0 || len(due.Restarts) != 0 {
		t.Fatalf("--due 1m in: %+v, %v", due, err)
	}
	now = start.Add(8 * time.Minute)
	due, err = e.PlanRenewal(ctx, RenewOptions{Due: true})
	if err != nil || len(due.Certificates) != len(all.Certificates) {
		t.Fatalf("--due 8m in: %d certificates, want %d (%v)", len(due.Certificates), len(all.Certificates), err)
	}

	// Unknown kinds and servers are refused, naming them.
	_, err = e.PlanRenewal(ctx, RenewOptions{Kinds: []string{"CA kubernetes"}, Servers: []string{"nope"}})
	if err == nil || !strings.Contains(err.Error(), `"CA kubernetes"`) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("bad selection: %v", err)
	}
}

// TestPlanRenewalResumes: an unfinished renewal in the state is part of
// the plan (its start kept), and what was issued since is marked
// renewed and restarts nothing; a finished one is not.
func TestPlanRenewalResumes(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	now := start
	e := renewEngine(t, &now)
	ctx := context.Background()
	s := e.PKIStore()
	s.Now = func() time.Time { return now }
	w := hostNames(e.cfg.Cluster.Hosts())[0]
	now = start.Add(time.Minute)
	ids := []string{pki.LeafID(pki.KubernetesCA, pki.KubeletServingFile(w)), pki.LeafID(pki.KubernetesCA, pki.KubeletClientFile(w))}
	if _, err := s.BeginRenewal(ids, now); err != nil {
		t.Fatal(err)
	}
	// The run stopped after the node's certificates were reissued.
	now = start.Add(2 * time.Minute)
	if _, _, err := s.EnsureKubelet(w, []net.IP{net.IPv4(198, 18, 9, 1)}); err != nil {
		t.Fatal(err)
	}
	// A new run selecting kube-proxy's certificate resumes it.
	p, err := e.PlanRenewal(ctx, RenewOptions{Kinds: []string{pki.KindKubeProxy}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Resumed || !p.Started.Equal(start.Add(time.Minute)) || len(p.Certificates) != 3 {
		t.Fatalf("resumed plan: resumed %v started %s, %d certificates", p.Resumed, p.Started, len(p.Certificates))
	}
	for _, c := range p.Certificates {
		if want := c.Kind != pki.KindKubeProxy; c.Renewed != want {
			t.Errorf("%s: renewed %v, want %v", c.File, c.Renewed, want)
		}
	}
	// The node's renewed certificates are still installed (a stopped run
	// may not have): kubelet on it, kube-proxy everywhere.
	if len(p.Restarts) != 2 || p.Restarts[0].Unit != node.KubeProxyUnit || p.Restarts[1].Unit != node.KubeletUnit ||
		!slices.Equal(p.Restarts[1].Servers, []string{w}) {
		t.Fatalf("restarts %+v, want kube-proxy and kubelet on %s", p.Restarts, w)
	}
	if err := s.FinishRenewal(now); err != nil {
		t.Fatal(err)
	}
	p, err = e.PlanRenewal(ctx, RenewOptions{Kinds: []string{pki.KindKubeProxy}})
	if err != nil || p.Resumed || len(p.Certificates) != 1 {
		t.Fatalf("after the renewal finished: %+v, %v", p, err)
	}
}

// TestPlanRenewalBeforeApply: no PKI, nothing to renew: ErrNoPKI.
func TestPlanRenewalBeforeApply(t *testing.T) {
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := state.NewMem(map[string]string{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Cluster: c, Lines: lines, Store: m})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PlanRenewal(context.Background(), RenewOptions{}); !errors.Is(err, ErrNoPKI) {
		t.Fatalf("empty state: %v, want ErrNoPKI", err)
	}
}

// TestAPIHoldsRestartsAPI: the VIP is held for kube-apiserver's restart
// on a control-plane server and for its etcd member's when stacked, for
// nothing else.
func TestAPIHoldsRestartsAPI(t *testing.T) {
	h := &apiHolds{cp: map[string]inventory.Member{"cp1": {Name: "cp1"}, "cp2": {Name: "cp2"}},
		stacked: map[string]bool{"cp1": true, "cp2": false}}
	for _, tc := range []struct {
		host, msg string
		want      bool
	}{
		{"cp1", "restart kube-apiserver.service", true},
		{"cp2", "restart kube-apiserver.service", true},
		{"cp1", "restart " + etcd.Unit, true},
		{"cp2", "restart " + etcd.Unit, false},
		{"cp1", "restart kube-scheduler.service", false},
		{"w1", "restart kube-apiserver.service", false},
		{"cp1", "restart " + node.KubeletUnit, false},
		{"cp1", "write /etc/kubernetes/pki/apiserver.crt", false},
	} {
		if got := h.restartsAPI(tc.host, tc.msg); got != tc.want {
			t.Errorf("%s %q: %v, want %v", tc.host, tc.msg, got, tc.want)
		}
	}
}
