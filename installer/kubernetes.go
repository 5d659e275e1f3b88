package installer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/apivip"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// APIPort is kube-apiserver's port on every control-plane server and on
// the API VIP.
const APIPort = 6443

// APIServerURL is the URL kubelets, kube-proxy and the admin kubeconfig
// use: the API VIP (announced by the control-plane servers' BGP agents
// while their apiserver is ready), else the first control-plane server.
func (e *Engine) APIServerURL() string {
	if ip := e.IPs().APIVIP; ip.IsValid() {
		return "https://" + net.JoinHostPort(ip.String(), fmt.Sprint(APIPort))
	}
	cp := e.Placement().ControlPlane
	if len(cp) == 0 {
		return ""
	}
	return "https://" + net.JoinHostPort(cp[0].Address, fmt.Sprint(APIPort))
}

// nodeProfile is the node agents' host profile from the inventory.
func (e *Engine) nodeProfile() node.Profile {
	if p := e.cfg.Cluster.Spec.Kubernetes.NodeProfile; p != "" {
		return node.Profile(p)
	}
	return node.ProfileBareMetal
}

// kubernetesCA returns the Kubernetes CA (created with the etcd PKI).
func (e *Engine) kubernetesCA() (*pki.KeyPair, error) {
	kube, _, err := e.PKIStore().EnsureClusterCAs()
	if err != nil {
		return nil, fmt.Errorf("cluster PKI: %w", err)
	}
	return kube, nil
}

// AdminKubeconfig returns the admin kubeconfig for server (default:
// APIServerURL): user tricenter-admin in group tricenter:cluster-admins,
// bound to cluster-admin by the ClusterRoleBinding apply keeps (on a
// cluster an earlier release installed, system:masters until the next
// apply switches it). Before apply has bound the group there is none: an
// error wrapping pki.ErrNoAdmin. It holds a private key: write it 0600,
// never log it.
func (e *Engine) AdminKubeconfig(server string) ([]byte, error) {
	admin, err := e.PKIStore().EnsureAdmin()
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	return e.renderKubeconfig(server, "admin", admin)
}

// BreakGlassKubeconfig returns the break-glass kubeconfig (user
// tricenter-break-glass in system:masters, which RBAC cannot revoke) for
// server (default: APIServerURL). It is kept in the engine state only and
// is for emergencies: the admin kubeconfig's binding deleted or broken.
// It holds a private key: write it 0600, never log it.
func (e *Engine) BreakGlassKubeconfig(server string) ([]byte, error) {
	bg, err := e.PKIStore().EnsureBreakGlass()
	if err != nil {
		return nil, fmt.Errorf("break-glass certificate: %w", err)
	}
	return e.renderKubeconfig(server, "break-glass", bg)
}

