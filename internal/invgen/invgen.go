// Package invgen generates valid three-center inventories of any size, for
// examples, property tests and benchmarks.
package invgen

import (
	"fmt"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Options shape a generated datacenter.
type Options struct {
	Name string
	// Racks per center role: production, local-dr, remote-dr.
	Racks [3]int
	// ServersPerRack (at most 250).
	ServersPerRack int
	// TotalServers, when set, overrides ServersPerRack: the servers are
	// spread as evenly as possible over the racks.
	TotalServers int
	// EtcdPerCenter servers get the etcd and control-plane roles, spread
	// over the center's racks: production, local-dr, remote-dr.
	EtcdPerCenter [3]int
	// Lab uses 198.18.0.0/15 addresses instead of 10.0.0.0/8.
	Lab bool
	// BMC gives every server a BMC.
	BMC bool
}

// Default is a realistic mid-size datacenter: 8 racks of 6 servers.
func Default() Options {
	return Options{Name: "tricenter", Racks: [3]int{3, 3, 2}, ServersPerRack: 6, EtcdPerCenter: [3]int{2, 2, 1}, BMC: true}
}

// Generate builds the inventory as a user would write it: defaults are
// not applied (call SetDefaults before Validate).
func Generate(o Options) *inventory.Cluster {
	a := addressing(o.Lab)
	c := &inventory.Cluster{APIVersion: inventory.APIVersion, Kind: inventory.Kind}
	c.Metadata.Name = o.Name
	s := &c.Spec
	s.Sites = []inventory.Site{
		{Name: "site-a", CoreRouters: []inventory.Router{
			{Name: "core-a1", Address: a.core(0, 1), ASN: 65000},
			{Name: "core-a2", Address: a.core(0, 2), ASN: 65000},
		}},
		{Name: "site-b", CoreRouters: []inventory.Router{
			{Name: "core-b1", Address: a.core(1, 1), ASN: 65001},
			{Name: "core-b2", Address: a.core(1, 2), ASN: 65001},
		}},
	}
	roles := []inventory.CenterRole{inventory.RoleProduction, inventory.RoleLocalDR, inventory.RoleRemoteDR}
	names := []string{"dc1", "dc2", "dc3"}
	sites := []string{"site-a", "site-a", "site-b"}
	rtt := [3]map[string]float64{
		{"dc2": 1, "dc3": 20},
		{"dc1": 1, "dc3": 21},
		{"dc1": 20, "dc2": 21},
	}
	for k := range 3 {
		s.Centers = append(s.Centers, inventory.Center{
			Name: names[k], Site: sites[k], Role: roles[k], RTTMs: rtt[k],
			JumpHost: &inventory.JumpHost{Address: a.jump(k)},
		})
	}
	s.SSH = inventory.SSHDefault{User: "ops", KeyFile: "~/.ssh/tricenter_ed25519"}
	asn := uint32(65100)
	totalRacks := o.Racks[0] + o.Racks[1] + o.Racks[2]
	rackNo := 0
	for k := range 3 {
		for r := range o.Racks[k] {
			perRack := o.ServersPerRack
			if o.TotalServers > 0 && totalRacks > 0 {
				perRack = o.TotalServers / totalRacks
				if rackNo < o.TotalServers%totalRacks {
					perRack++
				}
			}
			rackNo++
			rack := inventory.Rack{
				Name:   fmt.Sprintf("%s-r%02d", names[k], r+1),
				Center: names[k],
				Subnet: a.rackSubnet(k, r),
				TOR: inventory.TOR{
					Name:    fmt.Sprintf("%s-r%02d-tor", names[k], r+1),
					ASN:     asn,
					Address: a.rackHost(k, r, 1),
				},
			}
			asn++
			for i := range perRack {
				sv := inventory.Server{
					Name:  fmt.Sprintf("%s-r%02d-s%02d", names[k], r+1, i+1),
					Roles: []inventory.Role{inventory.RoleWorker},
					SSH:   inventory.SSH{Address: a.rackHost(k, r, 10+i)},
				}
				if o.BMC {
					sv.BMC = &inventory.BMC{
						Address:  a.bmc(k, r, 10+i),
						User:     "admin",
						Password: inventory.SecretRef{Env: "TRICENTER_BMC_PASSWORD"},
					}
				}
				rack.Servers = append(rack.Servers, sv)
			}
			s.Racks = append(s.Racks, rack)
		}
	}
	// Spread the etcd/control-plane role over each center's racks.
	rackIdx := 0
	for k := range 3 {
		racks := s.Racks[rackIdx : rackIdx+o.Racks[k]]
		rackIdx += o.Racks[k]
		for e := 0; e < o.EtcdPerCenter[k] && len(racks) > 0; e++ {
			rack := &racks[e%len(racks)]
			slot := e / len(racks)
			if slot < len(rack.Servers) {
				rack.Servers[slot].Roles = []inventory.Role{inventory.RoleEtcd, inventory.RoleControlPlane}
			}
		}
	}
	s.Network = inventory.Network{
		PodCIDR:          a.pod,
		ServiceCIDR:      a.svc,
		APIVIP:           a.vip,
		LoadBalancerPool: []string{a.pool},
	}
	return c
}

type addr struct {
	lab            bool
	pod, svc, pool string
	vip            string
}

func addressing(lab bool) addr {
	if lab {
		return addr{lab: true, pod: "198.19.128.0/17", svc: "198.19.96.0/20", pool: "198.19.120.0/24", vip: "198.19.120.10"}
	}
	return addr{pod: "10.128.0.0/10", svc: "10.96.0.0/12", pool: "10.250.0.0/24", vip: "10.250.0.10"}
}

// In 10/8: rack subnets 10.<1+center>.<rack>.0/24 (up to 256 racks a
// center), BMCs in 10.<101+center>.<rack>.x, core routers 10.0.<site>.x,
// jump hosts 10.<1+center>.255.10 (outside every rack).
// In the lab: 198.18.<64+center*16+rack>.0/24 racks, BMCs in
// 198.18.<128+center*16+rack>.x, core 198.18.0.x, jump 198.18.1.x.
func (a addr) rackSubnet(k, r int) string {
	if a.lab {
		return fmt.Sprintf("198.18.%d.0/24", 64+k*16+r)
	}
	return fmt.Sprintf("10.%d.%d.0/24", 1+k, r)
}

func (a addr) rackHost(k, r, h int) string {
	if a.lab {
		return fmt.Sprintf("198.18.%d.%d", 64+k*16+r, h)
	}
	return fmt.Sprintf("10.%d.%d.%d", 1+k, r, h)
}

func (a addr) bmc(k, r, h int) string {
	if a.lab {
		return fmt.Sprintf("198.18.%d.%d", 128+k*16+r, h)
	}
	return fmt.Sprintf("10.%d.%d.%d", 101+k, r, h)
}

func (a addr) core(site, n int) string {
	if a.lab {
		return fmt.Sprintf("198.18.0.%d", site*10+n)
	}
	return fmt.Sprintf("10.0.%d.%d", site, n)
}

func (a addr) jump(k int) string {
	if a.lab {
		return fmt.Sprintf("198.18.1.%d", 10+k)
	}
	return fmt.Sprintf("10.%d.255.10", 1+k)
}
