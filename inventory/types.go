// Package inventory holds tricenter's versioned configuration types
// (apiVersion tricenter.io/v1alpha1, kind Cluster), their defaults and
// validation, IP address management and the placement of etcd members and
// control-plane servers across the three centers.
//
// The package is pure: besides reading the inventory file it does no I/O.
package inventory

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// APIVersion and Kind identify the only schema this package reads.
const (
	APIVersion = "tricenter.io/v1alpha1"
	Kind       = "Cluster"
)

// Cluster is the root of an inventory file.
type Cluster struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`
}

// Metadata names the cluster.
type Metadata struct {
	Name string `yaml:"name" json:"name"`
}

// Spec describes the datacenter and the cluster to build on it.
type Spec struct {
	Sites      []Site     `yaml:"sites" json:"sites"`
	Centers    []Center   `yaml:"centers" json:"centers"`
	Racks      []Rack     `yaml:"racks" json:"racks"`
	SSH        SSHDefault `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	Network    Network    `yaml:"network" json:"network"`
	Kubernetes Kubernetes `yaml:"kubernetes,omitempty" json:"kubernetes,omitempty"`
	Etcd       Etcd       `yaml:"etcd,omitempty" json:"etcd,omitempty"`
	PKI        PKI        `yaml:"pki,omitempty" json:"pki,omitzero"`
}

// Site is a physical location holding one or more centers. Two sites hold
// the three centers: the local site has production and local-dr, the remote
// site has remote-dr.
type Site struct {
	Name        string   `yaml:"name" json:"name"`
	CoreRouters []Router `yaml:"coreRouters,omitempty" json:"coreRouters,omitempty"`
}

// Router is a core router of a site.
type Router struct {
	Name    string `yaml:"name" json:"name"`
	Address string `yaml:"address" json:"address"`
	ASN     uint32 `yaml:"asn" json:"asn"`
}

// CenterRole is the part a center plays in the two-site, three-center design.
type CenterRole string

// The three center roles.
const (
	RoleProduction CenterRole = "production"
	RoleLocalDR    CenterRole = "local-dr"
	RoleRemoteDR   CenterRole = "remote-dr"
)

// Center is a datacenter (an availability zone) inside a site.
type Center struct {
	Name string     `yaml:"name" json:"name"`
	Site string     `yaml:"site" json:"site"`
	Role CenterRole `yaml:"role" json:"role"`
	// RTTMs is the measured round-trip time in milliseconds from this center
	// to the other centers, by center name.
	RTTMs map[string]float64 `yaml:"rttMs,omitempty" json:"rttMs,omitempty"`
	// JumpHost is the SSH bastion through which the installer reaches this
	// center's servers. Optional: without it servers are reached directly.
	JumpHost *JumpHost `yaml:"jumpHost,omitempty" json:"jumpHost,omitempty"`
	// Lost marks a center the operator declared lost in a disaster (its
	// servers are off, burnt or cut off). Its servers stay in the
	// inventory, with their names and addresses, but nothing connects to
	// them: placement, apply and status work with what is left, and
	// tricenter restore rebuilds etcd without them. Clear it once the
	// center's servers are back and wiped (tricenter reset --servers).
	Lost bool `yaml:"lost,omitempty" json:"lost,omitempty"`
}

// JumpHost is an SSH bastion.
type JumpHost struct {
	Name    string `yaml:"name,omitempty" json:"name,omitempty"`
	Address string `yaml:"address" json:"address"`
	Port    int    `yaml:"port,omitempty" json:"port,omitempty"`
	User    string `yaml:"user,omitempty" json:"user,omitempty"`
	KeyFile string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	// Agent uses ssh-agent (SSH_AUTH_SOCK) for this hop (default:
	// spec.ssh.agent).
	Agent *bool `yaml:"agent,omitempty" json:"agent,omitempty"`
	// HostKey pins the bastion's host key: an SSH fingerprint
	// ("SHA256:…") or an authorized_keys style public key line.
	HostKey string `yaml:"hostKey,omitempty" json:"hostKey,omitempty"`
}

