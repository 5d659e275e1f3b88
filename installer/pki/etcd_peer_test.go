package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"
)

var peerTestMembers = []EtcdMember{{"e1", "198.19.1.10"}, {"e2", "198.19.2.10"}, {"e3", "198.19.3.10"}}

// verifies reports whether cert chains to ca for usage.
func verifies(cert, ca *x509.Certificate, usage x509.ExtKeyUsage) bool {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err == nil
}

func TestEtcdPeerCASplitOnNewStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		e, err := s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if e.SharedPeerCA {
			t.Fatal("a new store shares the peer CA with the client CA")
		}
		if e.PeerCA == nil || e.PeerCA.Cert.Equal(e.CA.Cert) {
			t.Fatal("the peer CA is the client CA")
		}
		if e.PeerCA.Cert.Subject.CommonName != "tricenter etcd peer CA" {
			t.Errorf("peer CA subject %q", e.PeerCA.Cert.Subject.CommonName)
		}
		for _, m := range peerTestMembers {
			peer, srv := e.Peer[m.Name].Cert, e.Server[m.Name].Cert
			if peer.Subject.CommonName != EtcdPeerCN {
				t.Errorf("peer certificate of %s has CN %q, want %q", m.Name, peer.Subject.CommonName, EtcdPeerCN)
			}
			if err := peer.VerifyHostname(m.Address); err != nil {
				t.Errorf("peer certificate of %s: %v", m.Name, err)
			}
			if err := peer.VerifyHostname(m.Name); err != nil {
				t.Errorf("peer certificate of %s: %v", m.Name, err)
			}
			for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if !verifies(peer, e.PeerCA.Cert, u) {
					t.Errorf("peer certificate of %s does not verify against the peer CA for %v", m.Name, u)
				}
			}
			if verifies(peer, e.CA.Cert, x509.ExtKeyUsageClientAuth) {
				t.Errorf("peer certificate of %s verifies against the client CA", m.Name)
			}
			if !verifies(srv, e.CA.Cert, x509.ExtKeyUsageServerAuth) || verifies(srv, e.PeerCA.Cert, x509.ExtKeyUsageServerAuth) {
				t.Errorf("server certificate of %s is not signed by the client CA only", m.Name)
			}
		}
		for name, kp := range map[string]*KeyPair{"admin": e.Admin, "apiserver": e.APIServer} {
			if verifies(kp.Cert, e.PeerCA.Cert, x509.ExtKeyUsageClientAuth) {
				t.Errorf("%s client certificate verifies against the peer CA", name)
			}
		}
		if !slices.Contains(e.Changed, EtcdPeerCA+"/peer-e1") || slices.Contains(e.Changed, EtcdCA+"/peer-e1") {
			t.Errorf("issued %v, want the peer certificates under %s/", e.Changed, EtcdPeerCA)
		}
		for _, f := range []string{EtcdPeerCA + "/ca.key", EtcdPeerCA + "/peer-e1.key"} {
			if m := modeOf(t, s, f); m != 0o600 {
				t.Errorf("%s mode %v, want 0600", f, m)
			}
		}
		again, err := s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Changed) != 0 || again.SharedPeerCA || !again.PeerCA.Cert.Equal(e.PeerCA.Cert) {
			t.Fatalf("re-run: changed %v, shared %v, same peer CA %v", again.Changed, again.SharedPeerCA, again.PeerCA.Cert.Equal(e.PeerCA.Cert))
		}
	})
}

