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
// from the first request.
//
// # Certificate rotation: tricenter renews, the kubelet does not
//
// Both certificates are rotated by tricenter, not by the kubelet:
// rotateCertificates and serverTLSBootstrap stay off on purpose. A kubelet
// that rotates its own certificates sends CSRs that something must
// approve; kube-controller-manager approves client CSRs only, so serving
// CSRs would need an approver of our own that checks each request against
// the node's name and addresses — a component to run, secure and keep
// available, whose mistake lets one node obtain a certificate for another
// node's name or address. With tricenter issuing both, a node's identity
// stays what the inventory and tricenter's PKI say it is, the node never
// holds a credential that can ask for more certificates, and there is
// nothing to approve. The cost is that tricenter, not the kubelet, renews
// them: an apply, or a certificate renewal, reissues each leaf within
// pki.RenewBefore of its expiry and restarts only the kubelets whose
// files changed.
//
// # Hardening (CIS Kubernetes Benchmark, section 4)
//
// The KubeletConfiguration (RenderKubeletConfig) turns off anonymous
// access and the read-only port, authorizes through the API (Webhook),
// serves TLS 1.2+ with ECDHE and AEAD cipher suites only
// (KubeletTLSCipherSuites), gives every container that names no seccomp
// profile the runtime's default one (seccompDefault), limits every pod to
// DefaultPodPidsLimit processes, and runs with protectKernelDefaults
// where the server has its own kernel (ProtectKernelDefaults): node/kubelet
// then writes KernelTunablesConfig and applies it before the kubelet
// starts. The kubelet's and kube-proxy's units, configurations,
// kubeconfigs, CA and certificates are 0600 root:root, and an existing
// node converges to these modes on the next apply.
//
// # Profiles
//
// ProfileBareMetal keeps kubelet, containerd and kube-proxy at their
// production defaults. ProfileNspawn adds the settings measured as required
// to run them inside systemd-nspawn machines on a hybrid cgroup v1 host
// (../shared/LAB.md "Kubernetes inside nspawn machines"), and keeps
// protectKernelDefaults off: a machine shares its host's kernel, whose
// vm.* and kernel.* settings it cannot write (the lab sets them on the
// host), so no phase inside it could make them match. Whether a kubelet
// runs on cgroup v1 is the inventory's choice (failCgroupV1), not the
// profile's.
package node
