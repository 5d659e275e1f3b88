package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strings"
)

// Leaf names under the Kubernetes and front-proxy authorities.
const (
	APIServerServing       = "apiserver"
	APIServerKubeletClient = "apiserver-kubelet-client"
	FrontProxyClient       = "front-proxy-client"
	ControllerManager      = "controller-manager"
	Scheduler              = "scheduler"
	Admin                  = "admin"
	// ServiceAccountKey is the service-account signing key (sa.key and
	// sa.pub under the Kubernetes authority's directory).
	ServiceAccountKey = "sa"
)

// Subjects of the control-plane client certificates, as Kubernetes' RBAC
// defaults expect them.
const (
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
	FrontProxyClientUser  = "front-proxy-client"
	KubeletClientUser     = "kube-apiserver-kubelet-client"
	AdminUser             = "tricenter-admin"
	MastersGroup          = "system:masters"
)

// ControlPlaneServer is a server that runs kube-apiserver.
type ControlPlaneServer struct {
	Name    string
	Address string
}

// ControlPlaneRequest is what the control-plane certificates name.
type ControlPlaneRequest struct {
	// Servers are every control-plane server (names and addresses go into
	// the apiserver's serving certificate).
	Servers []ControlPlaneServer
	// APIVIP is the API virtual IP (optional).
	APIVIP netip.Addr
	// ServiceIP is the kubernetes Service's cluster IP.
	ServiceIP netip.Addr
	// ClusterDomain, e.g. cluster.local.
	ClusterDomain string
}

// ServiceAccount is the key pair that signs and verifies service-account
// tokens. It is generated once and never rotated silently: a new key
// would invalidate every token in the cluster.
type ServiceAccount struct {
	Key       *ecdsa.PrivateKey
	KeyPEM    []byte
	PublicPEM []byte
}

// ControlPlane is the PKI the control plane needs.
type ControlPlane struct {
	CA, FrontProxyCA, EtcdCA *KeyPair
	// APIServer is the apiserver's serving certificate.
	APIServer *KeyPair
	// EtcdClient is the apiserver's etcd client certificate (etcd CA).
	EtcdClient *KeyPair
	// KubeletClient is the apiserver's client certificate towards kubelets.
	KubeletClient *KeyPair
	// FrontProxyClient is the aggregator's client certificate.
	FrontProxyClient  *KeyPair
	ControllerManager *KeyPair
	Scheduler         *KeyPair
	ServiceAccount    *ServiceAccount
	// Changed lists the certificates and keys (re)issued by this call.
	Changed []string
}

// errNoEtcdCA is returned when the control plane is asked for before etcd.
var errNoEtcdCA = errors.New("no etcd CA in the store: apply etcd first (tricenter apply --only etcd)")

// APIServerRequest is the apiserver serving certificate request: every
// control-plane address and name, the API VIP, the kubernetes Service IP,
// 127.0.0.1 and the kubernetes.default.svc names.
func APIServerRequest(req ControlPlaneRequest) (Request, error) {
	if len(req.Servers) == 0 {
		return Request{}, errors.New("control-plane certificates: no control-plane server")
	}
	if req.ClusterDomain == "" || strings.Trim(req.ClusterDomain, ".") != req.ClusterDomain {
		return Request{}, fmt.Errorf("control-plane certificates: cluster domain %q is not a domain name", req.ClusterDomain)
	}
	if !req.ServiceIP.IsValid() {
		return Request{}, errors.New("control-plane certificates: no kubernetes Service IP")
	}
	r := Request{
		CommonName: "kube-apiserver",
		DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + req.ClusterDomain},
		IPs:   []net.IP{net.IPv4(127, 0, 0, 1), net.IP(req.ServiceIP.AsSlice())},
		Usage: Server,
	}
	if req.APIVIP.IsValid() {
		r.IPs = append(r.IPs, net.IP(req.APIVIP.AsSlice()))
	}
	for _, s := range req.Servers {
		ip := net.ParseIP(s.Address)
		if ip == nil {
			return Request{}, fmt.Errorf("control-plane server %s: address %q is not an IP address", s.Name, s.Address)
		}
		if s.Name == "" {
			return Request{}, fmt.Errorf("control-plane server at %s has no name", s.Address)
		}
		r.IPs = append(r.IPs, ip)
		r.DNSNames = append(r.DNSNames, s.Name)
	}
	return r, nil
}

// apiServerEtcdClientRequest is the request EnsureEtcd issues too: both
// must agree or each would reissue the other's certificate.
func apiServerEtcdClientRequest() Request {
	return Request{CommonName: "kube-apiserver-etcd-client", Organization: []string{MastersGroup}, Usage: Client}
}

