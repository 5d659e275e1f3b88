package artifacts

import "github.com/tricenter/terraform-provider-tricenter/inventory"

// The binaries of a release (the artifact set holds them Versioned).
var (
	KubernetesBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"}
	EtcdBinaries       = []string{"etcd", "etcdctl", "etcdutl"}
)

// DefaultName is the artifact name of bin in the default releases
// (inventory.DefaultKubernetesVersion, inventory.DefaultEtcdVersion):
// "kubelet" → "kubelet-v1.37.2"; names of no release (images, the BGP
// agent, the container runtime) are returned as they are.
func DefaultName(bin string) string {
	for _, b := range KubernetesBinaries {
		if b == bin {
			return Versioned(bin, inventory.DefaultKubernetesVersion)
		}
	}
	for _, b := range EtcdBinaries {
		if b == bin {
			return Versioned(bin, inventory.DefaultEtcdVersion)
		}
	}
	return bin
}
