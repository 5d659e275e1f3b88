package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCAIsCreatedOnceAndKept(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		a, err := s.CA(EtcdCA, "test CA")
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.CA(EtcdCA, "test CA")
		if err != nil {
			t.Fatal(err)
		}
		if Fingerprint(a.Cert) != Fingerprint(b.Cert) {
			t.Fatal("second CA call regenerated the authority")
		}
		if !a.Cert.IsCA {
			t.Fatal("CA certificate lacks IsCA")
		}
		if m := modeOf(t, s, EtcdCA+"/ca.key"); m != 0o600 {
			t.Fatalf("ca.key mode %v, want 0600", m)
		}
		if m := modeOf(t, s, EtcdCA+"/ca.crt"); m != 0o644 {
			t.Fatalf("ca.crt mode %v, want 0644", m)
		}
	})
}

func TestEtcdLeavesConvergeAndFollowMembers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		members := []EtcdMember{{"e1", "198.19.1.10"}, {"e2", "198.19.2.10"}, {"e3", "198.19.3.10"}}
		e, err := s.EnsureEtcd(members)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(e.Changed); got != 2*3+2 {
			t.Fatalf("first run issued %d certificates, want 8: %v", got, e.Changed)
		}
		again, err := s.EnsureEtcd(members)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Changed) != 0 {
			t.Fatalf("re-run reissued %v", again.Changed)
		}
		srv := e.Server["e2"].Cert
		if err := srv.VerifyHostname("198.19.2.10"); err != nil {
			t.Fatalf("server cert of e2: %v", err)
		}
		if err := srv.VerifyHostname("127.0.0.1"); err != nil {
			t.Fatalf("server cert of e2: %v", err)
		}
		if err := e.Peer["e1"].Cert.VerifyHostname("198.19.2.10"); err == nil {
			t.Fatal("peer cert of e1 is valid for e2's address")
		}
		roots := x509.NewCertPool()
		roots.AddCert(e.CA.Cert)
		if _, err := e.Admin.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("admin client cert does not verify: %v", err)
		}
		// An address change reissues that member's certificates only.
		members[1].Address = "198.19.2.11"
		moved, err := s.EnsureEtcd(members)
		if err != nil {
			t.Fatal(err)
		}
		if len(moved.Changed) != 2 || moved.Changed[0] != EtcdPeerCA+"/peer-e2" || moved.Changed[1] != "etcd/server-e2" {
			t.Fatalf("address change reissued %v, want peer-e2 and server-e2", moved.Changed)
		}
	})
}

func TestLeafRenewedNearExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		now := time.Now()
		s.Now = func() time.Time { return now }
		ca, err := s.CA(EtcdCA, "x")
		if err != nil {
			t.Fatal(err)
		}
		req := Request{CommonName: "a", IPs: []net.IP{net.ParseIP("198.19.0.1")}, Usage: Server}
		first, changed, err := s.Leaf(ca, EtcdCA, "a", req)
		if err != nil || !changed {
			t.Fatalf("first issue: changed=%v err=%v", changed, err)
		}
		now = first.Cert.NotAfter.Add(-RenewBefore / 2)
		second, changed, err := s.Leaf(ca, EtcdCA, "a", req)
		if err != nil || !changed {
			t.Fatalf("near expiry: changed=%v err=%v", changed, err)
		}
		if !second.Cert.NotAfter.After(first.Cert.NotAfter) {
			t.Fatal("renewed certificate does not extend validity")
		}
	})
}

func TestMismatchedKeyIsAnError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ca, _ := s.CA(EtcdCA, "x")
		if _, _, err := s.Leaf(ca, EtcdCA, "a", Request{CommonName: "a", Usage: Client}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Leaf(ca, EtcdCA, "b", Request{CommonName: "b", Usage: Client}); err != nil {
			t.Fatal(err)
		}
		writeStored(t, s, EtcdCA+"/a.key", readStored(t, s, EtcdCA+"/b.key"))
		if _, _, err := s.Leaf(ca, EtcdCA, "a", Request{CommonName: "a", Usage: Client}); err == nil {
			t.Fatal("a key that does not match its certificate was accepted")
		}
	})
}