func (e *Engine) renderKubeconfig(server, user string, kp *pki.KeyPair) ([]byte, error) {
	if server == "" {
		server = e.APIServerURL()
	}
	ca, err := e.kubernetesCA()
	if err != nil {
		return nil, err
	}
	return kubeconfig.Render(kubeconfig.Config{Cluster: e.cfg.Cluster.Metadata.Name, User: user, Server: server,
		CA: ca.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
}

// engineKubeconfig is the credential of the engine's own API calls: the
// admin kubeconfig, or, on a new cluster before apply has bound the admin
// group (no admin certificate yet), the break-glass one.
func (e *Engine) engineKubeconfig(server string) ([]byte, error) {
	kc, err := e.AdminKubeconfig(server)
	if errors.Is(err, pki.ErrNoAdmin) {
		return e.BreakGlassKubeconfig(server)
	}
	return kc, err
}

// restConfig is the engine's REST config for server, dialling through the
// jump hosts when needed.
func (e *Engine) restConfig(server string) (*rest.Config, error) {
	kc, err := e.engineKubeconfig(server)
	if err != nil {
		return nil, err
	}
	return e.restConfigOf(kc)
}

func (e *Engine) restConfigOf(kc []byte) (*rest.Config, error) {
	rc, err := kubeconfig.REST(kc)
	if err != nil {
		return nil, err
	}
	rc.Dial = e.Dial
	rc.Timeout = 30 * time.Second
	rc.QPS, rc.Burst = 50, 100
	return rc, nil
}

// clientsetOf is a client of the cluster through the API VIP with kc's
// credential.
func (e *Engine) clientsetOf(kc []byte) (kubernetes.Interface, error) {
	rc, err := e.restConfigOf(kc)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// applyIdentities applies the admin group's and the kubelet client's
// ClusterRoleBindings with the break-glass credential, waits until they
// answer, then moves the admin certificate to the group (stored only once
// the API authorizes the new certificate): see addons.ApplyIdentities.
func (e *Engine) applyIdentities(ctx context.Context) ([]string, error) {
	bgKC, err := e.BreakGlassKubeconfig("")
	if err != nil {
		return nil, err
	}
	bg, err := e.clientsetOf(bgKC)
	if err != nil {
		return nil, err
	}
	store := e.PKIStore()
	timeout := e.cfg.GateTimeout
	if timeout <= 0 || timeout > addons.DefaultIdentityTimeout {
		timeout = addons.DefaultIdentityTimeout
	}
	return addons.ApplyIdentities(ctx, addons.IdentityOptions{Client: bg, Timeout: timeout, Logger: e.log,
		SwitchAdmin: func(ctx context.Context) (bool, error) {
			_, changed, err := store.SwitchAdmin(func(kp *pki.KeyPair) error {
				e.log.Info("Checking the admin certificate in its group before storing it", "group", pki.AdminGroup)
				kc, err := e.renderKubeconfig("", "admin", kp)
				if err != nil {
					return err
				}
				cs, err := e.clientsetOf(kc)
				if err != nil {
					return err
				}
				return addons.WaitSelfAdmin(ctx, cs, timeout, 0)
			})
			return changed, err
		}})
}

// Clientset is an admin client of the cluster through the API VIP.
func (e *Engine) Clientset() (kubernetes.Interface, error) {
	rc, err := e.restConfig("")
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// apiHTTPClient is an HTTPS client that trusts the Kubernetes CA and
// presents the admin certificate, for /readyz probes. Each request opens a
// new connection: a pooled HTTP/2 connection to a server that died would
// hide for half a minute that the VIP already moved to a live one.
func (e *Engine) apiHTTPClient(server string) (*http.Client, error) {
	rc, err := e.restConfig(server)
	if err != nil {
		return nil, err
	}
	tc, err := rest.TLSConfigFor(rc)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: e.Dial, TLSClientConfig: tc, DisableKeepAlives: true,
		TLSHandshakeTimeout: 10 * time.Second, Proxy: nil}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func (r *applyRun) controlPlanePhases(ctx context.Context) ([]phase.Phase, error) {
	e := r.e
	bins, err := e.Artifacts().ResolveVersion(ctx, e.cfg.Cluster.Spec.Kubernetes.Version, controlplane.Binaries()...)
	if err != nil {
		return nil, err
	}
	phases, err := controlplane.Phases(controlplane.Options{Cluster: e.cfg.Cluster, Placement: e.Placement(),
		IPs: e.IPs(), PKI: e.PKIStore(), Binaries: bins, Logger: e.log, ReadyTimeout: e.cfg.HealthTimeout})
	if err != nil {
		return nil, err
	}
	if vip := e.IPs().APIVIP; vip.IsValid() {
		var names []string
		for _, m := range e.Placement().ControlPlane {
			names = append(names, m.Name)
		}
		phases = append(phases, apivip.Phase(vip, names))
	}
	return phases, nil
}

func (r *applyRun) nodePhases(ctx context.Context) ([]phase.Phase, error) {
	e := r.e
	names := r.limit(hostNames(e.cfg.Cluster.Hosts()))
	if len(names) == 0 {
		return nil, nil
	}
	bins, err := e.Artifacts().ResolveVersion(ctx, e.cfg.Cluster.Spec.Kubernetes.Version, node.BinKubelet, node.BinKubeProxy)
	if err != nil {
		return nil, err
	}
	// The images and the container runtime (containerd 2, runc, the CNI
	// plugins) are not tied to a Kubernetes release: plain names.
	plain, err := e.Artifacts().Resolve(ctx, append([]string{node.ImagePause, node.ImageCoreDNS, ImageProbe, addons.LBArchive}, node.RuntimeBinaries()...)...)
	if err != nil {
		return nil, err
	}
	maps.Copy(bins, plain)
	ca, err := e.kubernetesCA()
	if err != nil {
		return nil, err
	}
	return node.Phases(node.Options{Cluster: e.cfg.Cluster, IPs: e.IPs(), PKI: e.PKIStore(),
		CA: ca.CertPEM, Server: e.APIServerURL(), Binaries: bins, Profile: e.nodeProfile(),
		ExtraImages:        map[string]string{ImageProbe: ProbeImage},
		ControlPlaneImages: map[string]string{addons.LBArchive: addons.LBImage},
		Select:             inventory.Selector{Servers: names}, Logger: e.log})
}

// addonPhases apply the identities' ClusterRoleBindings (then switch the
// admin certificate to its group), CoreDNS and the node labels through the
// API (server-side apply). A dry run skips them: what the API holds is
// compared at apply.
func (r *applyRun) addonPhases() []phase.Phase {
	e := r.e
	// The identities' bindings come first, whichever step runs, once a
	// run: the admin certificate moves to its group only once they answer,
	// and the steps then use it.
	var (
		mu             sync.Mutex
		identitiesDone bool
	)
	identities := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if identitiesDone {
			return nil
		}
		changed, err := e.applyIdentities(ctx)
		r.res.APIChanges = append(r.res.APIChanges, changed...)
		if err != nil {
			return fmt.Errorf("admin and kubelet-client identities: %w", err)
		}
		identitiesDone = true
		return nil
	}
	step := func(id string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if err := identities(ctx); err != nil {
				return err
			}
			cs, err := e.Clientset()
			if err != nil {
				return err
			}
			names := r.limit(hostNames(e.cfg.Cluster.Hosts()))
			o := addons.Options{Cluster: e.cfg.Cluster, IPs: e.IPs(),
				Select: inventory.Selector{Servers: names}, WaitForNodes: e.cfg.GateTimeout, FRU: e.cfg.FRU, Logger: e.log}
			if id == addons.IDLoadBalancer {
				img, err := e.Artifacts().Files(ctx, addons.LBArchive)
				if err != nil {
					return err
				}
				o.LBImageSHA256 = img[addons.LBArchive].SHA256
			}
			changed, err := addons.ApplyStep(ctx, cs, id, o)
			r.res.APIChanges = append(r.res.APIChanges, changed...)
			return err
		}
	}
	notDry := func() bool { return !r.dry }
	return []phase.Phase{
		&funcPhase{id: addons.IDCoreDNS, title: "CoreDNS through the API", run: step(addons.IDCoreDNS), should: notDry},
		&funcPhase{id: addons.IDNodeLabels, title: "node labels through the API", run: step(addons.IDNodeLabels), should: notDry},
		&funcPhase{id: addons.IDLoadBalancer, title: "load-balancer controller and the agents' RBAC through the API", run: step(addons.IDLoadBalancer), should: notDry},
	}
}
