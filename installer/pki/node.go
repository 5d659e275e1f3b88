package pki

import (
	"errors"
	"fmt"
	"net"
)

// Names of the node certificates under the Kubernetes authority.
const (
	// KubernetesCACommonName names the Kubernetes CA when this package
	// creates it (the control plane may have created it first; an existing
	// authority is kept whatever its name).
	KubernetesCACommonName = "tricenter kubernetes CA"
	// KubeProxyClient is kube-proxy's client certificate (one for every
	// node: kube-proxy has no per-node identity in RBAC).
	KubeProxyClient = "client-kube-proxy"
	// LBAgentGroup is the group of the node BGP agents' client
	// certificates, bound to read-only access to Services and
	// EndpointSlices (installer/addons).
	LBAgentGroup = "tricenter:lb-agents"
)

// LBAgentFile names a node BGP agent's client certificate (without
// extension) under the Kubernetes authority.
func LBAgentFile(node string) string { return "lb-agent-" + node }

// LBAgentUser is the Kubernetes user a node's BGP agent authenticates as.
func LBAgentUser(node string) string { return "tricenter:lb-agent:" + node }

// EnsureLBAgent loads or issues the client certificate a node's BGP agent
// watches LoadBalancer Services with (CN tricenter:lb-agent:<node>, O
// LBAgentGroup): one per node, so the audit log tells the nodes apart.
func (s *Store) EnsureLBAgent(node string) (*KeyPair, error) {
	if node == "" {
		return nil, errors.New("load-balancer agent certificate: empty node name")
	}
	ca, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		return nil, err
	}
	kp, _, err := s.Leaf(ca, KubernetesCA, LBAgentFile(node), Request{
		CommonName: LBAgentUser(node), Organization: []string{LBAgentGroup}, Usage: Client,
	})
	return kp, err
}

// KubeletClientFile and KubeletServingFile name a node's kubelet
// certificates (without extension) under the Kubernetes authority.
func KubeletClientFile(node string) string  { return "kubelet-client-" + node }
func KubeletServingFile(node string) string { return "kubelet-serving-" + node }

// NodeUser is the Kubernetes user name a kubelet authenticates as; the
// Node authorizer and NodeRestriction admission key on it.
func NodeUser(node string) string { return "system:node:" + node }

// EnsureKubelet loads or issues a node's kubelet certificates, both signed
// by the Kubernetes CA: client (CN system:node:<node>, O system:nodes) for
// the kubelet's kubeconfig, and serving (SANs: the node name and ips) for
// the kubelet's HTTPS endpoint, which kube-apiserver verifies with
// --kubelet-certificate-authority. Certificates that still match are kept.
func (s *Store) EnsureKubelet(node string, ips []net.IP) (client, serving *KeyPair, err error) {
	if node == "" {
		return nil, nil, errors.New("kubelet certificates: empty node name")
	}
	if len(ips) == 0 {
		return nil, nil, fmt.Errorf("kubelet certificates for %s: no node address", node)
	}
	ca, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		return nil, nil, err
	}
	client, _, err = s.Leaf(ca, KubernetesCA, KubeletClientFile(node), Request{
		CommonName: NodeUser(node), Organization: []string{"system:nodes"}, Usage: Client,
	})
	if err != nil {
		return nil, nil, err
	}
	serving, _, err = s.Leaf(ca, KubernetesCA, KubeletServingFile(node), Request{
		CommonName: NodeUser(node), DNSNames: []string{node}, IPs: ips, Usage: Server,
	})
	if err != nil {
		return nil, nil, err
	}
	return client, serving, nil
}

// EnsureKubeProxy loads or issues kube-proxy's client certificate (CN
// system:kube-proxy, bound to the system:node-proxier ClusterRole by the
// default RBAC policy).
func (s *Store) EnsureKubeProxy() (*KeyPair, error) {
	ca, err := s.CA(KubernetesCA, KubernetesCACommonName)
	if err != nil {
		return nil, err
	}
	kp, _, err := s.Leaf(ca, KubernetesCA, KubeProxyClient, Request{CommonName: "system:kube-proxy", Usage: Client})
	return kp, err
}
