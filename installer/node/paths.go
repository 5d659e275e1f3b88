package node

import (
	"io/fs"
	"strings"
)

// Files and units on a node.
const (
	BinDir            = "/usr/local/bin"
	ContainerdConfig  = "/etc/containerd/config.toml"
	ContainerdUnit    = "containerd.service"
	CNIBinDir         = "/usr/lib/cni" // Debian's containernetworking-plugins
	CNIConfDir        = "/etc/cni/net.d"
	CNIConfig         = CNIConfDir + "/10-tricenter.conflist"
	CNINetwork        = "tricenter"
	CNIBridge         = "cni0"
	CNIStateDir       = "/var/lib/cni"
	ImageDir          = "/var/lib/tricenter/images"
	KubeletDir        = "/etc/kubernetes/kubelet"
	KubeletConfig     = KubeletDir + "/config.yaml"
	KubeletKubeconfig = KubeletDir + "/kubeconfig"
	KubeletCA         = KubeletDir + "/ca.crt"
	KubeletCert       = KubeletDir + "/pki/kubelet.crt"
	KubeletKey        = KubeletDir + "/pki/kubelet.key"
	KubeletUnit       = "kubelet.service"
	KubeletUnitFile   = "/etc/systemd/system/" + KubeletUnit
	KubeletStateDir   = "/var/lib/kubelet"
	StaticPodDir      = "/etc/kubernetes/manifests"
	KubeProxyDir      = "/etc/kubernetes/kube-proxy"
	KubeProxyConfig   = KubeProxyDir + "/config.yaml"
	KubeProxyKubecfg  = KubeProxyDir + "/kubeconfig"
	KubeProxyUnit     = "kube-proxy.service"
	KubeProxyUnitFile = "/etc/systemd/system/" + KubeProxyUnit
	ContainerdSocket  = "unix:///run/containerd/containerd.sock"
	containerdNS      = "k8s.io"
)

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }

func trim(s string) string { return strings.TrimSpace(s) }
