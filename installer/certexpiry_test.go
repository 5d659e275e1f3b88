package installer

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// labPKI is a cluster whose spec.pki asks for lab lifetimes (minutes).
func labPKI() *inventory.Cluster {
	return &inventory.Cluster{Spec: inventory.Spec{PKI: inventory.PKI{RenewBefore: "5m", LeafLifetime: "12m"}}}
}

// storeWithControlPlane issues the etcd and control-plane certificates at
// start into a memory store with c's policy.
func storeWithControlPlane(t *testing.T, c *inventory.Cluster, clock *time.Time) *pki.Store {
	t.Helper()
	s := withPKIPolicy(pki.NewMemStore(), c)
	s.Now = func() time.Time { return *clock }
	if _, err := s.EnsureEtcd([]pki.EtcdMember{{Name: "cp1", Address: "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureControlPlane(pki.ControlPlaneRequest{
		Servers:   []pki.ControlPlaneServer{{Name: "cp1", Address: "127.0.0.1"}},
		ServiceIP: netip.MustParseAddr("10.96.0.1"), ClusterDomain: "cluster.local",
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRenewalDueFollowsInventory: the leaves issued with spec.pki's
// lifetime are not due until renewBefore of their expiry, then due; the
// inventory without spec.pki keeps the 720h default.
func TestRenewalDueFollowsInventory(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clock := start
	c := labPKI()
	s := storeWithControlPlane(t, c, &clock)
	due, earliest, what, err := RenewalDue(s, c, start.Add(6*time.Minute))
	if err != nil || due {
		t.Fatalf("6m into 12m with renewBefore 5m: due %v (%s), %v", due, what, err)
	}
	if !earliest.Equal(start.Add(12 * time.Minute)) {
		t.Fatalf("earliest %s, want %s", earliest, start.Add(12*time.Minute))
	}
	due, _, what, err = RenewalDue(s, c, start.Add(8*time.Minute))
	if err != nil || !due || what == "" {
		t.Fatalf("8m into 12m: due %v (%q), %v", due, what, err)
	}
	// The same certificates judged with the default policy: 4m left is
	// within 720h.
	due, _, _, err = RenewalDue(s, &inventory.Cluster{}, start.Add(8*time.Minute))
	if err != nil || !due {
		t.Fatalf("default renewBefore: due %v, %v", due, err)
	}
	if d := withPKIPolicy(pki.NewMemStore(), &inventory.Cluster{}); d.RenewBefore != pki.RenewBefore || d.LeafValidity != pki.LeafValidity {
		t.Fatalf("defaults: %s %s", d.RenewBefore, d.LeafValidity)
	}
	if inventory.DefaultPKIRenewBefore != pki.RenewBefore || inventory.DefaultPKILeafLifetime != pki.LeafValidity {
		t.Fatal("the inventory's spec.pki defaults differ from package pki's constants")
	}
}

// TestExpiryFindings: a renew-due leaf is a warning naming the kind, the
// file and renewBefore; an expired one a problem; an authority's says
// that apply does not renew it.
func TestExpiryFindings(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	r := &pki.ExpiryReport{At: at, RenewBefore: 5 * time.Minute, Kinds: []pki.KindExpiry{
		{Kind: pki.KindAdmin, File: "pki/kubernetes/admin.crt", NotAfter: at.Add(-time.Minute), Left: -time.Minute, Expired: true},
		{Kind: pki.KindKubeletServing, File: "pki/kubernetes/kubelet-serving-w1.crt", NotAfter: at.Add(4 * time.Minute), Left: 4 * time.Minute, RenewDue: true},
		{Kind: "CA etcd", CA: true, File: "pki/etcd/ca.crt", NotAfter: at.Add(time.Minute), Left: time.Minute, RenewDue: true},
		{Kind: pki.KindEtcdPeer, File: "pki/etcd/peer-cp1.crt", NotAfter: at.Add(time.Hour), Left: time.Hour},
		{Kind: pki.KindServiceAccountKey, NoExpiry: true, File: "pki/kubernetes/sa.key"},
	}}
	problems, warnings := expiryFindings(r)
	if len(problems) != 1 || !strings.Contains(problems[0], "admin client (pki/kubernetes/admin.crt) expired on 2026-02-28T23:59:00Z: run tricenter apply") {
		t.Errorf("problems: %q", problems)
	}
	if len(warnings) != 2 {
		t.Fatalf("warnings: %q", warnings)
	}
	if !strings.Contains(warnings[0], "kubelet serving (pki/kubernetes/kubelet-serving-w1.crt) expires on 2026-03-01T00:04:00Z, within renewBefore 5m: run tricenter apply") {
		t.Errorf("leaf warning: %q", warnings[0])
	}
	if !strings.Contains(warnings[1], "CA etcd") || !strings.Contains(warnings[1], "CA rotation") {
		t.Errorf("CA warning: %q", warnings[1])
	}
	for in, want := range map[time.Duration]string{720 * time.Hour: "720h", 5 * time.Minute: "5m", 4*time.Minute + 30*time.Second: "4m30s", 65 * time.Minute: "1h5m", 0: "0s"} {
		if got := ShortDuration(in); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", in, got, want)
		}
	}
}

// TestServedCertificates: a TLS handshake on loopback reports the served
// certificate's expiry and whether it is the state's; an endpoint that
// does not answer is reported not observed, with why.
func TestServedCertificates(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	clock := start
	c := labPKI()
	s := storeWithControlPlane(t, c, &clock)
	ca, err := s.LoadCA(pki.KubernetesCA)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.Load(pki.KubernetesCA, pki.APIServerServing)
	if err != nil {
		t.Fatal(err)
	}
	// An older certificate of the same request, as a server that was not
	// restarted after a renewal would still serve.
	older, err := pki.Issue(ca, pki.Request{CommonName: "kube-apiserver", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.Server, Validity: 3 * time.Minute}, start)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(kp *pki.KeyPair) string {
		cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					_ = conn.(*tls.Conn).Handshake()
					_ = conn.Close()
				}()
			}
		}()
		return ln.Addr().String()
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	_ = closed.Close()

	var d net.Dialer
	got := servedCertificates(context.Background(), d.DialContext, ca.Cert, stored.Cert, []apiEndpoint{
		{Name: "cp1", Address: serve(stored)},
		{Name: "cp2", Address: serve(older)},
		{Name: "cp3", Address: deadAddr},
	}, start.Add(time.Minute))
	if len(got) != 3 {
		t.Fatalf("got %+v", got)
	}
	if g := got[0]; !g.Observed || !g.MatchesStore || !g.NotAfter.Equal(stored.Cert.NotAfter) || g.Left != 11*time.Minute {
		t.Errorf("cp1 serves the state's: %+v", g)
	}
	if g := got[1]; !g.Observed || g.MatchesStore || !g.NotAfter.Equal(start.Add(3*time.Minute)) || g.Left != 2*time.Minute {
		t.Errorf("cp2 serves an older one: %+v", g)
	}
	if g := got[2]; g.Observed || g.Error == "" {
		t.Errorf("cp3 does not answer: %+v", g)
	}
	// A certificate of the state's CA for another address is refused.
	elsewhere, err := pki.Issue(ca, pki.Request{CommonName: "y", IPs: []net.IP{net.IPv4(127, 0, 0, 2)}, Usage: pki.Server}, start)
	if err != nil {
		t.Fatal(err)
	}
	got = servedCertificates(context.Background(), d.DialContext, ca.Cert, stored.Cert, []apiEndpoint{{Name: "y", Address: serve(elsewhere)}}, start)
	if g := got[0]; g.Observed || !strings.Contains(g.Error, "127.0.0.1") {
		t.Errorf("certificate for another address: %+v", g)
	}
	// A certificate of another authority is not observed as the API's.
	other := pki.NewMemStore()
	oca, err := other.CA(pki.KubernetesCA, "another CA")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.Issue(oca, pki.Request{CommonName: "x", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.Server}, start)
	if err != nil {
		t.Fatal(err)
	}
	got = servedCertificates(context.Background(), d.DialContext, ca.Cert, stored.Cert, []apiEndpoint{{Name: "x", Address: serve(foreign)}}, start)
	if g := got[0]; g.Observed || !strings.Contains(g.Error, "not signed by the state's Kubernetes CA") {
		t.Errorf("foreign CA: %+v", g)
	}
}

// TestEngineCertificateExpiry: before any PKI the engine says ErrNoPKI;
// certificates issued through Engine.PKIStore get spec.pki's lifetime and
// the engine's clock judges them against spec.pki.renewBefore.
func TestEngineCertificateExpiry(t *testing.T) {
	c, lines, err := inventory.Load("../examples/inventory/three-center.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.PKI = inventory.PKI{RenewBefore: "5m", LeafLifetime: "12m"}
	m, err := state.NewMem(map[string]string{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	now := start
	e, err := New(Config{Cluster: c, Lines: lines, Store: m, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CertificateExpiry(); !errors.Is(err, ErrNoPKI) {
		t.Fatalf("empty state: %v, want ErrNoPKI", err)
	}
	s := e.PKIStore()
	s.Now = func() time.Time { return now }
	var members []pki.EtcdMember
	for _, mem := range e.Placement().Etcd.Members {
		members = append(members, pki.EtcdMember{Name: mem.Name, Address: mem.Address})
	}
	p, err := s.EnsureEtcd(members)
	if err != nil {
		t.Fatal(err)
	}
	if want := start.Add(12 * time.Minute); !p.Admin.Cert.NotAfter.Equal(want) {
		t.Fatalf("etcd client certificate expires %s, want %s (spec.pki.leafLifetime)", p.Admin.Cert.NotAfter, want)
	}
	// Leftovers issued 3m earlier: a removed server's kubelet certificate
	// and a peer certificate under the etcd CA after the peer CA split.
	// No apply reissues them: they are listed as unused, never due.
	now = start.Add(-3 * time.Minute)
	if _, _, err := s.EnsureKubelet("gone", []net.IP{net.IPv4(198, 18, 9, 9)}); err != nil {
		t.Fatal(err)
	}
	etcdCA, err := s.LoadCA(pki.EtcdCA)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Leaf(etcdCA, pki.EtcdCA, "peer-"+members[0].Name, pki.Request{CommonName: members[0].Name, Usage: pki.Server | pki.Client}); err != nil {
		t.Fatal(err)
	}
	now = start.Add(6 * time.Minute) // the leftovers have 3m left, the others 6m
	if due, _, what, err := e.RenewalDue(); err != nil || due {
		t.Fatalf("6m in: due %v (%s), %v", due, what, err)
	}
	r, err := e.CertificateExpiry()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Unused) != 3 || !strings.Contains(strings.Join(r.Unused, " "), "kubernetes/kubelet-serving-gone.crt") ||
		!strings.Contains(strings.Join(r.Unused, " "), "etcd/peer-"+members[0].Name+".crt") {
		t.Fatalf("unused: %q", r.Unused)
	}
	// Without the inventory (the store alone) they are judged.
	if due, _, _, err := RenewalDue(e.PKIStore(), c, now); err != nil || !due {
		t.Fatalf("store alone: due %v, %v", due, err)
	}
	now = start.Add(8 * time.Minute)
	due, earliest, what, err := e.RenewalDue()
	if err != nil || !due || !earliest.Equal(start.Add(12*time.Minute)) || !strings.HasPrefix(what, "etcd ") {
		t.Fatalf("8m in: due %v, earliest %s, what %q, %v", due, earliest, what, err)
	}
	r, err = e.CertificateExpiry()
	if err != nil {
		t.Fatal(err)
	}
	if r.RenewBefore != 5*time.Minute || !r.At.Equal(now) {
		t.Fatalf("report: renewBefore %s at %s", r.RenewBefore, r.At)
	}
}