// Rack is a rack of servers behind one top-of-rack switch.
type Rack struct {
	Name   string `yaml:"name" json:"name"`
	Center string `yaml:"center" json:"center"`
	TOR    TOR    `yaml:"tor" json:"tor"`
	// Subnet is the rack's server subnet (the TOR's L3 interface lives in it).
	Subnet string `yaml:"subnet" json:"subnet"`
	// MaxServers is the number of server ports of the TOR (default 48).
	MaxServers int `yaml:"maxServers,omitempty" json:"maxServers,omitempty"`
	// NodeASN overrides the ASN derived for this rack's nodes under the
	// per-rack ASN scheme.
	NodeASN uint32   `yaml:"nodeASN,omitempty" json:"nodeASN,omitempty"`
	Servers []Server `yaml:"servers" json:"servers"`
}

// TOR is a top-of-rack switch. Without an ASN the TOR is layer 2/3 only and
// nodes peer with their site's core routers (network.bgp.mode core).
type TOR struct {
	Name    string `yaml:"name" json:"name"`
	ASN     uint32 `yaml:"asn,omitempty" json:"asn,omitempty"`
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Gateway is the default gateway of the rack's servers (default: Address,
	// or the first usable address of the subnet).
	Gateway string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
}

// Role is what a server does in the cluster.
type Role string

