package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Profile selects host-specific settings.
type Profile string

// Profiles.
const (
	// ProfileBareMetal keeps production defaults (the default): real
	// servers and VMs, each with its own kernel. The kubelet runs with
	// protectKernelDefaults and node/kubelet sets the kernel settings it
	// requires (KernelTunablesConfig).
	ProfileBareMetal Profile = "bare-metal"
	// ProfileNspawn runs the agents inside systemd-nspawn machines (the
	// lab). They share the host's kernel and cannot write its vm.* and
	// kernel.* settings, so the kubelet runs without
	// protectKernelDefaults (it finds the values the lab set on the host
	// and has nothing to write) and node/kubelet writes no
	// KernelTunablesConfig; every other hardening setting is the same as
	// on bare metal.
	ProfileNspawn Profile = "nspawn"
)

// Phase IDs, stable for --only/--skip-phases and plan output.
const (
	IDPreflight  = "node/preflight"
	IDContainerd = "node/containerd"
	IDImages     = "node/images"
	IDCNI        = "node/cni"
	IDKubelet    = "node/kubelet"
	IDKubeProxy  = "node/kube-proxy"
)

// Keys of Options.Binaries.
const (
	BinKubelet      = "kubelet"
	BinKubeProxy    = "kube-proxy"
	ImagePause      = "pause.oci.tar"
	ImageCoreDNS    = "coredns.oci.tar"
	DefaultPause    = "registry.k8s.io/pause:3.10.2"
	DefaultCoreDNS  = "registry.k8s.io/coredns/coredns:v1.12.0"
	defaultDomain   = "cluster.local"
	defaultClusterN = "kubernetes"
)

// Options configure the node phases.
type Options struct {
	Cluster *inventory.Cluster
	IPs     *inventory.IPPlan
	// PKI issues the kubelet and kube-proxy certificates.
	PKI *pki.Store
	// CA is the Kubernetes CA bundle (PEM) the kubeconfigs and kubelets trust.
	CA []byte
	// Server is the API URL nodes use: https://<API VIP>:6443.
	Server string
	// Binaries are local paths by key: "kubelet", "kube-proxy",
	// "pause.oci.tar", "coredns.oci.tar" and the container runtime's
	// (RuntimeBinaries).
	Binaries map[string]string
	// PauseImage is containerd's pinned sandbox image (default
	// DefaultPause); the pause tarball must hold it.
	PauseImage string
	// CoreDNSImage is the image the CoreDNS tarball holds (default
	// DefaultCoreDNS).
	CoreDNSImage string
	// ExtraImages are further image tarballs to import, by Binaries key
	// (e.g. the gates' probe image), with the image each holds.
	ExtraImages map[string]string
	// ControlPlaneImages are imported only on control-plane servers, for
	// pods that run only there (the load-balancer controller).
	ControlPlaneImages map[string]string
	Profile            Profile
	// Select picks the servers (zero: every server).
	Select inventory.Selector
	Logger *slog.Logger
}

// nodeFacts is what one server's files are rendered from.
type nodeFacts struct {
	host    inventory.Host
	ip      netip.Addr
	podCIDR netip.Prefix
	client  *pki.KeyPair
	serving *pki.KeyPair
}

type run struct {
	o     Options
	log   *slog.Logger
	nodes map[string]*nodeFacts
	proxy *pki.KeyPair
}

// Phases returns the node phases for the selected servers, in order. It
// issues (or loads) the node certificates from o.PKI first, so an error
// about a server's address or pod CIDR comes before any host is touched.
func Phases(o Options) ([]phase.Phase, error) {
	r, err := prepare(o)
	if err != nil {
		return nil, err
	}
	mk := func(id, title string, apply func(context.Context, *phase.Host) error) *phase.HostPhase {
		return &phase.HostPhase{ID: id, Name: title, Select: o.Select, Apply: apply}
	}
	return []phase.Phase{
		mk(IDPreflight, "Check what the kubelet needs of the server", r.preflight),
		mk(IDContainerd, "Install containerd, runc and the CNI plugins", r.containerd),
		mk(IDImages, "Import the pause and CoreDNS images", r.images),
		mk(IDCNI, "Configure the pod network (CNI)", r.cni),
		mk(IDKubelet, "Install kubelet", r.kubelet),
		mk(IDKubeProxy, "Install kube-proxy", r.kubeProxy),
	}, nil
}

