package pki

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// issueAll fills s with every kind of certificate an apply issues.
func issueAll(t *testing.T, s *Store) {
	t.Helper()
	if _, err := s.EnsureEtcd([]EtcdMember{{Name: "cp1", Address: "198.18.0.11"}, {Name: "cp2", Address: "198.18.0.12"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureControlPlane(ControlPlaneRequest{
		Servers: []ControlPlaneServer{{Name: "cp1", Address: "198.18.0.11"}, {Name: "cp2", Address: "198.18.0.12"}},
		APIVIP:  netip.MustParseAddr("198.18.0.100"), ServiceIP: netip.MustParseAddr("10.96.0.1"), ClusterDomain: "cluster.local",
	}); err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"cp1", "w1", "w2"} {
		if _, _, err := s.EnsureKubelet(n, []net.IP{net.IPv4(198, 18, 0, byte(21+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EnsureKubeProxy(); err != nil {
		t.Fatal(err)
	}
	// The admin certificate directly (how EnsureAdmin decides to issue it
	// is not this test's concern).
	kube, err := s.LoadCA(KubernetesCA)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Leaf(kube, KubernetesCA, Admin, Request{CommonName: "admin", Usage: Client}); err != nil {
		t.Fatal(err)
	}
}

func kindOf(r *ExpiryReport, kind string) (KindExpiry, bool) {
	for _, k := range r.Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindExpiry{}, false
}

// TestExpiryReportKinds: every kind an apply issues is reported once, with
// its count, its earliest certificate's file, and the service-account key
// without expiry; a fresh store has nothing due.
func TestExpiryReportKinds(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := &Store{Files: &MemFiles{Prefix: "state:"}, Now: clk.now}
	issueAll(t, s)
	r, err := s.ExpiryReport()
	if err != nil {
		t.Fatal(err)
	}
	if r.RenewBefore != RenewBefore || !r.At.Equal(clk.t) {
		t.Fatalf("report header: %s %s", r.RenewBefore, r.At)
	}
	want := map[string]int{
		"CA " + EtcdCA: 1, "CA " + KubernetesCA: 1, "CA " + FrontProxyCA: 1,
		KindEtcdPeer: 2, KindEtcdServer: 2, KindEtcdClient: 2,
		KindAPIServerServing: 1, KindAPIServerKubeletClient: 1, KindFrontProxyClient: 1,
		KindControllerManager: 1, KindScheduler: 1, KindKubeletClient: 3, KindKubeletServing: 3,
		KindKubeProxy: 1, KindAdmin: 1, KindServiceAccountKey: 1,
	}
	for kind, n := range want {
		k, ok := kindOf(r, kind)
		if !ok {
			t.Errorf("kind %q missing from %+v", kind, r.Kinds)
			continue
		}
		if k.Count != n {
			t.Errorf("%s: count %d, want %d", kind, k.Count, n)
		}
		if k.RenewDue || k.Expired {
			t.Errorf("%s: due on a fresh store", kind)
		}
		if !strings.HasPrefix(k.File, "state:") {
			t.Errorf("%s: file %q not named by the store", kind, k.File)
		}
	}
	for _, k := range r.Kinds {
		if strings.Contains(k.Kind, "/") {
			t.Errorf("unclassified kind %q (%s)", k.Kind, k.File)
		}
	}
	if k, _ := kindOf(r, KindServiceAccountKey); !k.NoExpiry || !k.NotAfter.IsZero() {
		t.Errorf("service-account key: %+v", k)
	}
	if k, _ := kindOf(r, "CA "+EtcdCA); !k.CA || k.Left < 9*365*24*time.Hour {
		t.Errorf("etcd CA: %+v", k)
	}
	due, earliest, what := r.RenewalDue()
	if due || earliest.IsZero() || what == "" {
		t.Fatalf("RenewalDue on a fresh store: %v %s %q", due, earliest, what)
	}
	if want := clk.t.Add(LeafValidity); !earliest.Equal(want) {
		t.Errorf("earliest leaf expiry %s, want %s", earliest, want)
	}
}

// TestExpiryReportDue: with the clock inside RenewBefore of the leaves'
// expiry every leaf kind is renew due (the CAs are not), past it expired;
// the earliest one is the one that was not reissued.
func TestExpiryReportDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: start}
	s := &Store{Files: &MemFiles{}, Now: clk.now, RenewBefore: 5 * time.Minute, LeafValidity: 12 * time.Minute}
	issueAll(t, s)
	// One leaf reissued later expires later: the earliest is another one.
	clk.t = start.Add(time.Minute)
	if _, _, err := s.EnsureKubelet("w9", []net.IP{net.IPv4(198, 18, 0, 99)}); err != nil {
		t.Fatal(err)
	}

	clk.t = start.Add(6 * time.Minute) // 6m left: not due
	r, err := s.ExpiryReport()
	if err != nil {
		t.Fatal(err)
	}
	if due, _, what := r.RenewalDue(); due {
		t.Fatalf("due with 6m left of 12m and renewBefore 5m: %s", what)
	}

	clk.t = start.Add(8 * time.Minute) // 4m left: due
	r, err = s.ExpiryReport()
	if err != nil {
		t.Fatal(err)
	}
	due, earliest, what := r.RenewalDue()
	if !due || !earliest.Equal(start.Add(12*time.Minute)) || what == "" {
		t.Fatalf("RenewalDue = %v %s %q, want due at %s", due, earliest, what, start.Add(12*time.Minute))
	}
	for _, k := range r.Kinds {
		switch {
		case k.CA || k.NoExpiry:
			if k.RenewDue || k.Expired {
				t.Errorf("%s flagged: %+v", k.Kind, k)
			}
		case !k.RenewDue || k.Expired || k.Left != 4*time.Minute:
			t.Errorf("%s: %+v, want renew due with 4m left", k.Kind, k)
		}
	}
	if k, _ := kindOf(r, KindKubeletServing); k.Count != 4 || !strings.Contains(k.File, "kubelet-serving-") || strings.Contains(k.File, "w9") {
		t.Errorf("kubelet serving: earliest should be one of the first three: %+v", k)
	}

	clk.t = start.Add(12 * time.Minute) // the first leaves expire now
	r, err = s.ExpiryReport()
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := kindOf(r, KindAdmin); !k.Expired || k.RenewDue || k.Left != 0 {
		t.Errorf("admin at its NotAfter: %+v", k)
	}
}

// TestLeafHonoursStorePolicy: Leaf issues with the store's LeafValidity
// and reissues within the store's RenewBefore, not the package defaults.
func TestLeafHonoursStorePolicy(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: start}
	s := &Store{Files: &MemFiles{}, Now: clk.now, RenewBefore: 5 * time.Minute, LeafValidity: 12 * time.Minute}
	ca, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "x", Usage: Client}
	kp, changed, err := s.Leaf(ca, KubernetesCA, "x", req)
	if err != nil || !changed {
		t.Fatalf("first Leaf: changed %v, %v", changed, err)
	}
	if want := start.Add(12 * time.Minute); !kp.Cert.NotAfter.Equal(want) {
		t.Fatalf("NotAfter %s, want %s", kp.Cert.NotAfter, want)
	}
	clk.t = start.Add(6 * time.Minute)
	if _, changed, err := s.Leaf(ca, KubernetesCA, "x", req); err != nil || changed {
		t.Fatalf("reissued with 6m left (renewBefore 5m): changed %v, %v", changed, err)
	}
	clk.t = start.Add(8 * time.Minute)
	kp2, changed, err := s.Leaf(ca, KubernetesCA, "x", req)
	if err != nil || !changed {
		t.Fatalf("not reissued with 4m left (renewBefore 5m): changed %v, %v", changed, err)
	}
	if !kp2.Cert.NotAfter.Equal(clk.t.Add(12 * time.Minute)) {
		t.Errorf("reissued NotAfter %s", kp2.Cert.NotAfter)
	}
	// A request with its own validity keeps it.
	kp3, _, err := s.Leaf(ca, KubernetesCA, "y", Request{CommonName: "y", Usage: Client, Validity: time.Hour})
	if err != nil || !kp3.Cert.NotAfter.Equal(clk.t.Add(time.Hour)) {
		t.Errorf("own validity: %v %v", kp3, err)
	}
	// The zero store keeps the package defaults.
	z := &Store{Files: &MemFiles{}, Now: clk.now}
	zca, err := z.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	kz, _, err := z.Leaf(zca, KubernetesCA, "x", req)
	if err != nil || !kz.Cert.NotAfter.Equal(clk.t.Add(LeafValidity)) {
		t.Errorf("default validity: %v %v", kz, err)
	}
}

// TestCertKindFallback: a name the table does not know keeps its own.
func TestCertKindFallback(t *testing.T) {
	if k, ca := CertKind("kubernetes", "unknown-leaf"); k != "kubernetes/unknown-leaf" || ca {
		t.Errorf("got %q %v", k, ca)
	}
	if k, _ := CertKind(KubernetesCA, AdminBreakGlass); k != KindAdminBreakGlass {
		t.Errorf("got %q", k)
	}
	if k, ca := CertKind("etcd-peer", "ca"); k != "CA etcd-peer" || !ca {
		t.Errorf("got %q %v", k, ca)
	}
	if k, _ := CertKind("etcd-peer", "peer-cp1"); k != KindEtcdPeer {
		t.Errorf("got %q", k)
	}
}
