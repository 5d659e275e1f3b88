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
	"sigs.k8s.io/yaml"
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

// DefaultPodPidsLimit is every pod's limit on processes and threads
// (podPidsLimit, CIS 4.2.13): a fork bomb in one pod exhausts its own
// limit, not the node's pid space (kernel.pid_max: 32768, or 1024 per CPU,
// by the kernel's default; 4194304 where systemd raises it). 4096 is far
// above what ordinary pods use (CoreDNS and tricenter's Go probes run tens
// of threads, a JVM a few hundred); a pod that needs more is a workload to
// size, not a default to raise.
const DefaultPodPidsLimit int64 = 4096

// KubeletTLSMinVersion is the lowest TLS version the kubelet's HTTPS
// endpoint accepts (CIS 4.2.12).
const KubeletTLSMinVersion = "VersionTLS12"

// KubeletTLSCipherSuites are the TLS 1.2 cipher suites the kubelet's HTTPS
// endpoint accepts (CIS 4.2.12): forward secrecy (ECDHE) with AEAD
// ciphers (AES-GCM, ChaCha20-Poly1305) only, ECDSA first (tricenter's
// serving certificates hold P-256 keys), RSA for a certificate an operator
// brings. TLS 1.3 suites are not configurable and all strong. The
// ChaCha20 names are the ones the CIS benchmark lists (the kubelet accepts
// them as aliases of Go's …_SHA256 names).
var KubeletTLSCipherSuites = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
}

// ProtectKernelDefaults reports whether the kubelet of profile p runs with
// protectKernelDefaults (CIS 4.2.6): it then refuses to start while a
// kernel setting it depends on (KernelTunables) differs, instead of
// changing the kernel itself, so node/kubelet sets them first
// (KernelTunablesConfig). Not in ProfileNspawn: an nspawn machine shares
// its host's kernel and its /proc/sys/vm and /proc/sys/kernel are
// read-only, so nothing inside it can set them; the lab sets them on the
// host (acceptance/nspawn HostSysctls) and the kubelet finds them set.
func ProtectKernelDefaults(p Profile) bool { return p != ProfileNspawn }

// RenderKubeletConfig renders the KubeletConfiguration (typed,
// k8s.io/kubelet/config/v1beta1): webhook authentication with the cluster
// CA for client certificates, no anonymous access, Webhook authorization,
// no read-only port, the systemd cgroup driver, cluster DNS, the serving
// certificate with TLS 1.2+ and KubeletTLSCipherSuites, the
// RuntimeDefault seccomp profile for every container that names none
// (seccompDefault), DefaultPodPidsLimit, protectKernelDefaults where the
// profile allows it (ProtectKernelDefaults), the node's pod CIDR, the
// control-plane taint of a control-plane-only server, failCgroupV1 as the
// inventory says, and the profile's settings. Certificate rotation by the
// kubelet stays off: tricenter renews its certificates (see the package
// documentation).
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
		TLSCipherSuites:          KubeletTLSCipherSuites,
		TLSMinVersion:            KubeletTLSMinVersion,
		ReadOnlyPort:             0, // rendered explicitly below
		SeccompDefault:           ptr(true),
		PodPidsLimit:             ptr(DefaultPodPidsLimit),
		ProtectKernelDefaults:    ProtectKernelDefaults(p.Profile),
		PodCIDR:                  p.PodCIDR.Masked().String(),
		StaticPodPath:            StaticPodDir,
		// tricenter issues and renews the client and serving
		// certificates (doc.go): no CSRs, no bootstrap.
		RotateCertificates: false,
		ServerTLSBootstrap: false,
		FailCgroupV1:       p.FailCgroupV1,
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
	have, err := toMap(c)
	if err != nil {
		return nil, err
	}
	zero, err := toMap(kubeletv1beta1.KubeletConfiguration{})
	if err != nil {
		return nil, err
	}
	prune(have, zero)
	// readOnlyPort is a plain int32 (omitempty): a file without it already
	// means no read-only port, but the kubelet's flag default is 10255, so
	// the file says 0 for whoever audits it (CIS 4.2.4).
	have["readOnlyPort"] = 0
	return yaml.Marshal(have)
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

// The node agents' files are for root only (the agents run as root; CIS
// 4.1.1–4.1.10: mode 0600 or stricter, owner root:root); sysctl.d files
// are world-readable as sysctl.d(5) expects; kernelApplied marks the
// lines of kernelTunablesQuery.
const (
	rootOnly      = 0o600
	rootOwner     = "root:root"
	sysctlMode    = 0o644
	kernelApplied = "tricenter-sysctl"
)

// KernelTunable is one kernel setting the kubelet depends on.
type KernelTunable struct {
	Key   string // as sysctl names it: vm.overcommit_memory
	Value string
}

// KernelTunables are the kernel settings the kubelet checks when it
// starts (setupKernelTunables in k8s.io/kubernetes
// pkg/kubelet/cm/container_manager_linux.go, the values of
// k8s.io/component-helpers/node/util/sysctl): without
// protectKernelDefaults it writes them itself, with it it refuses to
// start while one differs.
var KernelTunables = []KernelTunable{
	{"vm.overcommit_memory", "1"},
	{"vm.panic_on_oom", "0"},
	{"kernel.panic", "10"},
	{"kernel.panic_on_oops", "1"},
	{"kernel.keys.root_maxkeys", "1000000"},
	{"kernel.keys.root_maxbytes", "25000000"},
}

// KernelTunablesConfig keeps KernelTunables across reboots where the
// kubelet runs with protectKernelDefaults. systemd-sysctl applies the
// files of every sysctl.d directory in the order of their names, the last
// one winning: "99-tricenter-…" comes after the distributions' own files
// (Debian's 99-sysctl.conf, the old /etc/sysctl.conf, among them), so they
// are in force before the kubelet starts after a reboot.
const KernelTunablesConfig = "/etc/sysctl.d/99-tricenter-kubelet.conf"

