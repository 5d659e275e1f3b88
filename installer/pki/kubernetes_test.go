package pki

import (
	"crypto/x509"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func testControlPlaneRequest() ControlPlaneRequest {
	return ControlPlaneRequest{
		Servers: []ControlPlaneServer{
			{Name: "dc1-r01-s01", Address: "198.19.1.10"},
			{Name: "dc2-r01-s01", Address: "198.19.2.10"},
			{Name: "dc3-r01-s01", Address: "198.19.3.10"},
		},
		APIVIP:        netip.MustParseAddr("198.19.120.10"),
		ServiceIP:     netip.MustParseAddr("198.19.96.1"),
		ClusterDomain: "lab.example",
	}
}

func ensureTestControlPlane(t *testing.T, s *Store) *ControlPlane {
	t.Helper()
	if _, err := s.EnsureEtcd([]EtcdMember{{"dc1-r01-s01", "198.19.1.10"}}); err != nil {
		t.Fatal(err)
	}
	cp, err := s.EnsureControlPlane(testControlPlaneRequest())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestControlPlaneNeedsEtcdCA(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		_, err := s.EnsureControlPlane(testControlPlaneRequest())
		if !errors.Is(err, errNoEtcdCA) {
			t.Fatalf("err = %v, want %v", err, errNoEtcdCA)
		}
		if stored(t, s, EtcdCA+"/ca.crt") {
			t.Fatal("EnsureControlPlane created an etcd CA of its own")
		}
	})
}

func TestAPIServerServingCertificate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		cp := ensureTestControlPlane(t, s)
		c := cp.APIServer.Cert
		for _, name := range []string{"198.19.1.10", "198.19.2.10", "198.19.3.10", "198.19.120.10", "198.19.96.1",
			"127.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.lab.example", "dc1-r01-s01", "dc2-r01-s01", "dc3-r01-s01"} {
			if err := c.VerifyHostname(name); err != nil {
				t.Errorf("apiserver certificate: %v", err)
			}
		}
		if err := c.VerifyHostname("198.19.4.10"); err == nil {
			t.Error("apiserver certificate accepts an address of no control-plane server")
		}
		if len(c.IPAddresses) != 6 || len(c.DNSNames) != 7 {
			t.Errorf("apiserver SANs: %v %v, want 6 IPs and 7 names", c.IPAddresses, c.DNSNames)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			t.Errorf("apiserver usages %v, want server auth only", c.ExtKeyUsage)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cp.CA.Cert)
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"}); err != nil {
			t.Errorf("apiserver certificate does not verify against the Kubernetes CA: %v", err)
		}
	})
}

func TestControlPlaneClientCertificates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		cp := ensureTestControlPlane(t, s)
		tests := []struct {
			name   string
			kp     *KeyPair
			issuer *KeyPair
			cn     string
			org    []string
		}{
			{"etcd client", cp.EtcdClient, cp.EtcdCA, "kube-apiserver-etcd-client", []string{MastersGroup}},
			{"kubelet client", cp.KubeletClient, cp.CA, KubeletClientUser, nil},
			{"front-proxy client", cp.FrontProxyClient, cp.FrontProxyCA, FrontProxyClientUser, nil},
			{"controller-manager", cp.ControllerManager, cp.CA, "system:kube-controller-manager", nil},
			{"scheduler", cp.Scheduler, cp.CA, "system:kube-scheduler", nil},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := tc.kp.Cert
				if err := c.CheckSignatureFrom(tc.issuer.Cert); err != nil {
					t.Fatalf("not signed by %s: %v", tc.issuer.Cert.Subject.CommonName, err)
				}
				if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.Organization, tc.org) {
					t.Errorf("subject CN=%s O=%v, want CN=%s O=%v", c.Subject.CommonName, c.Subject.Organization, tc.cn, tc.org)
				}
				if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
					t.Errorf("usages %v, want client auth only", c.ExtKeyUsage)
				}
				if len(c.DNSNames)+len(c.IPAddresses) != 0 {
					t.Errorf("client certificate carries SANs %v %v", c.DNSNames, c.IPAddresses)
				}
			})
		}
		if cp.FrontProxyCA.Cert.Equal(cp.CA.Cert) || cp.EtcdCA.Cert.Equal(cp.CA.Cert) {
			t.Error("the front-proxy or etcd CA is the Kubernetes CA")
		}
	})
}