// EnsureControlPlane loads or creates the Kubernetes and front-proxy CAs
// and the control-plane certificates, reusing the etcd CA EnsureEtcd
// created. Leaves that still match are kept; the service-account key pair
// is created once and kept.
func (s *Store) EnsureControlPlane(req ControlPlaneRequest) (*ControlPlane, error) {
	apiReq, err := APIServerRequest(req)
	if err != nil {
		return nil, err
	}
	etcdCA, err := s.LoadCA(EtcdCA)
	if errors.Is(err, ErrNotFound) {
		return nil, errNoEtcdCA
	} else if err != nil {
		return nil, err
	}
	kube, fp, err := s.EnsureClusterCAs()
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{CA: kube, FrontProxyCA: fp, EtcdCA: etcdCA}
	issue := func(ca *KeyPair, caName, file string, r Request) (*KeyPair, error) {
		kp, changed, err := s.Leaf(ca, caName, file, r)
		if err != nil {
			return nil, err
		}
		if changed {
			cp.Changed = append(cp.Changed, caName+"/"+file)
		}
		return kp, nil
	}
	leaves := []struct {
		dst    **KeyPair
		ca     *KeyPair
		caName string
		file   string
		req    Request
	}{
		{&cp.APIServer, kube, KubernetesCA, APIServerServing, apiReq},
		{&cp.EtcdClient, etcdCA, EtcdCA, APIServerClient, apiServerEtcdClientRequest()},
		{&cp.KubeletClient, kube, KubernetesCA, APIServerKubeletClient,
			Request{CommonName: KubeletClientUser, Organization: []string{MastersGroup}, Usage: Client}},
		{&cp.FrontProxyClient, fp, FrontProxyCA, FrontProxyClient, Request{CommonName: FrontProxyClientUser, Usage: Client}},
		{&cp.ControllerManager, kube, KubernetesCA, ControllerManager, Request{CommonName: ControllerManagerUser, Usage: Client}},
		{&cp.Scheduler, kube, KubernetesCA, Scheduler, Request{CommonName: SchedulerUser, Usage: Client}},
	}
	for _, l := range leaves {
		if *l.dst, err = issue(l.ca, l.caName, l.file, l.req); err != nil {
			return nil, err
		}
	}
	var created bool
	if cp.ServiceAccount, created, err = s.serviceAccount(); err != nil {
		return nil, err
	}
	if created {
		cp.Changed = append(cp.Changed, KubernetesCA+"/"+ServiceAccountKey)
	}
	return cp, nil
}

// EnsureAdmin loads or issues the admin client certificate (O=system:masters)
// under the Kubernetes CA.
func (s *Store) EnsureAdmin() (*KeyPair, error) {
	kube, err := s.CA(KubernetesCA, "tricenter kubernetes CA")
	if err != nil {
		return nil, err
	}
	kp, _, err := s.Leaf(kube, KubernetesCA, Admin, Request{CommonName: AdminUser, Organization: []string{MastersGroup}, Usage: Client})
	return kp, err
}

// serviceAccount loads the service-account key pair or creates it when
// neither file exists. A half-present or unreadable pair is an error to
// resolve by hand, never a silent rotation.
func (s *Store) serviceAccount() (_ *ServiceAccount, created bool, _ error) {
	f := s.files()
	key, pub := KubernetesCA+"/"+ServiceAccountKey+".key", KubernetesCA+"/"+ServiceAccountKey+".pub"
	kb, kerr := f.ReadFile(key)
	switch {
	case kerr == nil:
		sa, err := parseServiceAccount(kb)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w (restore it from a backup: a new key invalidates every service-account token)", f.Where(key), err)
		}
		pb, err := f.ReadFile(pub)
		if err != nil || string(pb) != string(sa.PublicPEM) {
			// The public half is derived: rewrite it.
			if err := f.WriteFile(pub, sa.PublicPEM, FileMode(pub)); err != nil {
				return nil, false, err
			}
		}
		return sa, false, nil
	case !errors.Is(kerr, fs.ErrNotExist):
		return nil, false, kerr
	}
	if ok, err := s.exists(pub); err != nil {
		return nil, false, err
	} else if ok {
		return nil, false, fmt.Errorf("%s exists without %s: restore the key from a backup (a new key invalidates every service-account token)", f.Where(pub), f.Where(key))
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, false, err
	}
	sa, err := parseServiceAccount(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		return nil, false, err
	}
	if err := f.WriteFile(key, sa.KeyPEM, FileMode(key)); err != nil {
		return nil, false, err
	}
	if err := f.WriteFile(pub, sa.PublicPEM, FileMode(pub)); err != nil {
		return nil, false, err
	}
	return sa, true, nil
}

func parseServiceAccount(keyPEM []byte) (*ServiceAccount, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "EC PRIVATE KEY" {
		return nil, errors.New("no EC PRIVATE KEY PEM block")
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &ServiceAccount{Key: key, KeyPEM: keyPEM,
		PublicPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})}, nil
}