// RenderKernelTunables renders KernelTunablesConfig.
func RenderKernelTunables() []byte {
	var b strings.Builder
	b.WriteString("# Written by tricenter: the kernel settings the kubelet (protectKernelDefaults)\n" +
		"# requires; it refuses to start while one differs.\n")
	for _, t := range KernelTunables {
		b.WriteString(t.Key + " = " + t.Value + "\n")
	}
	return []byte(b.String())
}

// kernelTunablesQuery prints "tricenter-sysctl KEY VALUE" per
// KernelTunables entry as the running kernel has it ("absent" for a
// setting the kernel lacks).
func kernelTunablesQuery() string {
	var b strings.Builder
	for _, t := range KernelTunables {
		p := "/proc/sys/" + strings.ReplaceAll(t.Key, ".", "/")
		fmt.Fprintf(&b, "echo \"%s %s $(cat %s 2>/dev/null || echo absent)\"\n", kernelApplied, t.Key, p)
	}
	return b.String()
}

// KernelTunablesDiffering reads kernelTunablesQuery's output and returns
// the settings that differ from KernelTunables, as "key=value (want
// value)"; a setting the output does not report differs. Lines it does
// not know (a login script's) are skipped.
func KernelTunablesDiffering(out string) []string {
	got := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == kernelApplied {
			got[f[1]] = f[2]
		}
	}
	var off []string
	for _, t := range KernelTunables {
		v, ok := got[t.Key]
		if !ok {
			v = "unknown"
		}
		if v != t.Value {
			off = append(off, t.Key+"="+v+" (want "+t.Value+")")
		}
	}
	return off
}

// kernelTunables writes KernelTunablesConfig and applies it when it
// changed or the running kernel differs, before the kubelet (with
// protectKernelDefaults) starts; then it checks the kernel took them. In
// profiles without protectKernelDefaults it does nothing: the kubelet
// sets them itself where it can.
func (r *run) kernelTunables(ctx context.Context, h *phase.Host) error {
	if !ProtectKernelDefaults(r.o.Profile) {
		return nil
	}
	res, err := h.WriteFile(ctx, KernelTunablesConfig, RenderKernelTunables(), sysctlMode)
	if err != nil {
		return err
	}
	out, err := h.Query(ctx, kernelTunablesQuery())
	if err != nil {
		return fmt.Errorf("reading the kernel settings the kubelet requires: %w", err)
	}
	off := KernelTunablesDiffering(out)
	if !res.Changed && len(off) == 0 {
		return nil
	}
	if len(off) > 0 {
		h.Logf("setting kernel settings the kubelet requires: %s", strings.Join(off, ", "))
	}
	if _, err := h.Sudo(ctx, "sysctl -q -p "+KernelTunablesConfig); err != nil {
		return fmt.Errorf("applying %s: %w", KernelTunablesConfig, err)
	}
	if h.DryRun() {
		return nil
	}
	if out, err = h.Query(ctx, kernelTunablesQuery()); err != nil {
		return fmt.Errorf("reading the kernel settings the kubelet requires: %w", err)
	}
	if off := KernelTunablesDiffering(out); len(off) > 0 {
		return fmt.Errorf("kernel settings %s after sysctl -p %s: the kubelet (protectKernelDefaults) would refuse to start; "+
			"find what sets them otherwise (a later sysctl.d file, a tuning daemon, a read-only /proc/sys); "+
			"servers that share their host's kernel (nspawn machines) need spec.kubernetes.nodeProfile: nspawn",
			strings.Join(off, ", "), KernelTunablesConfig)
	}
	return nil
}

// kubeletFiles are what node/kubelet installs: the binary, and the CA,
// certificate, key, kubeconfig, configuration and unit, each 0600
// root:root (CIS 4.1.1/4.1.2 unit, 4.1.5/4.1.6 kubeconfig, 4.1.7/4.1.8
// client CA, 4.1.9/4.1.10 configuration). InstallFiles fixes the mode or
// owner of a file whose content is already right, so a node installed by
// an earlier release converges on the next apply.
func kubeletFiles(bin string, ca []byte, serving *pki.KeyPair, kubeconfig, config, unit []byte) []phase.File {
	return []phase.File{
		{Path: BinDir + "/kubelet", Local: bin, Mode: 0o755},
		{Path: KubeletCA, Data: ca, Mode: rootOnly, Owner: rootOwner},
		{Path: KubeletCert, Data: serving.CertPEM, Mode: rootOnly, Owner: rootOwner},
		{Path: KubeletKey, Data: serving.KeyPEM, Mode: rootOnly, Owner: rootOwner, Secret: true},
		{Path: KubeletKubeconfig, Data: kubeconfig, Mode: rootOnly, Owner: rootOwner, Secret: true},
		{Path: KubeletConfig, Data: config, Mode: rootOnly, Owner: rootOwner},
		{Path: KubeletUnitFile, Data: unit, Mode: rootOnly, Owner: rootOwner},
	}
}

// kubelet sets the kernel settings the kubelet requires
// (kernelTunables), installs the binary, certificates, kubeconfig,
// configuration and unit (phase.Host.InstallFiles, the binary recorded in
// KubeletRecord), and restarts the kubelet only when one of them changed.
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
	if err := r.kernelTunables(ctx, h); err != nil {
		return err
	}
	done, err := h.InstallFiles(ctx, KubeletRecord,
		kubeletFiles(r.o.Binaries[BinKubelet], r.o.CA, f.serving, kc, cfg, RenderKubeletUnit(p)))
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