// TestMutualTLS checks the certificates work in a real TLS handshake with
// client authentication, as etcd's peer and client listeners require.
func TestMutualTLS(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e, err := s.EnsureEtcd([]EtcdMember{{"e1", "127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(e.CA.Cert)
		srvCert, _ := tls.X509KeyPair(e.Server["e1"].CertPEM, e.Server["e1"].KeyPEM)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			done <- c.(*tls.Conn).Handshake()
		}()
		cli, _ := tls.X509KeyPair(e.Admin.CertPEM, e.Admin.KeyPEM)
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{Certificates: []tls.Certificate{cli}, RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := <-done; err != nil {
			t.Fatalf("server side handshake: %v", err)
		}
	})
}

func TestExpiriesAndClusterCAs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		if _, _, err := s.EnsureClusterCAs(); err != nil {
			t.Fatal(err)
		}
		ex, err := s.Expiries()
		if err != nil {
			t.Fatal(err)
		}
		if len(ex) != 2 {
			t.Fatalf("Expiries = %v, want the kubernetes and front-proxy CAs", ex)
		}
		for _, x := range ex {
			if x.Name != "ca" || x.NotAfter.Before(time.Now().Add(9*365*24*time.Hour)) {
				t.Fatalf("unexpected entry %+v", x)
			}
		}
	})
}

// TestHalfACAIsNeverReplaced: a store with a CA's certificate but not its
// key (a partial restore, a copied state) is an error, never a new CA:
// the certificate stays as it was.
func TestHalfACAIsNeverReplaced(t *testing.T) {
	for _, missing := range []string{"ca.key", "ca.crt"} {
		t.Run("without "+missing, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *Store) {
				if _, err := s.CA(EtcdCA, "test CA"); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.EnsureClusterCAs(); err != nil {
					t.Fatal(err)
				}
				kept := EtcdCA + "/ca.crt"
				if missing == "ca.crt" {
					kept = EtcdCA + "/ca.key"
				}
				before := readStored(t, s, kept)
				removeStored(t, s, EtcdCA+"/"+missing)
				_, err := s.CA(EtcdCA, "test CA")
				if !errors.Is(err, ErrIncompleteCA) {
					t.Fatalf("CA with %s missing: %v, want ErrIncompleteCA", missing, err)
				}
				if !strings.Contains(err.Error(), "tricenter state restore") {
					t.Errorf("the error names no remedy: %v", err)
				}
				if _, err := s.EnsureEtcd([]EtcdMember{{Name: "m1", Address: "198.18.0.1"}}); !errors.Is(err, ErrIncompleteCA) {
					t.Errorf("EnsureEtcd with %s missing: %v, want ErrIncompleteCA", missing, err)
				}
				if _, err := s.Fingerprints(); !errors.Is(err, ErrIncompleteCA) {
					t.Errorf("Fingerprints with %s missing: %v, want ErrIncompleteCA", missing, err)
				}
				if after := readStored(t, s, kept); !bytes.Equal(before, after) {
					t.Fatal("the remaining half changed")
				}
				if stored(t, s, EtcdCA+"/"+missing) {
					t.Fatalf("%s was created", missing)
				}
			})
		})
	}
}

// TestFingerprintsCreateNothing: Fingerprints reports what the store
// holds, and only that.
func TestFingerprintsCreateNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		fp, err := s.Fingerprints()
		if err != nil || len(fp) != 0 {
			t.Fatalf("empty store: %v, %v", fp, err)
		}
		if names, _ := s.files().List(); len(names) != 0 {
			t.Fatalf("Fingerprints wrote %v into an empty store", names)
		}
		ca, err := s.CA(EtcdCA, "test CA")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.EnsureControlPlane(ControlPlaneRequest{Servers: []ControlPlaneServer{{Name: "cp1", Address: "198.18.0.2"}},
			ServiceIP: netip.MustParseAddr("198.19.128.1"), ClusterDomain: "cluster.local"}); err != nil {
			t.Fatal(err)
		}
		fp, err = s.Fingerprints()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{EtcdCA, KubernetesCA, FrontProxyCA, ServiceAccountAuthority} {
			if len(fp[a]) != 64 {
				t.Errorf("fingerprint of %s: %q", a, fp[a])
			}
		}
		if fp[EtcdCA] != Fingerprint(ca.Cert) {
			t.Errorf("etcd CA fingerprint %s, want %s", fp[EtcdCA], Fingerprint(ca.Cert))
		}
		pub := readStored(t, s, KubernetesCA+"/"+ServiceAccountKey+".pub")
		if want, _ := PublicKeyFingerprint(pub); fp[ServiceAccountAuthority] != want {
			t.Errorf("service-account fingerprint %s, want %s", fp[ServiceAccountAuthority], want)
		}
		// A certificate and its public key: the public key's fingerprint.
		if got, err := PublicKeyFingerprint(ca.CertPEM); err != nil || len(got) != 64 || got == Fingerprint(ca.Cert) {
			t.Errorf("PublicKeyFingerprint(certificate) = %q, %v", got, err)
		}
	})
}
