package pki

import (
	"crypto/x509"
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