func TestControlPlaneConvergesAndFollowsServers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e, err := s.EnsureEtcd([]EtcdMember{{"dc1-r01-s01", "198.19.1.10"}})
		if err != nil {
			t.Fatal(err)
		}
		first, err := s.EnsureControlPlane(testControlPlaneRequest())
		if err != nil {
			t.Fatal(err)
		}
		// Six leaves (the etcd client one EnsureEtcd already made is kept) and
		// the service-account key.
		want := []string{"kubernetes/apiserver", "kubernetes/apiserver-kubelet-client", "front-proxy/front-proxy-client",
			"kubernetes/controller-manager", "kubernetes/scheduler", "kubernetes/sa"}
		if !slices.Equal(first.Changed, want) {
			t.Fatalf("first run changed %v, want %v", first.Changed, want)
		}
		if !first.EtcdClient.Cert.Equal(e.APIServer.Cert) {
			t.Fatal("the apiserver's etcd client certificate differs from EnsureEtcd's")
		}
		again, err := s.EnsureControlPlane(testControlPlaneRequest())
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Changed) != 0 {
			t.Fatalf("re-run reissued %v", again.Changed)
		}
		if e2, err := s.EnsureEtcd([]EtcdMember{{"dc1-r01-s01", "198.19.1.10"}}); err != nil || len(e2.Changed) != 0 {
			t.Fatalf("EnsureEtcd after EnsureControlPlane: changed %v, err %v", e2.Changed, err)
		}
		req := testControlPlaneRequest()
		req.Servers = append(req.Servers, ControlPlaneServer{Name: "dc1-r02-s01", Address: "198.19.1.74"})
		grown, err := s.EnsureControlPlane(req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(grown.Changed, []string{"kubernetes/apiserver"}) {
			t.Fatalf("adding a server changed %v, want only the apiserver certificate", grown.Changed)
		}
		if err := grown.APIServer.Cert.VerifyHostname("198.19.1.74"); err != nil {
			t.Fatal(err)
		}
		if !grown.ServiceAccount.Key.Equal(first.ServiceAccount.Key) {
			t.Fatal("the service-account key changed")
		}
	})
}

func TestServiceAccountKeyIsKept(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		cp := ensureTestControlPlane(t, s)
		keyPath := KubernetesCA + "/sa.key"
		if m := modeOf(t, s, keyPath); m != 0o600 {
			t.Fatalf("sa.key mode %v, want 0600", m)
		}
		if m := modeOf(t, s, KubernetesCA+"/sa.pub"); m != 0o644 {
			t.Fatalf("sa.pub mode %v, want 0644", m)
		}
		if !strings.Contains(string(cp.ServiceAccount.PublicPEM), "PUBLIC KEY") {
			t.Fatalf("sa.pub is not a PEM public key: %q", cp.ServiceAccount.PublicPEM)
		}
		// A lost public half is derived again from the key.
		removeStored(t, s, KubernetesCA+"/sa.pub")
		again, err := s.EnsureControlPlane(testControlPlaneRequest())
		if err != nil {
			t.Fatal(err)
		}
		if string(again.ServiceAccount.PublicPEM) != string(cp.ServiceAccount.PublicPEM) || len(again.Changed) != 0 {
			t.Fatalf("recovering sa.pub changed %v", again.Changed)
		}
		// A lost key is not silently replaced.
		removeStored(t, s, keyPath)
		_, err = s.EnsureControlPlane(testControlPlaneRequest())
		if err == nil || !strings.Contains(err.Error(), "restore the key") {
			t.Fatalf("missing sa.key: err = %v, want a refusal to rotate", err)
		}
		// A corrupt key neither.
		writeStored(t, s, keyPath, []byte("garbage"))
		if _, err := s.EnsureControlPlane(testControlPlaneRequest()); err == nil {
			t.Fatal("a corrupt sa.key was accepted")
		}
	})
}

// legacyAdmin stores an admin certificate in system:masters, as releases
// before the group binding issued it.
func legacyAdmin(t *testing.T, s *Store) *KeyPair {
	t.Helper()
	kube, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		t.Fatal(err)
	}
	kp, _, err := s.Leaf(kube, KubernetesCA, Admin, AdminRequest(MastersGroup))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestAdminCertificate: no admin certificate is issued before the switch
