package installer

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
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
	kube, _, err := e.cfg.Store.PKI().EnsureClusterCAs()
	if err != nil {
		return nil, fmt.Errorf("cluster PKI: %w", err)
	}
	return kube, nil
}

// AdminKubeconfig returns the admin kubeconfig (client certificate in
// system:masters) for server (default: APIServerURL). It holds a private
// key: write it 0600, never log it.
func (e *Engine) AdminKubeconfig(server string) ([]byte, error) {
	if server == "" {
		server = e.APIServerURL()
	}
	ca, err := e.kubernetesCA()
	if err != nil {
		return nil, err
	}
	admin, err := e.cfg.Store.PKI().EnsureAdmin()
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	return kubeconfig.Render(kubeconfig.Config{Cluster: e.cfg.Cluster.Metadata.Name, User: "admin", Server: server,
		CA: ca.CertPEM, CertPEM: admin.CertPEM, KeyPEM: admin.KeyPEM})
}

// restConfig is the admin REST config for server, dialling through the
// jump hosts when needed.
func (e *Engine) restConfig(server string) (*rest.Config, error) {
	kc, err := e.AdminKubeconfig(server)
	if err != nil {
		return nil, err
	}
	rc, err := kubeconfig.REST(kc)
	if err != nil {
		return nil, err
	}
	rc.Dial = e.Dial
	rc.Timeout = 30 * time.Second
	rc.QPS, rc.Burst = 50, 100
	return rc, nil
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
		IPs: e.IPs(), PKI: e.cfg.Store.PKI(), Binaries: bins, Logger: e.log, ReadyTimeout: e.cfg.HealthTimeout})
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
	plain, err := e.Artifacts().Resolve(ctx, append([]string{node.ImagePause, node.ImageCoreDNS, ImageProbe}, node.RuntimeBinaries()...)...)
	if err != nil {
		return nil, err
	}
	maps.Copy(bins, plain)
	ca, err := e.kubernetesCA()
	if err != nil {
		return nil, err
	}
	return node.Phases(node.Options{Cluster: e.cfg.Cluster, IPs: e.IPs(), PKI: e.cfg.Store.PKI(),
		CA: ca.CertPEM, Server: e.APIServerURL(), Binaries: bins, Profile: e.nodeProfile(),
		ExtraImages: map[string]string{ImageProbe: ProbeImage},
		Select:      inventory.Selector{Servers: names}, Logger: e.log})
}

// addonPhases apply CoreDNS and the node labels through the API (server-
// side apply). A dry run skips them: what the API holds is compared at
// apply.
func (r *applyRun) addonPhases() []phase.Phase {
	e := r.e
	step := func(id string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			cs, err := e.Clientset()
			if err != nil {
				return err
			}
			names := r.limit(hostNames(e.cfg.Cluster.Hosts()))
			changed, err := addons.ApplyStep(ctx, cs, id, addons.Options{Cluster: e.cfg.Cluster, IPs: e.IPs(),
				Select: inventory.Selector{Servers: names}, WaitForNodes: e.cfg.GateTimeout, FRU: e.cfg.FRU, Logger: e.log})
			r.res.APIChanges = append(r.res.APIChanges, changed...)
			return err
		}
	}
	notDry := func() bool { return !r.dry }
	return []phase.Phase{
		&funcPhase{id: addons.IDCoreDNS, title: "CoreDNS through the API", run: step(addons.IDCoreDNS), should: notDry},
		&funcPhase{id: addons.IDNodeLabels, title: "node labels through the API", run: step(addons.IDNodeLabels), should: notDry},
	}
}
