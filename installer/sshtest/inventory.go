package sshtest

import (
	"fmt"
	"net/netip"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// CenterOf is the center index (0, 1, 2) of the i-th host.
func CenterOf(i int) int { return i % 3 }

// ClusterOptions shape the inventory of a lab.
type ClusterOptions struct {
	User string // login of every host (default root)
	// PinHostKeys writes each host's fingerprint as ssh.hostKey (and the
	// jump host's); otherwise Lab.KnownHosts is referenced.
	PinHostKeys bool
}

// Cluster is a valid inventory for the lab: two sites, three centers
// (dc1, dc2 production and local-dr in site-a, dc3 remote-dr in site-b),
// one rack per center, every center reached through the jump host when the
// lab has one. The first host of each center has the etcd and
// control-plane roles, the others are workers.
// Defaults are applied.
func (l *Lab) Cluster(o ClusterOptions) *inventory.Cluster {
	c := l.cluster(o)
	c.SetDefaults()
	return c
}

func (l *Lab) cluster(o ClusterOptions) *inventory.Cluster {
	if o.User == "" {
		o.User = "root"
	}
	c := &inventory.Cluster{APIVersion: inventory.APIVersion, Kind: inventory.Kind}
	c.Metadata.Name = "sshlab"
	s := &c.Spec
	s.Sites = []inventory.Site{{Name: "site-a"}, {Name: "site-b"}}
	names := []string{"dc1", "dc2", "dc3"}
	roles := []inventory.CenterRole{inventory.RoleProduction, inventory.RoleLocalDR, inventory.RoleRemoteDR}
	sites := []string{"site-a", "site-a", "site-b"}
	s.SSH = inventory.SSHDefault{User: o.User, KeyFile: l.ClientKey}
	if !o.PinHostKeys {
		s.SSH.KnownHosts = inventory.StringList{l.KnownHosts}
	}
	for k := range 3 {
		ctr := inventory.Center{Name: names[k], Site: sites[k], Role: roles[k]}
		if l.Jump != nil {
			addr := l.Jump.Addr
			if k > 0 && k <= len(l.Jump.Extra) {
				addr = l.Jump.Extra[k-1]
			}
			j := &inventory.JumpHost{Name: names[k] + "-jump", Address: addr.String(), User: "root", KeyFile: l.ClientKey}
			if o.PinHostKeys {
				j.HostKey = l.Jump.Fingerprint
			}
			ctr.JumpHost = j
		}
		s.Centers = append(s.Centers, ctr)
	}
	for k := range 3 {
		var seg netip.Addr
		for i, h := range l.Hosts {
			if CenterOf(i) == k {
				seg = h.Addr
				break
			}
		}
		if !seg.IsValid() {
			continue
		}
		subnet := netip.PrefixFrom(seg, 26).Masked()
		rack := inventory.Rack{
			Name: names[k] + "-r01", Center: names[k], Subnet: subnet.String(),
			TOR:        inventory.TOR{Name: names[k] + "-r01-tor", ASN: uint32(65100 + k), Address: subnet.Addr().Next().String()},
			MaxServers: 60,
		}
		for i, h := range l.Hosts {
			if CenterOf(i) != k {
				continue
			}
			sv := inventory.Server{Name: h.Name, Roles: []inventory.Role{inventory.RoleWorker},
				SSH: inventory.SSH{Address: h.Addr.String()}}
			if len(rack.Servers) == 0 {
				sv.Roles = []inventory.Role{inventory.RoleEtcd, inventory.RoleControlPlane}
			}
			if o.PinHostKeys {
				sv.SSH.HostKey = h.Fingerprint
			}
			rack.Servers = append(rack.Servers, sv)
		}
		s.Racks = append(s.Racks, rack)
	}
	s.Network = inventory.Network{PodCIDR: "198.19.128.0/17", PodMaskSize: 26, ServiceCIDR: "198.19.96.0/20",
		APIVIP: "198.19.120.10", LoadBalancerPool: []string{"198.19.120.0/24"}}
	return c
}

// WriteInventory writes Cluster(o) as YAML to path (without defaults, as
// a user would write it).
func (l *Lab) WriteInventory(path string, o ClusterOptions) error {
	b, err := yaml.Marshal(l.cluster(o))
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing inventory: %w", err)
	}
	return nil
}
