package inventory

import (
	"net/netip"
	"strings"
	"time"
)

// Defaults applied by SetDefaults.
const (
	DefaultSSHPort          = 22
	DefaultSSHUser          = "root"
	DefaultMaxServers       = 48
	DefaultSubnetBits       = 24
	DefaultBMCPort          = 623
	DefaultPodMaskSize      = 24
	DefaultClusterDomain    = "cluster.local"
	DefaultASNBase          = 4200000000
	DefaultKeepaliveSeconds = 3
	DefaultHoldSeconds      = 9
	DefaultArtifactDir      = ".cache/artifacts"
	HostKeyStrict           = "strict"
	HostKeyAcceptNew        = "accept-new"
)

// DefaultCipherSuites is the order in which BMC cipher suites are tried:
// 17 (HMAC-SHA256, AES-CBC-128) where the BMC has it, else 3 (HMAC-SHA1,
// AES-CBC-128).
var DefaultCipherSuites = []int{17, 3}

// SupportedCipherSuites are the RMCP+ cipher suites with authentication,
// integrity and AES-CBC-128 confidentiality: 3 (SHA1), 8 (MD5), 12 (MD5
// integrity) and 17 (SHA256).
var SupportedCipherSuites = []int{17, 3, 8, 12}

// SetDefaults fills every optional field that has a default. It is
// idempotent and never overrides a value that was set.
func (c *Cluster) SetDefaults() {
	s := &c.Spec
	if s.SSH.Port == 0 {
		s.SSH.Port = DefaultSSHPort
	}
	if s.SSH.User == "" {
		s.SSH.User = DefaultSSHUser
	}
	if s.SSH.HostKeyPolicy == "" {
		s.SSH.HostKeyPolicy = HostKeyStrict
	}
	jumpDefaults := func(j *JumpHost, name string) {
		if j.Port == 0 {
			j.Port = s.SSH.Port
		}
		if j.User == "" {
			j.User = s.SSH.User
		}
		if j.KeyFile == "" {
			j.KeyFile = s.SSH.KeyFile
		}
		if j.Agent == nil && s.SSH.Agent != nil {
			a := *s.SSH.Agent
			j.Agent = &a
		}
		if j.Name == "" {
			j.Name = name
		}
	}
	if s.SSH.Bastion != nil {
		jumpDefaults(s.SSH.Bastion, "bastion")
	}
	for i := range s.Centers {
		if j := s.Centers[i].JumpHost; j != nil {
			jumpDefaults(j, s.Centers[i].Name+"-jump")
		}
	}
	for i := range s.Racks {
		r := &s.Racks[i]
		if r.MaxServers == 0 {
			r.MaxServers = DefaultMaxServers
		}
		if r.Subnet != "" && !strings.Contains(r.Subnet, "/") {
			r.Subnet += "/24"
		}
		if r.TOR.Gateway == "" {
			if r.TOR.Address != "" {
				r.TOR.Gateway = r.TOR.Address
			} else if p, err := netip.ParsePrefix(r.Subnet); err == nil && p.Addr().Is4() {
				r.TOR.Gateway = p.Masked().Addr().Next().String()
			}
		}
		for j := range r.Servers {
			sv := &r.Servers[j]
			if sv.SSH.Port == 0 {
				sv.SSH.Port = s.SSH.Port
			}
			if sv.SSH.User == "" {
				sv.SSH.User = s.SSH.User
			}
			if sv.SSH.KeyFile == "" {
				sv.SSH.KeyFile = s.SSH.KeyFile
			}
			if sv.SSH.Agent == nil && s.SSH.Agent != nil {
				a := *s.SSH.Agent
				sv.SSH.Agent = &a
			}
			if b := sv.BMC; b != nil {
				if b.Port == 0 {
					b.Port = DefaultBMCPort
				}
				if len(b.CipherSuites) == 0 {
					b.CipherSuites = append([]int(nil), DefaultCipherSuites...)
				}
			}
		}
	}
	n := &s.Network
	if n.PodMaskSize == 0 {
		n.PodMaskSize = DefaultPodMaskSize
	}
	if n.ClusterDomain == "" {
		n.ClusterDomain = DefaultClusterDomain
	}
	if n.APIVIP == "" && len(n.LoadBalancerPool) > 0 {
		if p, err := netip.ParsePrefix(n.LoadBalancerPool[0]); err == nil {
			n.APIVIP = p.Masked().Addr().String()
			if p.Bits() < 31 {
				n.APIVIP = p.Masked().Addr().Next().String()
			}
		}
	}
	b := &n.BGP
	if b.Mode == "" {
		b.Mode = BGPModeTOR
	}
	if b.NodeASN == "" {
		b.NodeASN = ASNPerRack
	}
	if b.ASNBase == 0 {
		b.ASNBase = DefaultASNBase
	}
	if b.KeepaliveSeconds == 0 {
		b.KeepaliveSeconds = DefaultKeepaliveSeconds
	}
	if b.HoldSeconds == 0 {
		b.HoldSeconds = DefaultHoldSeconds
	}
	if b.GracefulRestart == nil {
		t := true
		b.GracefulRestart = &t
	}
	if s.Kubernetes.Version == "" {
		s.Kubernetes.Version = DefaultKubernetesVersion
	}
	if s.Etcd.Version == "" {
		s.Etcd.Version = DefaultEtcdVersion
	}
	if s.Kubernetes.ArtifactDir == "" && s.Kubernetes.MirrorURL == "" {
		s.Kubernetes.ArtifactDir = DefaultArtifactDir
	}
	s.Kubernetes.PodSecurity.SetDefaults()
}

// Certificate defaults (spec.pki): a leaf certificate is valid a year and
// reissued by apply within 30 days of its expiry. SetDefaults leaves the
// fields empty (the inventory's serialized forms stay as they were); the
// PKI accessors return these.
const (
	DefaultPKIRenewBefore  = 30 * 24 * time.Hour
	DefaultPKILeafLifetime = 365 * 24 * time.Hour
)

// Pod Security admission defaults (spec.kubernetes.podSecurity).
const (
	DefaultPodSecurityEnforce = PodSecurityBaseline
	DefaultPodSecurityWarn    = PodSecurityRestricted
	DefaultPodSecurityAudit   = PodSecurityRestricted
)

// DefaultPodSecurityExemptNamespaces are the namespaces Pod Security
// admission skips when the inventory names none.
var DefaultPodSecurityExemptNamespaces = []string{"kube-system"}

// SetDefaults fills the levels left empty and the exempt namespaces when
// none are listed.
func (p *PodSecurity) SetDefaults() {
	if p.Enforce == "" {
		p.Enforce = DefaultPodSecurityEnforce
	}
	if p.Warn == "" {
		p.Warn = DefaultPodSecurityWarn
	}
	if p.Audit == "" {
		p.Audit = DefaultPodSecurityAudit
	}
	if len(p.ExemptNamespaces) == 0 {
		p.ExemptNamespaces = append([]string(nil), DefaultPodSecurityExemptNamespaces...)
	}
}
