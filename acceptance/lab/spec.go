// Package lab is tricenter's datacenter on one machine: `tricenter-lab
// up|down|status`. A lab description (examples/lab/lab.yaml) names sites,
// centers, racks and servers; the lab builds them as systemd-nspawn machines
// and libvirt VMs behind per-rack bridges, every server powered off behind
// its own ipmi_sim BMC whose power really starts and stops it, a jump host
// per center that is the only way into that center's racks, FRR playing
// the TORs, and the centers' latencies. It writes the tricenter inventory of
// what it built, so the CLI and the Terraform provider work against it
// unchanged.
package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Kind and APIVersion of a lab description.
const (
	Kind       = "Lab"
	APIVersion = "tricenter.io/v1alpha1"
)

// labBlock is where every lab address comes from.
var labBlock = netip.MustParsePrefix("198.19.0.0/16")

// Machine kinds of a lab server.
const (
	MachineNspawn  = "nspawn"
	MachineLibvirt = "libvirt"
)

// Boot devices of a lab server (Server.Boot).
const (
	BootDisk = "disk"
	BootPXE  = "pxe"
)

// Spec is a lab description.
type Spec struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec LabSpec `yaml:"spec"`
}

// LabSpec is the body of a lab description.
type LabSpec struct {
	// Management is the out-of-band network: this machine (.1), the lab
	// router (.254), the jump hosts (.11, .12, ...) and the BMCs (.101, ...).
	Management string `yaml:"management"`
	Sites      []struct {
		Name string `yaml:"name"`
	} `yaml:"sites"`
	Centers []Center `yaml:"centers"`
	// TORASN is the AS number of every rack's TOR (FRR plays them all).
	TORASN uint32 `yaml:"torASN"`
	// CoreRouters are the sites' core routers: each an FRR router of its
	// own peering with the TORs over a /31 from Transit.
	CoreRouters struct {
		Transit string `yaml:"transit"`
		Routers []struct {
			Name string `yaml:"name"`
			Site string `yaml:"site"`
			ASN  uint32 `yaml:"asn"`
		} `yaml:"routers"`
	} `yaml:"coreRouters"`
	Racks []Rack `yaml:"racks"`
	// Network is copied into the inventory (podCIDR, serviceCIDR, apiVIP,
	// loadBalancerPool).
	Network struct {
		PodCIDR          string   `yaml:"podCIDR"`
		ServiceCIDR      string   `yaml:"serviceCIDR"`
		APIVIP           string   `yaml:"apiVIP"`
		LoadBalancerPool []string `yaml:"loadBalancerPool"`
	} `yaml:"network"`
	Kubernetes struct {
		Version string `yaml:"version"`
		// FailCgroupV1 is the inventory's spec.kubernetes.failCgroupV1:
		// false lets the nspawn machines, on this host's cgroup v1, run
		// kubelets.
		FailCgroupV1 *bool `yaml:"failCgroupV1"`
	} `yaml:"kubernetes"`
	Etcd struct {
		Members int `yaml:"members"`
	} `yaml:"etcd"`
	// VM sizes the libvirt VMs.
	VM struct {
		MemoryMiB int `yaml:"memoryMiB"`
		VCPUs     int `yaml:"vcpus"`
	} `yaml:"vm"`
}

// Center is one data center of the lab.
type Center struct {
	Name  string             `yaml:"name"`
	Site  string             `yaml:"site"`
	Role  string             `yaml:"role"`
	RTTMs map[string]float64 `yaml:"rttMs"`
}

// Rack is one rack: a subnet (TOR .1, servers .10 upwards) and its servers.
type Rack struct {
	Name    string   `yaml:"name"`
	Center  string   `yaml:"center"`
	Subnet  string   `yaml:"subnet"`
	Servers []Server `yaml:"servers"`
}

// Server is one lab server.
type Server struct {
	Name  string   `yaml:"name"`
	Roles []string `yaml:"roles"`
	// Machine is nspawn (default) or libvirt.
	Machine string `yaml:"machine"`
	// Boot is the boot device Terraform sets on the server's BMC before
	// powering it on: disk (default) or pxe (libvirt VMs only: the lab
	// serves them DHCP and TFTP).
	Boot string `yaml:"boot"`
}

