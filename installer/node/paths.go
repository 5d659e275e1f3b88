package node

import "strings"

// Files and units on a node.
const (
	BinDir             = "/usr/local/bin"
	SbinDir            = "/usr/local/sbin" // runc, where upstream installs it
	ContainerdDir      = "/etc/containerd"
	ContainerdConfig   = ContainerdDir + "/config.toml"
	ContainerdUnit     = "containerd.service"
	ContainerdUnitFile = "/etc/systemd/system/" + ContainerdUnit
	CNIBinDir          = "/opt/cni/bin"
	CNIConfDir         = "/etc/cni/net.d"
	CNIConfig          = CNIConfDir + "/10-tricenter.conflist"
	CNINetwork         = "tricenter"
	CNIBridge          = "cni0"
	CNIStateDir        = "/var/lib/cni"
	ImageDir           = "/var/lib/tricenter/images"
	KubeletDir         = "/etc/kubernetes/kubelet"
	KubeletConfig      = KubeletDir + "/config.yaml"
	KubeletKubeconfig  = KubeletDir + "/kubeconfig"
	KubeletCA          = KubeletDir + "/ca.crt"
	KubeletCert        = KubeletDir + "/pki/kubelet.crt"
	KubeletKey         = KubeletDir + "/pki/kubelet.key"
	KubeletUnit        = "kubelet.service"
	KubeletUnitFile    = "/etc/systemd/system/" + KubeletUnit
	KubeletStateDir    = "/var/lib/kubelet"
	StaticPodDir       = "/etc/kubernetes/manifests"
	KubeProxyDir       = "/etc/kubernetes/kube-proxy"
	KubeProxyConfig    = KubeProxyDir + "/config.yaml"
	KubeProxyKubecfg   = KubeProxyDir + "/kubeconfig"
	KubeProxyUnit      = "kube-proxy.service"
	KubeProxyUnitFile  = "/etc/systemd/system/" + KubeProxyUnit
	ContainerdSocket   = "unix:///run/containerd/containerd.sock"
	containerdNS       = "k8s.io"
)

// Install records (phase.Host.InstallFiles): "sha256 size mtime path" per
// uploaded file as verified after the upload, so a re-run trusts the sha256
// while size and mtime match instead of hashing the binaries and image
// tarballs on every node. They go with their directories.
const (
	ContainerdRecord = ContainerdDir + "/binaries.sha256"
	KubeletRecord    = KubeletDir + "/binaries.sha256"
	KubeProxyRecord  = KubeProxyDir + "/binaries.sha256"
	ImagesRecord     = ImageDir + "/images.sha256"
)

func trim(s string) string { return strings.TrimSpace(s) }
