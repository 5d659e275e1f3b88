package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
)

func TestKubeletCertificates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ip := net.ParseIP("198.18.10.11")
		client, serving, err := s.EnsureKubelet("w1", []net.IP{ip})
		if err != nil {
			t.Fatal(err)
		}
		ca, err := s.CA(KubernetesCA, KubernetesCACommonName)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		if _, err := client.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("kubelet client certificate does not verify as a client: %v", err)
		}
		if got := client.Cert.Subject.CommonName; got != "system:node:w1" {
			t.Fatalf("client CN %q, want system:node:w1", got)
		}
		if !slices.Equal(client.Cert.Subject.Organization, []string{"system:nodes"}) {
			t.Fatalf("client O %v, want [system:nodes]", client.Cert.Subject.Organization)
		}
		if _, err := serving.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "198.18.10.11",
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Fatalf("serving certificate does not verify for the node IP: %v", err)
		}
		if err := serving.Cert.VerifyHostname("w1"); err != nil {
			t.Fatalf("serving certificate lacks the node name: %v", err)
		}
		if err := serving.Cert.VerifyHostname("198.18.10.12"); err == nil {
			t.Fatal("serving certificate valid for another address")
		}
		if slices.Contains(client.Cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
			t.Fatal("client certificate can serve")
		}

		// Converges: a second call keeps both; a new address reissues serving only.
		c2, s2, err := s.EnsureKubelet("w1", []net.IP{ip})
		if err != nil {
			t.Fatal(err)
		}
		if Fingerprint(c2.Cert) != Fingerprint(client.Cert) || Fingerprint(s2.Cert) != Fingerprint(serving.Cert) {
			t.Fatal("second EnsureKubelet reissued a certificate")
		}
		c3, s3, err := s.EnsureKubelet("w1", []net.IP{net.ParseIP("198.18.10.12")})
		if err != nil {
			t.Fatal(err)
		}
		if Fingerprint(c3.Cert) != Fingerprint(client.Cert) {
			t.Fatal("address change reissued the client certificate")
		}
		if Fingerprint(s3.Cert) == Fingerprint(serving.Cert) {
			t.Fatal("address change kept the old serving certificate")
		}
	})
}

func TestKubeletCertificateErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		for _, tc := range []struct {
			name string
			node string
			ips  []net.IP
		}{
			{"no name", "", []net.IP{net.ParseIP("198.18.0.1")}},
			{"no address", "w1", nil},
			{"path in name", "../w1", []net.IP{net.ParseIP("198.18.0.1")}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, _, err := s.EnsureKubelet(tc.node, tc.ips); err == nil {
					t.Fatal("no error")
				}
			})
		}
	})
}

func TestKubeProxyCertificate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		kp, err := s.EnsureKubeProxy()
		if err != nil {
			t.Fatal(err)
		}
		if kp.Cert.Subject.CommonName != "system:kube-proxy" {
			t.Fatalf("CN %q", kp.Cert.Subject.CommonName)
		}
		if !slices.Equal(kp.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Fatalf("usages %v, want client only", kp.Cert.ExtKeyUsage)
		}
		again, err := s.EnsureKubeProxy()
		if err != nil {
			t.Fatal(err)
		}
		if Fingerprint(again.Cert) != Fingerprint(kp.Cert) {
			t.Fatal("second EnsureKubeProxy reissued")
		}
	})
}

// TestAdoptKubeletCertificates: certificates read back from a server are
// adopted when this store's CA signed them and the store lacks them, and
// EnsureKubelet then keeps them; foreign, broken or mismatched ones are
// refused and an existing leaf is never replaced.
func TestAdoptKubeletCertificates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ip := []net.IP{net.ParseIP("198.18.10.11")}
		// The certificates of a node whose record was lost: issued by
		// this CA in another store holding the same authority.
		if _, err := s.CA(KubernetesCA, KubernetesCACommonName); err != nil {
			t.Fatal(err)
		}
		other := NewMemStore()
		for _, f := range []string{"ca.crt", "ca.key"} {
			writeStored(t, other, KubernetesCA+"/"+f, readStored(t, s, KubernetesCA+"/"+f))
		}
		client, serving, err := other.EnsureKubelet("w1", ip)
		if err != nil {
			t.Fatal(err)
		}
		for _, kp := range []struct {
			file string
			kp   *KeyPair
		}{{KubeletClientFile("w1"), client}, {KubeletServingFile("w1"), serving}} {
			ok, err := s.Adopt(KubernetesCA, kp.file, kp.kp.CertPEM, kp.kp.KeyPEM)
			if err != nil || !ok {
				t.Fatalf("adopting %s: %v, %v", kp.file, ok, err)
			}
			if m := modeOf(t, s, KubernetesCA+"/"+kp.file+".key"); m != 0o600 {
				t.Errorf("adopted key mode %v", m)
			}
		}
		c2, s2, err := s.EnsureKubelet("w1", ip)
		if err != nil {
			t.Fatal(err)
		}
		if !c2.Cert.Equal(client.Cert) || !s2.Cert.Equal(serving.Cert) {
			t.Fatal("EnsureKubelet reissued adopted certificates that match")
		}
		// Already held: kept, not replaced.
		c3, _, err := other.EnsureKubelet("w2", ip)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Adopt(KubernetesCA, KubeletClientFile("w1"), c3.CertPEM, c3.KeyPEM); ok || err != nil {
			t.Fatalf("adopting over a held leaf: %v, %v", ok, err)
		}
		if got, _ := s.Load(KubernetesCA, KubeletClientFile("w1")); !got.Cert.Equal(client.Cert) {
			t.Fatal("Adopt replaced a held leaf")
		}
		// Another CA's certificate.
		foreign := NewMemStore()
		fc, _, err := foreign.EnsureKubelet("w3", ip)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Adopt(KubernetesCA, KubeletClientFile("w3"), fc.CertPEM, fc.KeyPEM); !errors.Is(err, ErrNotIssuedHere) {
			t.Fatalf("adopting another CA's certificate: %v, want ErrNotIssuedHere", err)
		}
		// A key that is not the certificate's, and garbage.
		if _, err := s.Adopt(KubernetesCA, KubeletClientFile("w3"), c3.CertPEM, fc.KeyPEM); err == nil {
			t.Fatal("adopted a certificate with another key")
		}
		if _, err := s.Adopt(KubernetesCA, KubeletClientFile("w3"), []byte("x"), []byte("y")); err == nil {
			t.Fatal("adopted garbage")
		}
		if stored(t, s, KubernetesCA+"/"+KubeletClientFile("w3")+".crt") {
			t.Fatal("a refused certificate was stored")
		}
		if _, err := s.Adopt(KubernetesCA, "../x", c3.CertPEM, c3.KeyPEM); err == nil {
			t.Fatal("adopted under a path")
		}
	})
}
