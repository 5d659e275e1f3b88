package node

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
)

// Node labels tricenter sets.
const (
	LabelRegion = "topology.kubernetes.io/region"
	LabelZone   = "topology.kubernetes.io/zone"
	LabelRack   = "tricenter.io/rack"
)

// TaintControlPlane keeps pods off control-plane-only servers: their
// kubelets register with it (registerWithTaints).
var TaintControlPlane = corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}

// KubeletParams are what a node's kubelet files are rendered from.
type KubeletParams struct {
	Node          string
	NodeIP        netip.Addr
	PodCIDR       netip.Prefix
	ClusterDNS    netip.Addr
	ClusterDomain string
	// Labels are the node labels the kubelet registers with (only keys
	// NodeRestriction lets a kubelet set: see KubeletMaySet).
	Labels map[string]string
	// ControlPlaneOnly taints the node at registration.
	ControlPlaneOnly bool
	// FailCgroupV1 is the kubelet's failCgroupV1 (spec.kubernetes.failCgroupV1;
	// nil keeps the kubelet's default, true: it refuses cgroup v1).
	FailCgroupV1 *bool
	Profile      Profile
}

// KubeletParamsFor derives a server's kubelet parameters from the
// inventory: c's cluster domain and failCgroupV1, the server's address,
// labels and roles, its pod CIDR and the cluster DNS address from ips.
func KubeletParamsFor(c *inventory.Cluster, h inventory.Host, ips *inventory.IPPlan, p Profile) (KubeletParams, error) {
	cidr, ok := ips.PodCIDR(h.Name)
	if !ok {
		return KubeletParams{}, fmt.Errorf("server %s has no pod CIDR", h.Name)
	}
	domain := c.Spec.Network.ClusterDomain
	if domain == "" {
		domain = defaultDomain
	}
	return KubeletParams{
		Node: h.Name, NodeIP: h.Addr(), PodCIDR: cidr, ClusterDNS: ips.ClusterDNSIP, ClusterDomain: domain,
		Labels: NodeLabels(h), ControlPlaneOnly: h.HasRole(inventory.RoleControlPlane) && !h.HasRole(inventory.RoleWorker),
		FailCgroupV1: c.Spec.Kubernetes.FailCgroupV1, Profile: p,
	}, nil
}

// NodeLabels are the labels a server's kubelet registers with: region
// (site), zone (center), rack, and the inventory's own labels that a
// kubelet may set. Labels only the API may set (node-role.…) are the
// addons package's.
func NodeLabels(h inventory.Host) map[string]string {
	l := map[string]string{}
	for k, v := range h.Labels {
		if KubeletMaySet(k) {
			l[k] = v
		}
	}
	if h.Site != nil {
		l[LabelRegion] = h.Site.Name
	}
	if h.Center != nil {
		l[LabelZone] = h.Center.Name
	}
	if h.Rack != nil {
		l[LabelRack] = h.Rack.Name
	}
	return l
}

// KubeletMaySet reports whether NodeRestriction admission (and kubelet's
// --node-labels validation) lets a kubelet set label key: anything outside
// the kubernetes.io and k8s.io namespaces, and inside them only the
// well-known topology, os/arch and instance-type labels and the
// kubelet.kubernetes.io/ and node.kubernetes.io/ prefixes.
func KubeletMaySet(key string) bool {
	prefix, _, found := strings.Cut(key, "/")
	if !found {
		return true
	}
	ns := func(d string) bool { return prefix == d || strings.HasSuffix(prefix, "."+d) }
	if !ns("kubernetes.io") && !ns("k8s.io") {
		return true
	}
	if ns("node-restriction.kubernetes.io") {
		return false
	}
	switch key {
	case "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
		"beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
		"node.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/region",
		"failure-domain.beta.kubernetes.io/zone", LabelRegion, LabelZone:
		return true
	}
	return ns("kubelet.kubernetes.io") || ns("node.kubernetes.io")
}

func ptr[T any](v T) *T { return &v }

