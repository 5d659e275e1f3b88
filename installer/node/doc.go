// Package node installs the Kubernetes node agents on servers: the
// container runtime from the artifact set (containerd 2, runc and the CNI
// plugins, built from their pinned modules, with tricenter's unit and
// configuration), the CNI network (bridge + host-local with the node's pod
// CIDR from IPAM; routed, no NAT: pod CIDRs are announced by the node's BGP
// agent), the air-gapped pause and CoreDNS images, kubelet and kube-proxy.
// Phases returns them as phases of the one phase engine, each with a
// stable ID (IDPreflight, IDContainerd, …), after a preflight that refuses
// a server the kubelet would refuse (cgroup v1 unless
// spec.kubernetes.failCgroupV1 is false); every remote change goes through
// the engine's mutation gate, so a dry run lists what would change per
// host.
//
// # Kubelet credentials: client certificates from tricenter's CA
//
// A kubelet authenticates to the API with a client certificate
// (CN system:node:<server>, O system:nodes) that tricenter issues from the
// cluster's Kubernetes CA (installer/pki EnsureKubelet) and writes into the
// kubelet's kubeconfig; its HTTPS endpoint uses a serving certificate from
// the same CA (SANs: the node's name and address), which kube-apiserver
// verifies with --kubelet-certificate-authority. There is no TLS bootstrap:
// no bootstrap tokens to distribute and expire, no CSR approver to run, and
// the Node authorizer and NodeRestriction admission see the same identity
// from the first request. The cost is that tricenter, not the kubelet,
// renews the certificates: a re-apply reissues them before expiry
// (pki.RenewBefore) and restarts only the kubelets whose files changed.
//
// # Profiles
//
// ProfileBareMetal keeps kubelet, containerd and kube-proxy at their
// production defaults. ProfileNspawn adds the settings measured as required
// to run them inside systemd-nspawn machines on a hybrid cgroup v1 host
// (../shared/LAB.md "Kubernetes inside nspawn machines"). Whether a kubelet
// runs on cgroup v1 is the inventory's choice (failCgroupV1), not the
// profile's.
package node