// (ErrNoAdmin); SwitchAdmin issues it in AdminGroup only when verify
// accepts it (a failed verify stores nothing); later calls keep it.
func TestAdminCertificate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		if _, err := s.EnsureAdmin(); !errors.Is(err, ErrNoAdmin) {
			t.Fatalf("EnsureAdmin on an empty store: %v, want ErrNoAdmin", err)
		}
		verifyErr := errors.New("fake verify: the binding does not answer yet")
		var seen *KeyPair
		if _, changed, err := s.SwitchAdmin(func(kp *KeyPair) error { seen = kp; return verifyErr }); !errors.Is(err, verifyErr) || changed {
			t.Fatalf("SwitchAdmin with a failing verify: changed %v, err %v", changed, err)
		}
		if seen == nil || !InAdminGroup(seen.Cert) {
			t.Fatal("verify was not given the new certificate in the admin group")
		}
		if _, err := s.EnsureAdmin(); !errors.Is(err, ErrNoAdmin) {
			t.Fatalf("a failed verify stored an admin certificate: %v", err)
		}
		a, changed, err := s.SwitchAdmin(func(kp *KeyPair) error { seen = kp; return nil })
		if err != nil || !changed || !a.Cert.Equal(seen.Cert) {
			t.Fatalf("SwitchAdmin: changed %v, err %v, or not the verified certificate", changed, err)
		}
		if a.Cert.Subject.CommonName != AdminUser || !slices.Equal(a.Cert.Subject.Organization, []string{AdminGroup}) {
			t.Fatalf("admin subject %v", a.Cert.Subject)
		}
		if !slices.Equal(a.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Fatalf("admin usages %v", a.Cert.ExtKeyUsage)
		}
		kube, err := s.CA(KubernetesCA, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Cert.CheckSignatureFrom(kube.Cert); err != nil {
			t.Fatal(err)
		}
		b, err := s.EnsureAdmin()
		if err != nil {
			t.Fatal(err)
		}
		if !a.Cert.Equal(b.Cert) {
			t.Fatal("EnsureAdmin reissued a matching certificate")
		}
		c, changed, err := s.SwitchAdmin(func(*KeyPair) error { t.Error("verify called for an admin already in the group"); return nil })
		if err != nil || changed || !c.Cert.Equal(a.Cert) {
			t.Fatalf("SwitchAdmin again: changed %v, err %v", changed, err)
		}
		if bound, err := s.AdminBound(); err != nil || !bound {
			t.Fatalf("AdminBound = %v, %v after the switch", bound, err)
		}
	})
}

// TestAdminSwitchFromMasters: an admin certificate in system:masters (a
// state of an earlier release) is kept, and renewed in system:masters,
// until SwitchAdmin's verify accepts the one in AdminGroup.
func TestAdminSwitchFromMasters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		old := legacyAdmin(t, s)
		got, err := s.EnsureAdmin()
		if err != nil || !got.Cert.Equal(old.Cert) {
			t.Fatalf("EnsureAdmin did not keep the system:masters admin: %v", err)
		}
		if bound, _ := s.AdminBound(); bound {
			t.Fatal("AdminBound with a system:masters admin")
		}
		// Close to expiry it is renewed in the group it has.
		s.Now = func() time.Time { return old.Cert.NotAfter.Add(-RenewBefore / 2) }
		renewed, err := s.EnsureAdmin()
		if err != nil || renewed.Cert.Equal(old.Cert) || !slices.Equal(renewed.Cert.Subject.Organization, []string{MastersGroup}) {
			t.Fatalf("renewal: %v, O=%v", err, renewed.Cert.Subject.Organization)
		}
		if _, _, err := s.SwitchAdmin(func(*KeyPair) error { return errors.New("fake verify: forbidden") }); err == nil {
			t.Fatal("SwitchAdmin succeeded with a failing verify")
		}
		if got, _ := s.EnsureAdmin(); !got.Cert.Equal(renewed.Cert) {
			t.Fatal("a failed switch replaced the system:masters admin")
		}
		sw, changed, err := s.SwitchAdmin(func(*KeyPair) error { return nil })
		if err != nil || !changed || !InAdminGroup(sw.Cert) {
			t.Fatalf("switch: changed %v, err %v", changed, err)
		}
	})
}