// Server roles.
const (
	RoleEtcd         Role = "etcd"
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// Server is one bare-metal server.
type Server struct {
	Name  string `yaml:"name" json:"name"`
	Roles []Role `yaml:"roles" json:"roles"`
	SSH   SSH    `yaml:"ssh" json:"ssh"`
	BMC   *BMC   `yaml:"bmc,omitempty" json:"bmc,omitempty"`
	// PodCIDR pins this node's pod CIDR; normally IPAM assigns it.
	PodCIDR string            `yaml:"podCIDR,omitempty" json:"podCIDR,omitempty"`
	Labels  map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// HasRole reports whether the server was given role r.
func (s *Server) HasRole(r Role) bool {
	for _, x := range s.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// JumpNone in SSH.JumpHost means: reach this server directly, even if its
// center has a jump host.
const JumpNone = "none"

// SSH says how the installer reaches a server. Empty fields take
// spec.ssh's values.
type SSH struct {
	// Address is the server's node address, inside its rack's subnet.
	Address string `yaml:"address" json:"address"`
	Port    int    `yaml:"port,omitempty" json:"port,omitempty"`
	User    string `yaml:"user,omitempty" json:"user,omitempty"`
	KeyFile string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	// Agent uses ssh-agent (SSH_AUTH_SOCK) for authentication.
	Agent *bool `yaml:"agent,omitempty" json:"agent,omitempty"`
	// JumpHost is empty (use the center's jump host, if any) or "none".
	JumpHost string `yaml:"jumpHost,omitempty" json:"jumpHost,omitempty"`
	// HostKey pins the server's host key ("SHA256:…" fingerprint or a
	// public key line).
	HostKey string `yaml:"hostKey,omitempty" json:"hostKey,omitempty"`
}

// SSHDefault holds SSH settings shared by every server and jump host.
type SSHDefault struct {
	Port    int    `yaml:"port,omitempty" json:"port,omitempty"`
	User    string `yaml:"user,omitempty" json:"user,omitempty"`
	KeyFile string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	Agent   *bool  `yaml:"agent,omitempty" json:"agent,omitempty"`
	// KnownHosts lists known_hosts files (one path or a list); they may hold
	// @cert-authority lines for SSH host certificates.
	KnownHosts StringList `yaml:"knownHosts,omitempty" json:"knownHosts,omitempty"`
	// Bastion is a first hop for every connection, in front of the
	// centers' jump hosts (or alone for centers without one).
	Bastion *JumpHost `yaml:"bastion,omitempty" json:"bastion,omitempty"`
	// HostKeyPolicy is "strict" (default) or "accept-new".
	HostKeyPolicy string `yaml:"hostKeyPolicy,omitempty" json:"hostKeyPolicy,omitempty"`
}

// StringList reads either one string or a list of strings.
type StringList []string

// UnmarshalYAML accepts a scalar or a sequence.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = StringList{n.Value}
		return nil
	}
	var xs []string
	if err := n.Decode(&xs); err != nil {
		return fmt.Errorf("line %d: expected a path or a list of paths", n.Line)
	}
	*l = xs
	return nil
}

// BMC is a server's baseboard management controller (IPMI 2.0 over LAN).
type BMC struct {
	Address  string    `yaml:"address" json:"address"`
	Port     int       `yaml:"port,omitempty" json:"port,omitempty"`
	User     string    `yaml:"user" json:"user"`
	Password SecretRef `yaml:"password" json:"password"`
	// CipherSuites are tried in order (default 17, then 3). Suite 0 (no
	// authentication) is refused.
	CipherSuites []int `yaml:"cipherSuites,omitempty" json:"cipherSuites,omitempty"`
}

// SecretRef points at a secret: an environment variable or a file. Secrets
// are never written inline in an inventory.
type SecretRef struct {
	Env  string `yaml:"env,omitempty" json:"env,omitempty"`
	File string `yaml:"file,omitempty" json:"file,omitempty"`
}

// IsZero reports whether no reference is set.
func (r SecretRef) IsZero() bool { return r.Env == "" && r.File == "" }

// BGPMode says whom nodes peer with.
type BGPMode string

// BGP modes.
const (
	BGPModeTOR  BGPMode = "tor"
	BGPModeCore BGPMode = "core"
)

// ASNScheme says how node ASNs are derived.
type ASNScheme string

// Node ASN schemes.
const (
	ASNPerRack ASNScheme = "per-rack"
	ASNPerNode ASNScheme = "per-node"
)

// Network is the cluster's IP plan.
type Network struct {
	PodCIDR string `yaml:"podCIDR" json:"podCIDR"`
	// PodMaskSize is the prefix length of each node's pod CIDR (default 24).
	PodMaskSize int    `yaml:"podMaskSize,omitempty" json:"podMaskSize,omitempty"`
	ServiceCIDR string `yaml:"serviceCIDR" json:"serviceCIDR"`
	// APIVIP is the Kubernetes API virtual IP announced over BGP (default:
	// the first address of the LoadBalancer pool).
	APIVIP string `yaml:"apiVIP,omitempty" json:"apiVIP,omitempty"`
	// LoadBalancerPool lists CIDRs from which service VIPs are taken.
	LoadBalancerPool []string `yaml:"loadBalancerPool,omitempty" json:"loadBalancerPool,omitempty"`
	// LoadBalancerVIPs are service VIPs taken from the pool that every node
	// announces while its kube-proxy is healthy (a static list until
	// LoadBalancer Services drive it).
	LoadBalancerVIPs []string `yaml:"loadBalancerVIPs,omitempty" json:"loadBalancerVIPs,omitempty"`
	// LoadBalancerPrefer is the center preference of a LoadBalancer
	// Service without the lb.tricenter.io/prefer annotation: production
	// (default: the production center while it has a ready endpoint, then
	// local DR, then remote DR), local (the local site's two centers
	// alike, then remote DR) or none (every center alike).
	LoadBalancerPrefer string `yaml:"loadBalancerPrefer,omitempty" json:"loadBalancerPrefer,omitempty"`
	ClusterDomain      string `yaml:"clusterDomain,omitempty" json:"clusterDomain,omitempty"`
	BGP                BGP    `yaml:"bgp,omitempty" json:"bgp,omitempty"`
}

// BGP holds cluster-wide BGP settings.
type BGP struct {
	Mode    BGPMode   `yaml:"mode,omitempty" json:"mode,omitempty"`
	NodeASN ASNScheme `yaml:"nodeASN,omitempty" json:"nodeASN,omitempty"`
	// ASNBase is the first node ASN (default 4200000000, private 4-byte).
	ASNBase          uint32 `yaml:"asnBase,omitempty" json:"asnBase,omitempty"`
	KeepaliveSeconds int    `yaml:"keepaliveSeconds,omitempty" json:"keepaliveSeconds,omitempty"`
	HoldSeconds      int    `yaml:"holdSeconds,omitempty" json:"holdSeconds,omitempty"`
	// Password is the TCP-MD5 secret of the nodes' BGP sessions. No
	// session uses it as such: each rack's sessions (its nodes' agents and
	// the routers' peer group for it) use the rack's own password,
	// base64url(HMAC-SHA256(key = secret, message =
	// "tricenter-bgp-rack-password:" + rack name)) without padding
	// (bgp.RackPassword, docs/cli/bgp.md), so a password read on one rack
	// does not open another rack's sessions. Make the secret long and
	// random.
	Password        SecretRef `yaml:"password,omitempty" json:"password,omitempty"`
	GracefulRestart *bool     `yaml:"gracefulRestart,omitempty" json:"gracefulRestart,omitempty"`
}

// Kubernetes selects the Kubernetes version and where its binaries come from.
type Kubernetes struct {
	// Version is the Kubernetes release every server runs (a supported
	// minor: SupportedKubernetesMinors; default DefaultKubernetesVersion).
	// Changing it on an installed cluster is an upgrade (tricenter upgrade).
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// FailCgroupV1 false lets servers on cgroup v1 run the kubelet
	// (Kubernetes 1.35+ refuses cgroup v1 by default; upstream keeps this
	// as a temporary override). Unset or true: preflight refuses a server
	// on cgroup v1, naming it.
	FailCgroupV1 *bool `yaml:"failCgroupV1,omitempty" json:"failCgroupV1,omitempty"`
	// ArtifactDir is a local artifact directory with its SHA256SUMS (the
	// air-gapped default, built by make artifacts).
	ArtifactDir string `yaml:"artifactDir,omitempty" json:"artifactDir,omitempty"`
	// MirrorURL is an https mirror with the same layout. The mirror's
	// manifest is trusted only when it matches the operator's pin
	// (MirrorManifestSHA256) or is replaced by the operator's copy
	// (MirrorManifest): one of them is required.
	MirrorURL string `yaml:"mirrorURL,omitempty" json:"mirrorURL,omitempty"`
	// MirrorManifestSHA256 is the sha256 of the mirror's SHA256SUMS.
	MirrorManifestSHA256 string `yaml:"mirrorManifestSHA256,omitempty" json:"mirrorManifestSHA256,omitempty"`
	// MirrorManifest is a local SHA256SUMS used instead of the mirror's.
	MirrorManifest string `yaml:"mirrorManifest,omitempty" json:"mirrorManifest,omitempty"`
	// AllowInsecureMirror accepts an http:// mirror (labs only).
	AllowInsecureMirror bool `yaml:"allowInsecureMirror,omitempty" json:"allowInsecureMirror,omitempty"`
	// NodeProfile selects host-specific node agent settings: "bare-metal"
	// (the default: production kubelet and containerd settings) or
	// "nspawn" (servers that are systemd-nspawn machines, as in the lab:
	// no eviction thresholds, cgroup v1 allowed, conntrack left alone).
	NodeProfile string `yaml:"nodeProfile,omitempty" json:"nodeProfile,omitempty"`
	// PodSecurity is the cluster-wide Pod Security admission default:
	// the level every namespace without its own
	// pod-security.kubernetes.io labels gets (default: enforce baseline,
	// warn and audit restricted, kube-system exempt).
	PodSecurity PodSecurity `yaml:"podSecurity,omitempty" json:"podSecurity,omitempty"`
	// Encryption chooses what kube-apiserver encrypts in etcd besides
	// Secrets, which always are.
	Encryption Encryption `yaml:"encryption,omitempty" json:"encryption,omitzero"`
}

// Encryption is spec.kubernetes.encryption. Secrets are always encrypted
// in etcd (secretbox, with keys kept in the engine state); ConfigMaps too
// when ConfigMaps is true (default off: ConfigMaps are not meant for
// secrets, and every read of one then pays a decryption). Once a server
// encrypts ConfigMaps, turning it off is refused: the ConfigMaps written
// since would become unreadable.
type Encryption struct {
	ConfigMaps bool `yaml:"configMaps,omitempty" json:"configMaps,omitempty"`
}

// PodSecurity sets the Pod Security Standards levels kube-apiserver's
// PodSecurity admission applies to a namespace that does not choose its
// own (with pod-security.kubernetes.io/<mode> labels). Levels are
// privileged (no restriction), baseline (no known privilege escalation:
// no privileged containers, host namespaces, hostPath volumes or added
// capabilities beyond the default set) and restricted (baseline plus
// non-root, no privilege escalation, seccomp RuntimeDefault, every
// capability dropped).
type PodSecurity struct {
	// Enforce refuses pods that break this level (default baseline).
	Enforce string `yaml:"enforce,omitempty" json:"enforce,omitempty"`
	// Warn returns a warning to the client for pods that break this level
	// (default restricted).
	Warn string `yaml:"warn,omitempty" json:"warn,omitempty"`
	// Audit marks the audit events of pods that break this level (default
	// restricted).
	Audit string `yaml:"audit,omitempty" json:"audit,omitempty"`
	// ExemptNamespaces are namespaces the admission skips entirely
	// (default [kube-system], where the cluster's own add-ons run).
	ExemptNamespaces []string `yaml:"exemptNamespaces,omitempty" json:"exemptNamespaces,omitempty"`
}

// Pod Security Standards levels.
const (
	PodSecurityPrivileged = "privileged"
	PodSecurityBaseline   = "baseline"
	PodSecurityRestricted = "restricted"
)

// Node profiles.
const (
	NodeProfileBareMetal = "bare-metal"
	NodeProfileNspawn    = "nspawn"
)

// PKI tunes the leaf certificates tricenter issues (the authorities are
// not affected). Both are Go durations ("720h", "10m").
type PKI struct {
	// RenewBefore is how close to its expiry a leaf certificate is
	// reissued by apply, and reported "renew due" by status and the
	// Terraform refresh (default DefaultPKIRenewBefore).
	RenewBefore string `yaml:"renewBefore,omitempty" json:"renewBefore,omitempty"`
	// LeafLifetime is how long a leaf certificate issued from now on is
	// valid (default DefaultPKILeafLifetime; never past its CA's expiry).
	LeafLifetime string `yaml:"leafLifetime,omitempty" json:"leafLifetime,omitempty"`
}

// RenewBeforeDuration is spec.pki.renewBefore, DefaultPKIRenewBefore when
// unset or invalid (Validate reports an invalid one).
func (p PKI) RenewBeforeDuration() time.Duration {
	return pkiDuration(p.RenewBefore, DefaultPKIRenewBefore)
}

// LeafLifetimeDuration is spec.pki.leafLifetime, DefaultPKILeafLifetime
// when unset or invalid (Validate reports an invalid one).
func (p PKI) LeafLifetimeDuration() time.Duration {
	return pkiDuration(p.LeafLifetime, DefaultPKILeafLifetime)
}

func pkiDuration(s string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	return def
}

// Etcd configures the etcd cluster.
type Etcd struct {
	// Version is the etcd release of every member (a supported minor:
	// SupportedEtcdMinors; default DefaultEtcdVersion).
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Members is "auto" (the default), or 3, 5 or 7.
	Members EtcdMembers `yaml:"members,omitempty" json:"members,omitempty"`
	// HeartbeatMs and ElectionTimeoutMs override the values derived from
	// the centers' RTTs.
	HeartbeatMs       int `yaml:"heartbeatMs,omitempty" json:"heartbeatMs,omitempty"`
	ElectionTimeoutMs int `yaml:"electionTimeoutMs,omitempty" json:"electionTimeoutMs,omitempty"`
	// AllowDegradedPlacement accepts a placement that cannot survive the
	// loss of any one center. The reason is printed as a warning.
	AllowDegradedPlacement *Degraded `yaml:"allowDegradedPlacement,omitempty" json:"allowDegradedPlacement,omitempty"`
	// Snapshots schedules snapshots kept in the other site (see
	// SnapshotStores); nil: none are scheduled.
	Snapshots *EtcdSnapshots `yaml:"snapshots,omitempty" json:"snapshots,omitempty"`
}

// EtcdSnapshots is the snapshot schedule: one etcd member per center
// takes a snapshot every Every from a member in the other site, sealed
// for the cluster's snapshot key, and keeps the newest Keep.
type EtcdSnapshots struct {
	// Every is the interval, a Go duration from 1m to 168h.
	Every string `yaml:"every" json:"every"`
	// Keep is how many snapshots each storing member keeps (1 to 1000;
	// default DefaultSnapshotKeep).
	Keep int `yaml:"keep,omitempty" json:"keep,omitempty"`
}

// DefaultSnapshotKeep is spec.etcd.snapshots.keep's default.
const DefaultSnapshotKeep = 7

// Snapshot interval bounds.
const (
	MinSnapshotEvery = time.Minute
	MaxSnapshotEvery = 168 * time.Hour
)

// EveryDuration is Every parsed (0 when it does not parse).
func (s EtcdSnapshots) EveryDuration() time.Duration {
	d, _ := time.ParseDuration(s.Every)
	return d
}

// KeepOrDefault is Keep, or DefaultSnapshotKeep when unset.
func (s EtcdSnapshots) KeepOrDefault() int {
	if s.Keep == 0 {
		return DefaultSnapshotKeep
	}
	return s.Keep
}

// Degraded records why a degraded etcd placement is accepted.
type Degraded struct {
	Reason string `yaml:"reason" json:"reason"`
}