// RenderKubeletConfig renders the KubeletConfiguration (typed,
// k8s.io/kubelet/config/v1beta1): webhook authentication with the cluster
// CA for client certificates, no anonymous access, Webhook authorization,
// the systemd cgroup driver, cluster DNS, the serving certificate, the
// node's pod CIDR, the control-plane taint of a control-plane-only server,
// failCgroupV1 as the inventory says, and the profile's settings.
func RenderKubeletConfig(p KubeletParams) ([]byte, error) {
	if !p.ClusterDNS.IsValid() || !p.PodCIDR.IsValid() {
		return nil, fmt.Errorf("kubelet config for %s: cluster DNS address and pod CIDR are required", p.Node)
	}
	c := kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr(true)},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: KubeletCA},
		},
		Authorization:            kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		CgroupDriver:             "systemd",
		ContainerRuntimeEndpoint: ContainerdSocket,
		ClusterDNS:               []string{p.ClusterDNS.String()},
		ClusterDomain:            p.ClusterDomain,
		TLSCertFile:              KubeletCert,
		TLSPrivateKeyFile:        KubeletKey,
		PodCIDR:                  p.PodCIDR.Masked().String(),
		StaticPodPath:            StaticPodDir,
		RotateCertificates:       false,
		ServerTLSBootstrap:       false,
		FailCgroupV1:             p.FailCgroupV1,
	}
	if p.ControlPlaneOnly {
		c.RegisterWithTaints = []corev1.Taint{TaintControlPlane}
	}
	if p.Profile == ProfileNspawn {
		c.FailSwapOn = ptr(false)
		c.KubeletCgroups = "/system.slice/" + KubeletUnit
		c.OOMScoreAdj = ptr(int32(0))
		c.ImageGCHighThresholdPercent = ptr(int32(100))
		c.EvictionHard = map[string]string{
			"memory.available": "0%", "nodefs.available": "0%", "nodefs.inodesFree": "0%",
			"imagefs.available": "0%", "imagefs.inodesFree": "0%",
		}
		c.ResolverConfig = ptr("") // keep DNS inside the lab
	}
	return marshalSparse(c, kubeletv1beta1.KubeletConfiguration{})
}

// RenderKubeletUnit renders kubelet.service. Settings that are flags, not
// config fields, go on the command line: node IP, name, labels (and, in
// nspawn machines, --runtime-cgroups).
func RenderKubeletUnit(p KubeletParams) []byte {
	args := []string{
		BinDir + "/kubelet",
		"--config=" + KubeletConfig,
		"--kubeconfig=" + KubeletKubeconfig,
		"--node-ip=" + p.NodeIP.String(),
		"--hostname-override=" + p.Node,
	}
	if len(p.Labels) > 0 {
		keys := make([]string, 0, len(p.Labels))
		for k := range p.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kv := make([]string, len(keys))
		for i, k := range keys {
			kv[i] = k + "=" + p.Labels[k]
		}
		args = append(args, "--node-labels="+strings.Join(kv, ","))
	}
	if p.Profile == ProfileNspawn {
		args = append(args, "--runtime-cgroups=/system.slice/"+ContainerdUnit)
	}
	return []byte(`# Written by tricenter.
[Unit]
Description=Kubernetes kubelet (tricenter)
Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/
Wants=network-online.target
After=network-online.target ` + ContainerdUnit + `
Requires=` + ContainerdUnit + `

[Service]
ExecStart=` + strings.Join(args, " \\\n  ") + `
Restart=always
RestartSec=2
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
`)
}

// RenderKubeletKubeconfig renders the kubelet's kubeconfig (clientcmd)
// with its client certificate. It holds a private key: write it 0600.
func RenderKubeletKubeconfig(cluster, server string, ca []byte, client *pki.KeyPair, node string) ([]byte, error) {
	return kubeconfig.Render(kubeconfig.Config{Cluster: cluster, User: pki.NodeUser(node), Server: server, CA: ca,
		CertPEM: client.CertPEM, KeyPEM: client.KeyPEM})
}

// kubelet installs the binary, certificates, kubeconfig, configuration
// and unit (phase.Host.InstallFiles, the binary recorded in KubeletRecord),
// and restarts the kubelet only when one of them changed.
func (r *run) kubelet(ctx context.Context, h *phase.Host) error {
	f, err := r.facts(h)
	if err != nil {
		return err
	}
	p, err := KubeletParamsFor(r.o.Cluster, f.host, r.o.IPs, r.o.Profile)
	if err != nil {
		return err
	}
	cfg, err := RenderKubeletConfig(p)
	if err != nil {
		return err
	}
	kc, err := RenderKubeletKubeconfig(r.clusterName(), r.o.Server, r.o.CA, f.client, h.Name)
	if err != nil {
		return err
	}
	done, err := h.InstallFiles(ctx, KubeletRecord, []phase.File{
		{Path: BinDir + "/kubelet", Local: r.o.Binaries[BinKubelet], Mode: 0o755},
		{Path: KubeletCA, Data: r.o.CA},
		{Path: KubeletCert, Data: f.serving.CertPEM},
		{Path: KubeletKey, Data: f.serving.KeyPEM, Mode: 0o600, Secret: true},
		{Path: KubeletKubeconfig, Data: kc, Mode: 0o600, Secret: true},
		{Path: KubeletConfig, Data: cfg},
		{Path: KubeletUnitFile, Data: RenderKubeletUnit(p)},
	})
	if err != nil {
		return fmt.Errorf("installing kubelet: %w", err)
	}
	if done.Has(KubeletUnitFile) {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return err
		}
	}
	return ensureRunning(ctx, h, KubeletUnit, done.Any())
}