// writeOldEtcdStore writes the etcd PKI as the release before the peer CA
// split did: one etcd CA signing everything, peer certificates named after
// the member.
func writeOldEtcdStore(t *testing.T, s *Store, members []EtcdMember) *KeyPair {
	t.Helper()
	ca, err := s.CA(EtcdCA, "tricenter etcd CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		ip := net.ParseIP(m.Address)
		for file, req := range map[string]Request{
			"peer-" + m.Name:   {CommonName: m.Name, DNSNames: []string{m.Name}, IPs: []net.IP{ip}, Usage: Server | Client},
			"server-" + m.Name: {CommonName: m.Name, DNSNames: []string{m.Name, "localhost"}, IPs: []net.IP{ip, net.IPv4(127, 0, 0, 1)}, Usage: Server | Client},
		} {
			if _, _, err := s.Leaf(ca, EtcdCA, file, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	for file, req := range map[string]Request{
		AdminClient:     {CommonName: "tricenter", Usage: Client},
		APIServerClient: {CommonName: "kube-apiserver-etcd-client", Organization: []string{"system:masters"}, Usage: Client},
	} {
		if _, _, err := s.Leaf(ca, EtcdCA, file, req); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

func TestEtcdSharedPeerCAKeptOnOldStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ca := writeOldEtcdStore(t, s, peerTestMembers)
		before := map[string][]byte{}
		for _, m := range peerTestMembers {
			before[m.Name] = readStored(t, s, EtcdCA+"/peer-"+m.Name+".crt")
		}
		e, err := s.EnsureEtcd(peerTestMembers)
		if err != nil {
			t.Fatal(err)
		}
		if !e.SharedPeerCA {
			t.Fatal("a store written before the split is not reported as sharing the peer CA")
		}
		if len(e.Changed) != 0 {
			t.Fatalf("the old store's certificates were reissued: %v", e.Changed)
		}
		if !e.PeerCA.Cert.Equal(ca.Cert) || !e.CA.Cert.Equal(ca.Cert) {
			t.Fatal("the shared CA was replaced")
		}
		if ok, err := s.HasCA(EtcdPeerCA); err != nil || ok {
			t.Fatalf("a peer CA was created in a store that shares it (%v, %v)", ok, err)
		}
		for _, m := range peerTestMembers {
			if got := readStored(t, s, EtcdCA+"/peer-"+m.Name+".crt"); string(got) != string(before[m.Name]) {
				t.Errorf("peer certificate of %s changed", m.Name)
			}
			if e.Peer[m.Name].Cert.Subject.CommonName != m.Name {
				t.Errorf("peer certificate of %s has CN %q", m.Name, e.Peer[m.Name].Cert.Subject.CommonName)
			}
		}
		// A member added later gets its peer certificate from the shared CA,
		// as its peers expect.
		grown, err := s.EnsureEtcd(append(slices.Clone(peerTestMembers), EtcdMember{"e4", "198.19.1.11"}))
		if err != nil {
			t.Fatal(err)
		}
		if !grown.SharedPeerCA || !slices.Equal(grown.Changed, []string{EtcdCA + "/peer-e4", EtcdCA + "/server-e4"}) {
			t.Fatalf("adding e4: shared %v, issued %v", grown.SharedPeerCA, grown.Changed)
		}
		if !verifies(grown.Peer["e4"].Cert, ca.Cert, x509.ExtKeyUsageClientAuth) {
			t.Fatal("e4's peer certificate is not signed by the shared CA")
		}
	})
}

func TestEtcdPeerCAStateDetection(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		// An etcd CA without any peer certificate: nothing ran with it, so
		// the split is safe.
		if _, err := s.CA(EtcdCA, "tricenter etcd CA"); err != nil {
			t.Fatal(err)
		}
		e, err := s.EnsureEtcd(peerTestMembers[:1])
		if err != nil {
			t.Fatal(err)
		}
		if e.SharedPeerCA {
			t.Fatal("an etcd CA without peer certificates kept a shared peer CA")
		}
	})
	// Half a peer CA is damage, never a reason to share or regenerate.
	s := NewMemStore()
	if _, err := s.EnsureEtcd(peerTestMembers[:1]); err != nil {
		t.Fatal(err)
	}
	s.Files.(*MemFiles).Remove(EtcdPeerCA + "/ca.crt")
	if _, err := s.EnsureEtcd(peerTestMembers[:1]); !errors.Is(err, ErrIncompleteCA) {
		t.Fatalf("EnsureEtcd with the peer CA's certificate missing: %v, want ErrIncompleteCA", err)
	}
}
