package node

import (
	"context"
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/installer/kubeconfig"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	componentbasev1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
)

// KubeProxyParams are what kube-proxy's configuration is rendered from.
type KubeProxyParams struct {
	Node string
	// ClusterCIDR is the cluster's pod CIDR (spec.network.podCIDR): traffic
	// from inside it is local.
	ClusterCIDR string
	Profile     Profile
}

// RenderKubeProxyConfig renders the KubeProxyConfiguration (typed,
// k8s.io/kube-proxy/config/v1alpha1): iptables mode, the cluster CIDR, the
// node name, and in nspawn machines conntrack.maxPerCore 0 (nf_conntrack_max
// is not writable there).
func RenderKubeProxyConfig(p KubeProxyParams) ([]byte, error) {
	if p.ClusterCIDR == "" {
		return nil, fmt.Errorf("kube-proxy config for %s: no cluster CIDR", p.Node)
	}
	c := kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:         metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		ClientConnection: componentbasev1alpha1.ClientConnectionConfiguration{Kubeconfig: KubeProxyKubecfg},
		Mode:             "iptables",
		ClusterCIDR:      p.ClusterCIDR,
		HostnameOverride: p.Node,
	}
	if p.Profile == ProfileNspawn {
		c.Conntrack.MaxPerCore = ptr(int32(0))
	}
	return marshalSparse(c, kubeproxyv1alpha1.KubeProxyConfiguration{})
}

// RenderKubeProxyUnit renders kube-proxy.service.
func RenderKubeProxyUnit() []byte {
	return []byte(`# Written by tricenter.
[Unit]
Description=Kubernetes kube-proxy (tricenter)
Documentation=https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=` + BinDir + `/kube-proxy --config=` + KubeProxyConfig + `
Restart=always
RestartSec=2
StartLimitInterval=0

[Install]
WantedBy=multi-user.target
`)
}

// RenderKubeProxyKubeconfig renders kube-proxy's kubeconfig (clientcmd).
// It holds a private key: write it 0600.
func RenderKubeProxyKubeconfig(cluster, server string, ca []byte, client *pki.KeyPair) ([]byte, error) {
	return kubeconfig.Render(kubeconfig.Config{Cluster: cluster, User: "system:kube-proxy", Server: server, CA: ca,
		CertPEM: client.CertPEM, KeyPEM: client.KeyPEM})
}

// kubeProxyFiles are what node/kube-proxy installs: the binary, and the
// kubeconfig, configuration and unit, each 0600 root:root (CIS
// 4.1.3/4.1.4 for the kubeconfig; the unit and configuration as the
// kubelet's). InstallFiles fixes the mode or owner of a file whose
// content is already right, so an existing node converges.
func kubeProxyFiles(bin string, kubeconfig, config []byte) []phase.File {
	return []phase.File{
		{Path: BinDir + "/kube-proxy", Local: bin, Mode: 0o755},
		{Path: KubeProxyKubecfg, Data: kubeconfig, Mode: rootOnly, Owner: rootOwner, Secret: true},
		{Path: KubeProxyConfig, Data: config, Mode: rootOnly, Owner: rootOwner},
		{Path: KubeProxyUnitFile, Data: RenderKubeProxyUnit(), Mode: rootOnly, Owner: rootOwner},
	}
}

// kubeProxy installs kube-proxy (phase.Host.InstallFiles, the binary
// recorded in KubeProxyRecord) and restarts it only when a file changed.
func (r *run) kubeProxy(ctx context.Context, h *phase.Host) error {
	cfg, err := RenderKubeProxyConfig(KubeProxyParams{Node: h.Name, ClusterCIDR: r.o.Cluster.Spec.Network.PodCIDR, Profile: r.o.Profile})
	if err != nil {
		return err
	}
	kc, err := RenderKubeProxyKubeconfig(r.clusterName(), r.o.Server, r.o.CA, r.proxy)
	if err != nil {
		return err
	}
	done, err := h.InstallFiles(ctx, KubeProxyRecord, kubeProxyFiles(r.o.Binaries[BinKubeProxy], kc, cfg))
	if err != nil {
		return fmt.Errorf("installing kube-proxy: %w", err)
	}
	if done.Has(KubeProxyUnitFile) {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return err
		}
	}
	return ensureRunning(ctx, h, KubeProxyUnit, done.Any())
}