// LoadSpec reads and checks a lab description.
func LoadSpec(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSpec(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSpec parses a lab description strictly and checks it.
func ParseSpec(data []byte) (*Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("lab description: %w", err)
	}
	if s.Kind != Kind || s.APIVersion != APIVersion {
		return nil, fmt.Errorf("lab description: want apiVersion %s and kind %s, got %q and %q", APIVersion, Kind, s.APIVersion, s.Kind)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Spec) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Metadata.Name == "" {
		bad("metadata.name: name the lab")
	}
	mg, err := netip.ParsePrefix(s.Spec.Management)
	switch {
	case err != nil:
		bad("spec.management: %q is not a prefix such as 198.19.80.0/24", s.Spec.Management)
	case !labBlock.Contains(mg.Addr()) || mg.Bits() != 24:
		bad("spec.management: %s must be a /24 inside %s", mg, labBlock)
	}
	if s.Spec.TORASN == 0 {
		bad("spec.torASN: set the TORs' AS number (e.g. 65200)")
	}
	if cr := s.Spec.CoreRouters; len(cr.Routers) > 0 {
		tp, err := netip.ParsePrefix(cr.Transit)
		if err != nil || !labBlock.Contains(tp.Addr()) || tp.Bits() > 32-len(cr.Routers) {
			bad("spec.coreRouters.transit: %q must be a prefix inside %s with room for a /31 per core router", cr.Transit, labBlock)
		} else if mg.IsValid() && tp.Overlaps(mg) {
			bad("spec.coreRouters.transit: %s overlaps the management network", tp)
		}
		sites := map[string]bool{}
		for _, st := range s.Spec.Sites {
			sites[st.Name] = true
		}
		for i, r := range cr.Routers {
			if r.Name == "" || r.ASN == 0 || r.ASN == s.Spec.TORASN || !sites[r.Site] {
				bad("spec.coreRouters.routers[%d] (%s): give it a name, a site of spec.sites and an ASN other than the TORs'", i, r.Name)
			}
		}
	}
	servers := 0
	for i, r := range s.Spec.Racks {
		p, err := netip.ParsePrefix(r.Subnet)
		if err != nil || !labBlock.Contains(p.Addr()) || p.Bits() != 24 {
			bad("spec.racks[%d] (%s): subnet %q must be a /24 inside %s", i, r.Name, r.Subnet, labBlock)
		}
		if tp, terr := netip.ParsePrefix(s.Spec.CoreRouters.Transit); err == nil && terr == nil && p.Overlaps(tp) {
			bad("spec.racks[%d] (%s): subnet %s overlaps spec.coreRouters.transit", i, r.Name, r.Subnet)
		}
		if err == nil && mg.IsValid() && p.Overlaps(mg) {
			bad("spec.racks[%d] (%s): subnet %s overlaps the management network", i, r.Name, r.Subnet)
		}
		if len(r.Servers) > 80 {
			bad("spec.racks[%d] (%s): at most 80 servers per rack", i, r.Name)
		}
		for j, sv := range r.Servers {
			if sv.Machine != "" && sv.Machine != MachineNspawn && sv.Machine != MachineLibvirt {
				bad("spec.racks[%d].servers[%d] (%s): machine %q: use nspawn or libvirt", i, j, sv.Name, sv.Machine)
			}
			switch {
			case sv.Boot != "" && sv.Boot != BootDisk && sv.Boot != BootPXE:
				bad("spec.racks[%d].servers[%d] (%s): boot %q: use disk or pxe", i, j, sv.Name, sv.Boot)
			case sv.Boot == BootPXE && sv.Machine != MachineLibvirt:
				bad("spec.racks[%d].servers[%d] (%s): boot pxe needs machine: libvirt (nspawn machines have no firmware to boot from a NIC)", i, j, sv.Name)
			}
			servers++
		}
	}
	if servers+len(s.Spec.Centers) > 140 {
		bad("spec: %d servers and %d jump hosts do not fit the management network's BMC and jump host ranges", servers, len(s.Spec.Centers))
	}
	return errors.Join(errs...)
}

// VMs lists the servers that are libvirt VMs.
func (s *Spec) VMs() []string {
	var out []string
	for _, r := range s.Spec.Racks {
		for _, sv := range r.Servers {
			if sv.Machine == MachineLibvirt {
				out = append(out, sv.Name)
			}
		}
	}
	return out
}

// Paths are the files a running lab keeps in its directory.
type Paths struct {
	Dir string
}

// Inventory is the tricenter inventory the lab writes.
func (p Paths) Inventory() string { return filepath.Join(p.Dir, "inventory.yaml") }

// TFVars is the terraform.tfvars for examples/lab.
func (p Paths) TFVars() string { return filepath.Join(p.Dir, "terraform.tfvars") }

// Key is the SSH private key every lab machine accepts for root.
func (p Paths) Key() string { return filepath.Join(p.Dir, "id_ed25519") }

// KnownHosts pins the host keys of the servers and jump hosts.
func (p Paths) KnownHosts() string { return filepath.Join(p.Dir, "known_hosts") }

// BMCPassword holds the password of every BMC's admin user (0600).
func (p Paths) BMCPassword() string { return filepath.Join(p.Dir, "bmc-password") }

// Record is the running lab's record (lab.json).
func (p Paths) Record() string { return filepath.Join(p.Dir, "lab.json") }

// Log is the lab process's log.
func (p Paths) Log() string { return filepath.Join(p.Dir, "lab.log") }

// PowerFIFO is where the BMCs' hooks send power requests for machines.
func (p Paths) PowerFIFO() string { return filepath.Join(p.Dir, "power.fifo") }

// PowerState is the file holding "on" or "off" for a machine.
func (p Paths) PowerState(server string) string { return filepath.Join(p.Dir, "power", server) }

// Machines holds the nspawn machines' overlays.
func (p Paths) Machines() string { return filepath.Join(p.Dir, "machines") }

// BMCs holds the ipmi_sim instances' files.
func (p Paths) BMCs() string { return filepath.Join(p.Dir, "bmc") }

// VMs holds the VMs' disks and consoles.
func (p Paths) VMs() string { return filepath.Join(p.Dir, "vm") }

// Libvirt is the run directory of the libvirtd the lab starts (logs, its
// configuration, the record of the LIBVIRT_* iptables chains that existed
// before it started).
func (p Paths) Libvirt() string { return filepath.Join(p.Dir, "libvirt") }

// PXE holds the VMs' network boot service: dnsmasq's configuration, log
// and leases, and the TFTP root.
func (p Paths) PXE() string { return filepath.Join(p.Dir, "pxe") }

// BMCUser is the admin user of every lab BMC.
const BMCUser = "admin"

// Plan is where every lab object goes: addresses of servers, jump hosts
// and BMCs.
type Plan struct {
	Management netip.Prefix
	Host       netip.Addr
	Router     netip.Addr
	Jump       map[string]netip.Addr // by center
	JumpName   map[string]string     // by center
	Servers    []PlannedServer
}

// PlannedServer is one server with its addresses.
type PlannedServer struct {
	Name, Rack, Center, Machine string
	// Boot is the boot device Terraform sets (empty: none).
	Boot                  string
	Roles                 []string
	Address, Gateway, BMC netip.Addr
	Bits                  int
}

// Plan assigns the addresses.
func (s *Spec) Plan() Plan {
	mg := netip.MustParsePrefix(s.Spec.Management).Masked()
	at := func(n int) netip.Addr {
		b := mg.Addr().As4()
		b[3] = byte(n)
		return netip.AddrFrom4(b)
	}
	p := Plan{Management: mg, Host: at(1), Router: at(254), Jump: map[string]netip.Addr{}, JumpName: map[string]string{}}
	for i, c := range s.Spec.Centers {
		p.Jump[c.Name] = at(11 + i)
		p.JumpName[c.Name] = c.Name + "-jump"
	}
	n := 0
	for _, r := range s.Spec.Racks {
		sub := netip.MustParsePrefix(r.Subnet).Masked()
		b := sub.Addr().As4()
		b[3] = 1
		gw := netip.AddrFrom4(b)
		for j, sv := range r.Servers {
			b[3] = byte(10 + j)
			m := sv.Machine
			if m == "" {
				m = MachineNspawn
			}
			p.Servers = append(p.Servers, PlannedServer{Name: sv.Name, Rack: r.Name, Center: r.Center, Machine: m, Boot: sv.Boot,
				Roles: sv.Roles, Address: netip.AddrFrom4(b), Gateway: gw, BMC: at(101 + n), Bits: sub.Bits()})
			n++
		}
	}
	return p
}

// Inventory renders the tricenter inventory of the lab: every path in it
// is absolute (dir and artifactDir must be).
func (s *Spec) Inventory(dir, artifactDir string) ([]byte, *inventory.Cluster, error) {
	paths := Paths{Dir: dir}
	plan := s.Plan()
	c := &inventory.Cluster{APIVersion: inventory.APIVersion, Kind: inventory.Kind}
	c.Metadata.Name = s.Metadata.Name
	for _, st := range s.Spec.Sites {
		c.Spec.Sites = append(c.Spec.Sites, inventory.Site{Name: st.Name})
	}
	for _, ctr := range s.Spec.Centers {
		c.Spec.Centers = append(c.Spec.Centers, inventory.Center{Name: ctr.Name, Site: ctr.Site,
			Role: inventory.CenterRole(ctr.Role), RTTMs: ctr.RTTMs,
			JumpHost: &inventory.JumpHost{Name: plan.JumpName[ctr.Name], Address: plan.Jump[ctr.Name].String(), User: "root"}})
	}
	c.Spec.SSH = inventory.SSHDefault{User: "root", KeyFile: paths.Key(), KnownHosts: inventory.StringList{paths.KnownHosts()}}
	byName := map[string]PlannedServer{}
	for _, ps := range plan.Servers {
		byName[ps.Name] = ps
	}
	for _, r := range s.Spec.Racks {
		sub := netip.MustParsePrefix(r.Subnet).Masked()
		b := sub.Addr().As4()
		b[3] = 1
		rack := inventory.Rack{Name: r.Name, Center: r.Center, Subnet: sub.String(),
			TOR: inventory.TOR{Name: r.Name + "-tor", ASN: s.Spec.TORASN, Address: netip.AddrFrom4(b).String()}}
		for _, sv := range r.Servers {
			ps := byName[sv.Name]
			var roles []inventory.Role
			for _, x := range sv.Roles {
				roles = append(roles, inventory.Role(x))
			}
			rack.Servers = append(rack.Servers, inventory.Server{Name: sv.Name, Roles: roles,
				SSH: inventory.SSH{Address: ps.Address.String()},
				BMC: &inventory.BMC{Address: ps.BMC.String(), User: BMCUser, Password: inventory.SecretRef{File: paths.BMCPassword()},
					CipherSuites: []int{3}},
			})
		}
		c.Spec.Racks = append(c.Spec.Racks, rack)
	}
	n := s.Spec.Network
	c.Spec.Network = inventory.Network{PodCIDR: n.PodCIDR, PodMaskSize: 24, ServiceCIDR: n.ServiceCIDR, APIVIP: n.APIVIP,
		LoadBalancerPool: n.LoadBalancerPool,
		BGP:              inventory.BGP{Mode: inventory.BGPModeTOR, NodeASN: inventory.ASNPerRack, KeepaliveSeconds: 1, HoldSeconds: 3}}
	c.Spec.Kubernetes = inventory.Kubernetes{Version: s.Spec.Kubernetes.Version, ArtifactDir: artifactDir, NodeProfile: "nspawn",
		FailCgroupV1: s.Spec.Kubernetes.FailCgroupV1}
	c.Spec.Etcd = inventory.Etcd{Members: inventory.EtcdMembers(s.Spec.Etcd.Members)}
	var buf bytes.Buffer
	buf.WriteString("# Written by `tricenter-lab up` from the lab description " + s.Metadata.Name + ":\n" +
		"# every server is powered off behind its BMC until something powers it on,\n" +
		"# and is reached through its center's jump host.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, nil, err
	}
	parsed, lines, err := inventory.Parse(buf.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("lab %s: the inventory it generates does not parse: %w", s.Metadata.Name, err)
	}
	if err := parsed.Validate(lines).Err(); err != nil {
		return nil, nil, fmt.Errorf("lab %s: the inventory it generates is invalid (fix the lab description): %w", s.Metadata.Name, err)
	}
	return buf.Bytes(), parsed, nil
}

// TFVars renders terraform.tfvars for examples/lab: the inventory file,
// the workers joined one by one and the servers' boot devices.
func (s *Spec) TFVars(dir string) []byte {
	var workers, boots []string
	for _, r := range s.Spec.Racks {
		for _, sv := range r.Servers {
			if slices.Equal(sv.Roles, []string{"worker"}) {
				workers = append(workers, fmt.Sprintf("%q", sv.Name))
			}
			if sv.Boot != "" {
				boots = append(boots, fmt.Sprintf("%q = %q", sv.Name, sv.Boot))
			}
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by `tricenter-lab up` for examples/lab.\n")
	fmt.Fprintf(&b, "inventory_file = %q\n", Paths{Dir: dir}.Inventory())
	fmt.Fprintf(&b, "workers        = [%s]\n", joinComma(workers))
	fmt.Fprintf(&b, "boot_devices   = {%s}\n", joinComma(boots))
	return b.Bytes()
}

func joinComma(xs []string) string {
	var b bytes.Buffer
	for i, x := range xs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(x)
	}
	return b.String()
}