func prepare(o Options) (*run, error) {
	var missing []string
	if o.Cluster == nil {
		missing = append(missing, "Cluster")
	}
	if o.IPs == nil {
		missing = append(missing, "IPs")
	}
	if o.PKI == nil {
		missing = append(missing, "PKI")
	}
	if len(o.CA) == 0 {
		missing = append(missing, "CA")
	}
	if o.Server == "" {
		missing = append(missing, "Server")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("node phases need %v", missing)
	}
	keys := append([]string{BinKubelet, BinKubeProxy, ImagePause, ImageCoreDNS}, RuntimeBinaries()...)
	for _, m := range []map[string]string{o.ExtraImages, o.ControlPlaneImages} {
		for k, ref := range m {
			if ref == "" {
				return nil, fmt.Errorf("node phases: extra image tarball %q names no image", k)
			}
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		p := o.Binaries[k]
		if p == "" {
			return nil, fmt.Errorf("node phases: no local path for %q in the artifacts", k)
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("node phases: artifact %q path %q is not absolute", k, p)
		}
	}
	switch o.Profile {
	case "":
		o.Profile = ProfileBareMetal
	case ProfileBareMetal, ProfileNspawn:
	default:
		return nil, fmt.Errorf("node profile %q: use %q or %q", o.Profile, ProfileBareMetal, ProfileNspawn)
	}
	if o.PauseImage == "" {
		o.PauseImage = DefaultPause
	}
	if o.CoreDNSImage == "" {
		o.CoreDNSImage = DefaultCoreDNS
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !o.IPs.ClusterDNSIP.IsValid() {
		return nil, errors.New("node phases: the IP plan has no cluster DNS address")
	}
	hosts, err := o.Cluster.Select(o.Select)
	if err != nil {
		return nil, err
	}
	r := &run{o: o, log: o.Logger, nodes: map[string]*nodeFacts{}}
	for _, h := range hosts {
		f := &nodeFacts{host: h, ip: h.Addr()}
		if !f.ip.IsValid() {
			return nil, fmt.Errorf("server %s: ssh.address %q is not an IP address (%s.ssh.address)", h.Name, h.SSH.Address, h.Path)
		}
		var ok bool
		if f.podCIDR, ok = o.IPs.PodCIDR(h.Name); !ok {
			return nil, fmt.Errorf("server %s has no pod CIDR in the IP plan: run IPAM (inventory.AllocateIPs) over the current inventory", h.Name)
		}
		f.client, f.serving, err = o.PKI.EnsureKubelet(h.Name, []net.IP{net.IP(f.ip.AsSlice())})
		if err != nil {
			return nil, fmt.Errorf("kubelet certificates for %s: %w", h.Name, err)
		}
		r.nodes[h.Name] = f
	}
	if len(hosts) > 0 {
		if r.proxy, err = o.PKI.EnsureKubeProxy(); err != nil {
			return nil, fmt.Errorf("kube-proxy certificate: %w", err)
		}
	}
	return r, nil
}

func (r *run) facts(h *phase.Host) (*nodeFacts, error) {
	f := r.nodes[h.Name]
	if f == nil {
		return nil, fmt.Errorf("server %s was not selected when the node phases were built", h.Name)
	}
	return f, nil
}

func (r *run) clusterName() string {
	if n := r.o.Cluster.Metadata.Name; n != "" {
		return n
	}
	return defaultClusterN
}

// ensureRunning restarts unit when its files changed or it is not active,
// enabling it first; a unit that runs and changed nothing is left alone.
func ensureRunning(ctx context.Context, h *phase.Host, unit string, changed bool) error {
	enabled, err := h.Query(ctx, "systemctl is-enabled "+unit+" 2>/dev/null || true")
	if err != nil {
		return fmt.Errorf("checking whether %s is enabled: %w", unit, err)
	}
	if trim(enabled) != "enabled" {
		if err := h.Systemctl(ctx, "enable", unit); err != nil {
			return fmt.Errorf("enabling %s: %w", unit, err)
		}
	}
	if !changed {
		active, err := h.Query(ctx, "systemctl is-active "+unit+" 2>/dev/null || true")
		if err != nil {
			return fmt.Errorf("checking whether %s runs: %w", unit, err)
		}
		if trim(active) == "active" {
			return nil
		}
	}
	if err := h.SystemctlRestart(ctx, unit); err != nil {
		return fmt.Errorf("restarting %s: %w", unit, err)
	}
	return nil
}
