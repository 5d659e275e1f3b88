package pki

import (
	"fmt"
	"net"
)

// Client certificate names under the etcd authority.
const (
	// AdminClient is the certificate tricenter itself uses against etcd.
	AdminClient = "client-tricenter"
	// APIServerClient is kube-apiserver's etcd client certificate.
	APIServerClient = "client-kube-apiserver"
)

// EtcdMember is what an etcd member's certificates name.
type EtcdMember struct {
	Name    string
	Address string
}

// Etcd is the etcd PKI of a cluster.
type Etcd struct {
	CA *KeyPair
	// Peer and Server certificates by member name.
	Peer, Server map[string]*KeyPair
	// Admin is tricenter's client certificate; APIServer kube-apiserver's.
	Admin, APIServer *KeyPair
	// Changed lists the certificates (re)issued by this call.
	Changed []string
}

// EnsureEtcd loads or creates the etcd CA and one peer and one server
// certificate per member (SANs: the member's name and address; server
// certificates also localhost and 127.0.0.1), plus the client
// certificates. Certificates that still match are kept.
func (s *Store) EnsureEtcd(members []EtcdMember) (*Etcd, error) {
	ca, err := s.CA(EtcdCA, "tricenter etcd CA")
	if err != nil {
		return nil, err
	}
	e := &Etcd{CA: ca, Peer: map[string]*KeyPair{}, Server: map[string]*KeyPair{}}
	issue := func(file string, req Request) (*KeyPair, error) {
		kp, changed, err := s.Leaf(ca, EtcdCA, file, req)
		if err != nil {
			return nil, err
		}
		if changed {
			e.Changed = append(e.Changed, EtcdCA+"/"+file)
		}
		return kp, nil
	}
	for _, m := range members {
		ip := net.ParseIP(m.Address)
		if ip == nil {
			return nil, fmt.Errorf("etcd member %s: address %q is not an IP address", m.Name, m.Address)
		}
		if e.Peer[m.Name], err = issue("peer-"+m.Name, Request{
			CommonName: m.Name, DNSNames: []string{m.Name}, IPs: []net.IP{ip}, Usage: Server | Client,
		}); err != nil {
			return nil, err
		}
		if e.Server[m.Name], err = issue("server-"+m.Name, Request{
			CommonName: m.Name, DNSNames: []string{m.Name, "localhost"},
			IPs: []net.IP{ip, net.IPv4(127, 0, 0, 1)}, Usage: Server | Client,
		}); err != nil {
			return nil, err
		}
	}
	if e.Admin, err = issue(AdminClient, Request{CommonName: "tricenter", Usage: Client}); err != nil {
		return nil, err
	}
	if e.APIServer, err = issue(APIServerClient, Request{
		CommonName: "kube-apiserver-etcd-client", Organization: []string{"system:masters"}, Usage: Client,
	}); err != nil {
		return nil, err
	}
	return e, nil
}

// EnsureClusterCAs loads or creates the Kubernetes and front-proxy CAs the
// control-plane bootstrap signs its certificates with.
func (s *Store) EnsureClusterCAs() (kube, frontProxy *KeyPair, err error) {
	if kube, err = s.CA(KubernetesCA, "tricenter kubernetes CA"); err != nil {
		return nil, nil, err
	}
	if frontProxy, err = s.CA(FrontProxyCA, "tricenter front-proxy CA"); err != nil {
		return nil, nil, err
	}
	return kube, frontProxy, nil
}
