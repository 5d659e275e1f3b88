package pki

import (
	"fmt"
	"net"
	"path"
	"strings"
)

// EtcdPeerCA is the authority of etcd's peer (member to member)
// certificates, apart from EtcdCA, which signs the server and client
// certificates: a certificate that opens etcd's client port cannot join
// as a member, and a member's peer certificate is refused on the client
// port.
const EtcdPeerCA = "etcd-peer"

// EtcdPeerCN is the common name of every peer certificate of a cluster
// with its own peer CA: etcd checks it with --peer-cert-allowed-cn (see
// installer/etcd RenderEnv for why a common name rather than the
// members' host names).
const EtcdPeerCN = "etcd-peer"

// Client certificate names under the etcd authority.
const (
	// AdminClient is the certificate tricenter itself uses against etcd.
	AdminClient = "client-tricenter"
	// APIServerClient is kube-apiserver's etcd client certificate.
	APIServerClient = "client-kube-apiserver"
	// SnapshotClient is the certificate the snapshot schedule's members
	// take snapshots of another site's members with (common name
	// SnapshotClientCN), apart from the members' own certificates.
	SnapshotClient   = "client-snapshot"
	SnapshotClientCN = "tricenter-snapshot"
)

// EtcdMember is what an etcd member's certificates name.
type EtcdMember struct {
	Name    string
	Address string
}

// Etcd is the etcd PKI of a cluster.
type Etcd struct {
	// CA signs the server and client certificates (etcd's
	// --trusted-ca-file).
	CA *KeyPair
	// PeerCA signs the peer certificates (etcd's --peer-trusted-ca-file):
	// the EtcdPeerCA authority, or CA itself when SharedPeerCA.
	PeerCA *KeyPair
	// SharedPeerCA is true for a cluster created before the peer CA was
	// split from the client CA: its store holds the etcd CA and peer
	// certificates it signed, and no peer CA. Such a cluster keeps the
	// shared CA (and its peer certificates, named after the members) until
	// a CA rotation splits it; a client certificate of the etcd CA can
	// then still open a peer connection.
	SharedPeerCA bool
	// SplittingPeerCA is true while the EtcdPeerCA rotation that splits a
	// SharedPeerCA cluster's peer CA is in its trust or reissue phase: the
	// members trust PeerCA's bundle (the etcd CA and the new peer CA) on
	// the peer side but check no common name yet, since peer certificates
	// named after the members are still in use.
	SplittingPeerCA bool
	// Peer and Server certificates by member name.
	Peer, Server map[string]*KeyPair
	// Admin is tricenter's client certificate; APIServer kube-apiserver's.
	Admin, APIServer *KeyPair
	// Changed lists the certificates (re)issued by this call.
	Changed []string
}

// EnsureEtcd loads or creates the etcd CA, the etcd peer CA and one peer
// and one server certificate per member (SANs: the member's name and
// address; server certificates also localhost and 127.0.0.1), plus the
// client certificates. Peer certificates are signed by the peer CA
// (EtcdPeerCA, common name EtcdPeerCN), the others by the etcd CA. A store
// written before the split (SharedPeerCA) keeps its shared CA and its peer
// certificates. Certificates that still match are kept.
func (s *Store) EnsureEtcd(members []EtcdMember) (*Etcd, error) {
	shared, err := s.etcdPeerCAShared()
	if err != nil {
		return nil, err
	}
	// A split in progress (an EtcdPeerCA rotation of a shared store):
	// the peer certificates stay the shared CA's until its reissue phase.
	split, err := s.EtcdPeerSplit()
	if err != nil {
		return nil, err
	}
	issueShared := shared && (split == RotationNone || split == RotationTrust)
	ca, err := s.CA(EtcdCA, "tricenter etcd CA")
	if err != nil {
		return nil, err
	}
	e := &Etcd{CA: ca, PeerCA: ca, SharedPeerCA: shared && split == RotationNone, Peer: map[string]*KeyPair{}, Server: map[string]*KeyPair{},
		SplittingPeerCA: split == RotationTrust || split == RotationReissue}
	peerCAName := EtcdCA
	if !e.SharedPeerCA {
		if e.PeerCA, err = s.CA(EtcdPeerCA, "tricenter etcd peer CA"); err != nil {
			return nil, err
		}
	}
	if !issueShared {
		peerCAName = EtcdPeerCA
	}
	issueBy := func(ca *KeyPair, caName, file string, req Request) (*KeyPair, error) {
		kp, changed, err := s.Leaf(ca, caName, file, req)
		if err != nil {
			return nil, err
		}
		if changed {
			e.Changed = append(e.Changed, caName+"/"+file)
		}
		return kp, nil
	}
	issue := func(file string, req Request) (*KeyPair, error) { return issueBy(ca, EtcdCA, file, req) }
	for _, m := range members {
		ip := net.ParseIP(m.Address)
		if ip == nil {
			return nil, fmt.Errorf("etcd member %s: address %q is not an IP address", m.Name, m.Address)
		}
		// Peers dial each other with their peer certificate: Server and
		// Client usage.
		peerReq := Request{CommonName: EtcdPeerCN, DNSNames: []string{m.Name}, IPs: []net.IP{ip}, Usage: Server | Client}
		if issueShared {
			peerReq.CommonName = m.Name // as issued before the split
		}
		if e.Peer[m.Name], err = issueBy(e.PeerCA, peerCAName, "peer-"+m.Name, peerReq); err != nil {
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

// EnsureSnapshotClient loads or issues the snapshot schedule's client
// certificate (SnapshotClient, signed by the etcd CA), only for a
// cluster that schedules snapshots.
func (s *Store) EnsureSnapshotClient() (*KeyPair, error) {
	ca, err := s.LoadCA(EtcdCA)
	if err != nil {
		return nil, fmt.Errorf("the snapshot client certificate needs the etcd CA: %w", err)
	}
	kp, _, err := s.Leaf(ca, EtcdCA, SnapshotClient, Request{CommonName: SnapshotClientCN, Usage: Client})
	return kp, err
}

// etcdPeerCAShared reports whether the store was written before the
// peer CA was split from the etcd CA: no peer CA, while the etcd CA and
// at least one peer certificate it signed exist. A store without the etcd
// CA, or with an etcd CA but no peer certificate (no member was ever
// given one), gets the split.
func (s *Store) etcdPeerCAShared() (bool, error) {
	if err := s.bothOrNeither(EtcdPeerCA+"/ca.crt", EtcdPeerCA+"/ca.key"); err != nil {
		return false, fmt.Errorf("%s CA: %w", EtcdPeerCA, err)
	}
	if ok, err := s.HasCA(EtcdPeerCA); err != nil || ok {
		return false, err
	}
	if ok, err := s.HasCA(EtcdCA); err != nil || !ok {
		return false, err
	}
	names, err := s.files().List()
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if path.Dir(n) == EtcdCA && strings.HasPrefix(path.Base(n), "peer-") && strings.HasSuffix(n, ".crt") {
			return true, nil
		}
	}
	return false, nil
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