// TestKubeletClientLeavesMasters: a new kubelet client certificate is in
// no group; one in system:masters (earlier release) keeps it until the
// admin certificate is in AdminGroup (both bindings confirmed), then is
// reissued without it.
func TestKubeletClientLeavesMasters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		cp := ensureTestControlPlane(t, s)
		if o := cp.KubeletClient.Cert.Subject.Organization; len(o) != 0 {
			t.Fatalf("new kubelet client O=%v, want none", o)
		}
		kube := cp.CA
		if _, _, err := s.Leaf(kube, KubernetesCA, APIServerKubeletClient,
			Request{CommonName: KubeletClientUser, Organization: []string{MastersGroup}, Usage: Client}); err != nil {
			t.Fatal(err)
		}
		legacyAdmin(t, s)
		cp, err := s.EnsureControlPlane(testControlPlaneRequest())
		if err != nil {
			t.Fatal(err)
		}
		if o := cp.KubeletClient.Cert.Subject.Organization; !slices.Equal(o, []string{MastersGroup}) || slices.Contains(cp.Changed, KubernetesCA+"/"+APIServerKubeletClient) {
			t.Fatalf("before the switch the kubelet client lost system:masters (O=%v) or was reissued (%v)", o, cp.Changed)
		}
		if _, _, err := s.SwitchAdmin(func(*KeyPair) error { return nil }); err != nil {
			t.Fatal(err)
		}
		cp, err = s.EnsureControlPlane(testControlPlaneRequest())
		if err != nil {
			t.Fatal(err)
		}
		if o := cp.KubeletClient.Cert.Subject.Organization; len(o) != 0 || !slices.Contains(cp.Changed, KubernetesCA+"/"+APIServerKubeletClient) {
			t.Fatalf("after the switch the kubelet client is O=%v (changed %v), want no group, reissued", o, cp.Changed)
		}
		cp, err = s.EnsureControlPlane(testControlPlaneRequest())
		if err != nil || len(cp.Changed) != 0 {
			t.Fatalf("re-ensure changed %v (%v)", cp.Changed, err)
		}
	})
}

// TestBreakGlass: the break-glass certificate is its own file, in
// system:masters, kept across calls, and distinct from the admin's.
func TestBreakGlass(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		bg, err := s.EnsureBreakGlass()
		if err != nil {
			t.Fatal(err)
		}
		if bg.Cert.Subject.CommonName != BreakGlassUser || !slices.Equal(bg.Cert.Subject.Organization, []string{MastersGroup}) {
			t.Fatalf("break-glass subject %v", bg.Cert.Subject)
		}
		if _, err := s.Load(KubernetesCA, AdminBreakGlass); err != nil {
			t.Fatalf("break-glass not stored as %s: %v", AdminBreakGlass, err)
		}
		if _, err := s.EnsureAdmin(); !errors.Is(err, ErrNoAdmin) {
			t.Fatalf("the break-glass certificate issued an admin one: %v", err)
		}
		again, err := s.EnsureBreakGlass()
		if err != nil || !again.Cert.Equal(bg.Cert) {
			t.Fatalf("EnsureBreakGlass reissued a matching certificate (%v)", err)
		}
	})
}

func TestAPIServerRequestValidation(t *testing.T) {
	ok := testControlPlaneRequest()
	tests := []struct {
		name   string
		mutate func(r *ControlPlaneRequest)
		want   string
	}{
		{"no servers", func(r *ControlPlaneRequest) { r.Servers = nil }, "no control-plane server"},
		{"bad address", func(r *ControlPlaneRequest) { r.Servers[0].Address = "dc1" }, "not an IP address"},
		{"no name", func(r *ControlPlaneRequest) { r.Servers[1].Name = "" }, "has no name"},
		{"no service IP", func(r *ControlPlaneRequest) { r.ServiceIP = netip.Addr{} }, "Service IP"},
		{"no domain", func(r *ControlPlaneRequest) { r.ClusterDomain = "" }, "cluster domain"},
		{"dotted domain", func(r *ControlPlaneRequest) { r.ClusterDomain = "cluster.local." }, "cluster domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			r.Servers = slices.Clone(ok.Servers)
			tc.mutate(&r)
			_, err := APIServerRequest(r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	r, err := APIServerRequest(ControlPlaneRequest{Servers: ok.Servers, ServiceIP: ok.ServiceIP, ClusterDomain: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IPs) != 5 {
		t.Fatalf("without a VIP: IPs %v, want 127.0.0.1, the service IP and three servers", r.IPs)
	}
}
