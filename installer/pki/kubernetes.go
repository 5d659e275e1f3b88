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
	"slices"
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
	// AdminBreakGlass is the break-glass credential (system:masters): kept
	// in the engine state only, used by the engine to bind AdminGroup and
	// handed out only on request (tricenter kubeconfig --break-glass).
	AdminBreakGlass = "admin-break-glass"
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
	BreakGlassUser        = "tricenter-break-glass"
	MastersGroup          = "system:masters"
	// AdminGroup is the admin certificate's group once RBAC binds it to
	// cluster-admin (the ClusterRoleBinding tricenter:cluster-admins, as
	// kubeadm 1.29 and later bind kubeadm:cluster-admins): unlike
	// system:masters, deleting the binding revokes it.
	AdminGroup = "tricenter:cluster-admins"
)

// ErrNoAdmin is returned (wrapped) by EnsureAdmin when the store holds no
// admin certificate: it is issued only once its group's binding answers.
var ErrNoAdmin = errors.New("no admin certificate in the state: it is issued once apply has bound its group " +
	AdminGroup + " to cluster-admin (run tricenter apply; in an emergency, tricenter kubeconfig --break-glass)")

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
	kubeletClientGroups, err := s.kubeletClientGroups()
	if err != nil {
		return nil, err
	}
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
			Request{CommonName: KubeletClientUser, Organization: kubeletClientGroups, Usage: Client}},
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

// AdminRequest is the admin certificate's request in group (AdminGroup,
// or MastersGroup for an admin certificate issued before the switch).
func AdminRequest(group string) Request {
	return Request{CommonName: AdminUser, Organization: []string{group}, Usage: Client}
}

// InAdminGroup reports whether cert is bound through RBAC: its only group
// is AdminGroup.
func InAdminGroup(cert *x509.Certificate) bool {
	o := cert.Subject.Organization
	return len(o) == 1 && o[0] == AdminGroup
}

// EnsureAdmin loads the admin client certificate, renewing it when it
// expires within RenewBefore (or was signed by another key) in the group
// it has: AdminGroup, or system:masters on a cluster whose binding apply
// has not confirmed yet (only SwitchAdmin moves it to AdminGroup, once
// the binding answers). It issues none: ErrNoAdmin when there is none.
func (s *Store) EnsureAdmin() (*KeyPair, error) {
	kube, err := s.LoadCA(KubernetesCA)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNoAdmin
	} else if err != nil {
		return nil, err
	}
	old, err := s.Load(KubernetesCA, Admin)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNoAdmin
	} else if err != nil {
		return nil, err
	}
	group := MastersGroup
	if InAdminGroup(old.Cert) {
		group = AdminGroup
	}
	kp, _, err := s.Leaf(kube, KubernetesCA, Admin, AdminRequest(group))
	return kp, err
}

// AdminBound reports whether the store's admin certificate is in
// AdminGroup (false when there is none).
func (s *Store) AdminBound() (bool, error) {
	kp, err := s.Load(KubernetesCA, Admin)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return InAdminGroup(kp.Cert), nil
}

// SwitchAdmin moves the admin certificate to AdminGroup: it issues the
// new certificate in memory, calls verify with it (which must return nil
// only once the API authorizes that certificate as cluster-admin through
// the binding), and only then replaces the stored one. A failed verify
// leaves the store as it was: the engine never locks itself out. An admin
// certificate already in AdminGroup is only renewed when due (changed
// false unless it was).
func (s *Store) SwitchAdmin(verify func(*KeyPair) error) (_ *KeyPair, changed bool, _ error) {
	kube, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		return nil, false, err
	}
	req := AdminRequest(AdminGroup)
	if old, err := s.Load(KubernetesCA, Admin); err == nil && InAdminGroup(old.Cert) {
		return s.Leaf(kube, KubernetesCA, Admin, req)
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	kp, err := Issue(kube, req.normalized(), s.now())
	if err != nil {
		return nil, false, fmt.Errorf("issuing %s/%s: %w", KubernetesCA, Admin, err)
	}
	if err := verify(kp); err != nil {
		return nil, false, fmt.Errorf("the admin certificate stays as it is: %w", err)
	}
	if err := s.savePair(kp, KubernetesCA+"/"+Admin+".crt", KubernetesCA+"/"+Admin+".key"); err != nil {
		return nil, false, err
	}
	return kp, true, nil
}

// EnsureBreakGlass loads or issues the break-glass client certificate
// (user tricenter-break-glass in system:masters) under the Kubernetes CA.
// It stays in the engine state: the engine uses it to apply the bindings
// the admin certificate depends on, and hands it out only when asked.
func (s *Store) EnsureBreakGlass() (*KeyPair, error) {
	kube, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		return nil, err
	}
	kp, _, err := s.Leaf(kube, KubernetesCA, AdminBreakGlass,
		Request{CommonName: BreakGlassUser, Organization: []string{MastersGroup}, Usage: Client})
	return kp, err
}

// kubeletClientGroups are the groups of the API server's kubelet client
// certificate. It is bound to system:kubelet-api-admin by RBAC (the
// add-ons' ClusterRoleBinding) and in no group; a certificate issued in
// system:masters by an earlier release keeps it until the bindings are
// confirmed (the admin certificate is in AdminGroup: SwitchAdmin ran only
// once both bindings answered), so kubectl logs and exec never break.
func (s *Store) kubeletClientGroups() ([]string, error) {
	old, err := s.Load(KubernetesCA, APIServerKubeletClient)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if !slices.Contains(old.Cert.Subject.Organization, MastersGroup) {
		return nil, nil
	}
	bound, err := s.AdminBound()
	if err != nil || bound {
		return nil, err
	}
	return []string{MastersGroup}, nil
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
