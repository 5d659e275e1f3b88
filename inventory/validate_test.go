package inventory_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/tricenter/terraform-provider-tricenter/internal/invgen"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

func base() *inventory.Cluster {
	c := invgen.Generate(invgen.Default())
	c.SetDefaults()
	return c
}

func TestGeneratedInventoryIsValid(t *testing.T) {
	for _, lab := range []bool{false, true} {
		o := invgen.Default()
		o.Lab = lab
		c := invgen.Generate(o)
		c.SetDefaults()
		res := c.Validate(nil)
		if !res.OK() {
			t.Fatalf("lab=%v: %v", lab, res.Err())
		}
		if len(res.Warnings) != 0 {
			t.Fatalf("lab=%v: unexpected warnings %v", lab, res.Warnings)
		}
	}
}

// TestValidateRules breaks a valid inventory one rule at a time and checks
// the error names the field path and says what is wrong.
func TestValidateRules(t *testing.T) {
	srv := func(c *inventory.Cluster, r, s int) *inventory.Server { return &c.Spec.Racks[r].Servers[s] }
	cases := []struct {
		name   string
		mutate func(c *inventory.Cluster)
		path   string
		msg    string
	}{
		// Address classes
		{"node in 0/8", func(c *inventory.Cluster) { srv(c, 0, 1).SSH.Address = "0.1.2.3" }, "spec.racks[0].servers[1].ssh.address", "0.0.0.0/8"},
		{"node loopback", func(c *inventory.Cluster) { srv(c, 0, 1).SSH.Address = "127.0.0.5" }, "spec.racks[0].servers[1].ssh.address", "loopback"},
		{"node link-local", func(c *inventory.Cluster) { srv(c, 0, 1).SSH.Address = "169.254.10.1" }, "spec.racks[0].servers[1].ssh.address", "link-local"},
		{"BMC multicast", func(c *inventory.Cluster) { srv(c, 3, 2).BMC.Address = "224.0.0.5" }, "spec.racks[3].servers[2].bmc.address", "multicast"},
		{"BMC class E", func(c *inventory.Cluster) { srv(c, 3, 2).BMC.Address = "240.1.1.1" }, "spec.racks[3].servers[2].bmc.address", "class E"},
		{"TOR broadcast", func(c *inventory.Cluster) { c.Spec.Racks[2].TOR.Address = "255.255.255.255" }, "spec.racks[2].tor.address", "limited broadcast"},
		{"node is subnet network address", func(c *inventory.Cluster) { srv(c, 1, 0).SSH.Address = "10.1.1.0" }, "spec.racks[1].servers[0].ssh.address", "network address"},
		{"node is subnet broadcast", func(c *inventory.Cluster) { srv(c, 1, 0).SSH.Address = "10.1.1.255" }, "spec.racks[1].servers[0].ssh.address", "broadcast address"},
		{"pod CIDR loopback", func(c *inventory.Cluster) { c.Spec.Network.PodCIDR = "127.0.0.0/16" }, "spec.network.podCIDR", "loopback"},
		{"service CIDR multicast", func(c *inventory.Cluster) { c.Spec.Network.ServiceCIDR = "224.0.0.0/16" }, "spec.network.serviceCIDR", "multicast"},
		{"API VIP link-local", func(c *inventory.Cluster) { c.Spec.Network.APIVIP = "169.254.1.1" }, "spec.network.apiVIP", "link-local"},
		{"VIP pool class E", func(c *inventory.Cluster) { c.Spec.Network.LoadBalancerPool = []string{"250.0.0.0/24"} }, "spec.network.loadBalancerPool[0]", "class E"},
		{"not an address", func(c *inventory.Cluster) { srv(c, 0, 0).SSH.Address = "10.1.0.300" }, "spec.racks[0].servers[0].ssh.address", "not an IP address"},
		{"host bits in CIDR", func(c *inventory.Cluster) { c.Spec.Network.PodCIDR = "10.128.0.1/10" }, "spec.network.podCIDR", "host bits"},
		// Overlaps and containment
		{"pod overlaps service", func(c *inventory.Cluster) { c.Spec.Network.ServiceCIDR = "10.128.0.0/16" }, "spec.network.serviceCIDR", "overlaps"},
		{"rack overlaps pod", func(c *inventory.Cluster) {
			c.Spec.Racks[0].Subnet = "10.130.0.0/24"
			for i := range c.Spec.Racks[0].Servers {
				c.Spec.Racks[0].Servers[i].SSH.Address = "10.130.0." + itoa(10+i)
			}
			c.Spec.Racks[0].TOR.Address, c.Spec.Racks[0].TOR.Gateway = "10.130.0.1", "10.130.0.1"
		}, "spec.racks[0].subnet", "overlaps"},
		{"pool overlaps rack", func(c *inventory.Cluster) { c.Spec.Network.LoadBalancerPool = []string{"10.2.0.0/25"} }, "spec.racks[3].subnet", "overlaps the LoadBalancer pool 10.2.0.0/25"},
		{"racks overlap", func(c *inventory.Cluster) { c.Spec.Racks[1].Subnet = "10.1.0.0/23" }, "spec.racks[1].subnet", "overlaps"},
		{"VIP inside pods", func(c *inventory.Cluster) { c.Spec.Network.APIVIP = "10.128.9.9" }, "spec.network.apiVIP", "inside the pod CIDR"},
		{"node outside rack subnet", func(c *inventory.Cluster) { srv(c, 0, 2).SSH.Address = "10.9.9.9" }, "spec.racks[0].servers[2].ssh.address", "outside the rack subnet"},
		{"TOR outside rack subnet", func(c *inventory.Cluster) { c.Spec.Racks[0].TOR.Address = "10.9.9.1" }, "spec.racks[0].tor.address", "outside the rack subnet"},
		// Duplicates and references
		{"duplicate node address", func(c *inventory.Cluster) { srv(c, 0, 2).SSH.Address = srv(c, 0, 1).SSH.Address }, "spec.racks[0].servers[2].ssh.address", "already used"},
		{"BMC address equals node address", func(c *inventory.Cluster) { srv(c, 0, 2).BMC.Address = srv(c, 0, 1).SSH.Address }, "spec.racks[0].servers[2].bmc.address", "already used"},
		{"duplicate server name", func(c *inventory.Cluster) { srv(c, 2, 3).Name = srv(c, 0, 0).Name }, "spec.racks[2].servers[3].name", "already used"},
		{"duplicate rack name", func(c *inventory.Cluster) { c.Spec.Racks[4].Name = c.Spec.Racks[0].Name }, "spec.racks[4].name", "already defined"},
		{"bad server name", func(c *inventory.Cluster) { srv(c, 0, 3).Name = "Node_1" }, "spec.racks[0].servers[3].name", "DNS label"},
		{"dangling center", func(c *inventory.Cluster) { c.Spec.Racks[0].Center = "dc9" }, "spec.racks[0].center", `"dc9" is not defined`},
		{"dangling site", func(c *inventory.Cluster) { c.Spec.Centers[2].Site = "site-z" }, "spec.centers[2].site", `"site-z" is not defined`},
		{"RTT to unknown center", func(c *inventory.Cluster) { c.Spec.Centers[0].RTTMs["dc7"] = 3 }, "spec.centers[0].rttMs.dc7", "not defined"},
		{"RTT out of range", func(c *inventory.Cluster) { c.Spec.Centers[0].RTTMs["dc3"] = -1 }, "spec.centers[0].rttMs.dc3", "out of range"},
		{"unknown role", func(c *inventory.Cluster) { srv(c, 0, 3).Roles = []inventory.Role{"master"} }, "spec.racks[0].servers[3].roles[0]", "unknown"},
		{"no role", func(c *inventory.Cluster) { srv(c, 0, 3).Roles = nil }, "spec.racks[0].servers[3].roles", "no role"},
		{"center role twice", func(c *inventory.Cluster) { c.Spec.Centers[1].Role = inventory.RoleProduction }, "spec.centers[1].role", "already taken"},
		{"remote-dr in local site", func(c *inventory.Cluster) { c.Spec.Centers[2].Site = "site-a" }, "spec.centers[2].site", "another site"},
		// TOR capacity
		{"more servers than TOR ports", func(c *inventory.Cluster) { c.Spec.Racks[0].MaxServers = 4 }, "spec.racks[0].servers", "maxServers"},
		{"more servers than subnet holds", func(c *inventory.Cluster) {
			r := &c.Spec.Racks[0]
			r.Subnet = "10.1.0.8/29"
			r.TOR.Address, r.TOR.Gateway = "10.1.0.9", "10.1.0.9"
			for i := range r.Servers {
				r.Servers[i].SSH.Address = "10.1.0." + itoa(10+i%4)
			}
		}, "spec.racks[0].servers", "holds"},
		// ASNs
		{"ASN 0", func(c *inventory.Cluster) { c.Spec.Racks[0].TOR.ASN = 0; c.Spec.Network.BGP.Mode = "" }, "spec.racks[0].tor.asn", ""},
		{"ASN AS_TRANS", func(c *inventory.Cluster) { c.Spec.Racks[0].TOR.ASN = 23456 }, "spec.racks[0].tor.asn", "AS_TRANS"},
		{"ASN 65535", func(c *inventory.Cluster) { c.Spec.Sites[0].CoreRouters[0].ASN = 65535 }, "spec.sites[0].coreRouters[0].asn", "reserved"},
		{"ASN 4294967295", func(c *inventory.Cluster) { c.Spec.Network.BGP.ASNBase = 4294967295 }, "spec.network.bgp.asnBase", "reserved"},
		{"TOR without ASN in tor mode", func(c *inventory.Cluster) { c.Spec.Racks[1].TOR.ASN = 0 }, "spec.racks[1].tor.asn", "mode is tor"},
		{"core mode without core routers", func(c *inventory.Cluster) {
			c.Spec.Network.BGP.Mode = inventory.BGPModeCore
			c.Spec.Sites[1].CoreRouters = nil
		}, "spec.racks[6]", "no coreRouters"},
		{"hold shorter than 3 keepalives", func(c *inventory.Cluster) { c.Spec.Network.BGP.HoldSeconds = 5 }, "spec.network.bgp.holdSeconds", "three keepalives"},
		// etcd
		{"even members", func(c *inventory.Cluster) { c.Spec.Etcd.Members = 4 }, "spec.etcd.members", "even"},
		{"one member", func(c *inventory.Cluster) { c.Spec.Etcd.Members = 1 }, "spec.etcd.members", "survives no failure"},
		{"too few eligible", func(c *inventory.Cluster) { c.Spec.Etcd.Members = 7 }, "spec.etcd.members", "need 7 servers"},
		{"no remote-dr candidates", func(c *inventory.Cluster) {
			c.Spec.Etcd.Members = 3
			srv(c, 6, 0).Roles = []inventory.Role{inventory.RoleWorker}
		}, "spec.etcd", "remote-dr center dc3 has 0 eligible"},
		{"two centers only", func(c *inventory.Cluster) {
			c.Spec.Centers = c.Spec.Centers[:2]
			c.Spec.Centers[0].RTTMs = map[string]float64{"dc2": 1}
			c.Spec.Centers[1].RTTMs = map[string]float64{"dc1": 1}
			c.Spec.Racks = c.Spec.Racks[:6]
		}, "spec.etcd", "no remote-dr center"},
		{"election below 5 heartbeats", func(c *inventory.Cluster) { c.Spec.Etcd.HeartbeatMs = 200; c.Spec.Etcd.ElectionTimeoutMs = 500 }, "spec.etcd.electionTimeoutMs", "at least 1000"},
		{"degraded without reason", func(c *inventory.Cluster) { c.Spec.Etcd.AllowDegradedPlacement = &inventory.Degraded{} }, "spec.etcd.allowDegradedPlacement.reason", "empty"},
		{"snapshots without interval", func(c *inventory.Cluster) { c.Spec.Etcd.Snapshots = &inventory.EtcdSnapshots{Keep: 3} }, "spec.etcd.snapshots.every", "is empty"},
		{"snapshots interval not a duration", func(c *inventory.Cluster) { c.Spec.Etcd.Snapshots = &inventory.EtcdSnapshots{Every: "daily"} }, "spec.etcd.snapshots.every", "not a duration"},
		{"snapshots too often", func(c *inventory.Cluster) { c.Spec.Etcd.Snapshots = &inventory.EtcdSnapshots{Every: "10s"} }, "spec.etcd.snapshots.every", "out of range"},
		{"snapshots keep negative", func(c *inventory.Cluster) { c.Spec.Etcd.Snapshots = &inventory.EtcdSnapshots{Every: "1h", Keep: -1} }, "spec.etcd.snapshots.keep", "out of range"},
		// Secrets, SSH, BMC
		{"BMC without password ref", func(c *inventory.Cluster) { srv(c, 0, 0).BMC.Password = inventory.SecretRef{} }, "spec.racks[0].servers[0].bmc.password", "env: VAR or file: PATH"},
		{"BMC cipher suite 0", func(c *inventory.Cluster) { srv(c, 0, 0).BMC.CipherSuites = []int{0} }, "spec.racks[0].servers[0].bmc.cipherSuites[0]", "no authentication"},
		{"BMC cipher suite without integrity", func(c *inventory.Cluster) { srv(c, 0, 0).BMC.CipherSuites = []int{17, 2} }, "spec.racks[0].servers[0].bmc.cipherSuites[1]", "lacks integrity"},
		{"BMC RC4 suite", func(c *inventory.Cluster) { srv(c, 0, 0).BMC.CipherSuites = []int{19} }, "spec.racks[0].servers[0].bmc.cipherSuites[0]", "RC4"},
		{"BMC user too long", func(c *inventory.Cluster) { srv(c, 0, 0).BMC.User = "administrator-0123" }, "spec.racks[0].servers[0].bmc.user", "16 bytes"},
		{"duplicate BMC endpoint", func(c *inventory.Cluster) {
			srv(c, 0, 1).BMC.Address = "10.101.0.99"
			srv(c, 0, 2).BMC.Address = "10.101.0.99"
		}, "spec.racks[0].servers[2].bmc.address", "already used"},
		{"no SSH auth", func(c *inventory.Cluster) { c.Spec.SSH.KeyFile = ""; srv(c, 0, 0).SSH.KeyFile = "" }, "spec.racks[0].servers[0].ssh", "no SSH authentication"},
		{"bad host key", func(c *inventory.Cluster) { srv(c, 0, 0).SSH.HostKey = "SHA256:nope" }, "spec.racks[0].servers[0].ssh.hostKey", "fingerprint"},
		{"bad jumpHost value", func(c *inventory.Cluster) { srv(c, 0, 0).SSH.JumpHost = "bastion9" }, "spec.racks[0].servers[0].ssh.jumpHost", "none"},
		{"SSH port", func(c *inventory.Cluster) { srv(c, 0, 0).SSH.Port = 70000 }, "spec.racks[0].servers[0].ssh.port", "out of range"},
		{"reserved label", func(c *inventory.Cluster) {
			srv(c, 0, 0).Labels = map[string]string{"topology.kubernetes.io/zone": "x"}
		}, "spec.racks[0].servers[0].labels.topology.kubernetes.io/zone", "set by tricenter"},
		{"pinned pod CIDR outside", func(c *inventory.Cluster) { srv(c, 0, 0).PodCIDR = "10.200.0.0/24" }, "spec.racks[0].servers[0].podCIDR", "outside the pod CIDR"},
		// Network sizes and versions
		{"pod mask too long", func(c *inventory.Cluster) { c.Spec.Network.PodMaskSize = 8 }, "spec.network.podMaskSize", "does not fit"},
		{"pod CIDR too small for servers", func(c *inventory.Cluster) { c.Spec.Network.PodCIDR = "10.128.0.0/20" }, "spec.network.podCIDR", "no free /24"},
		{"service CIDR too big", func(c *inventory.Cluster) { c.Spec.Network.ServiceCIDR = "10.64.0.0/10" }, "spec.network.serviceCIDR", "/12 or longer"},
		{"kubernetes version", func(c *inventory.Cluster) { c.Spec.Kubernetes.Version = "1.33" }, "spec.kubernetes.version", "vMAJOR.MINOR.PATCH"},
		{"kubernetes minor unsupported", func(c *inventory.Cluster) { c.Spec.Kubernetes.Version = "v1.33.13" }, "spec.kubernetes.version", "use v1.36.x or v1.37.x"},
		{"etcd version", func(c *inventory.Cluster) { c.Spec.Etcd.Version = "v3.4.23" }, "spec.etcd.version", "not a supported etcd minor"},
		{"node profile", func(c *inventory.Cluster) { c.Spec.Kubernetes.NodeProfile = "vm" }, "spec.kubernetes.nodeProfile", "bare-metal"},
		{"mirror with credentials", func(c *inventory.Cluster) {
			c.Spec.Kubernetes.MirrorURL = "https://u:p@mirror.example/k8s"
			c.Spec.Kubernetes.ArtifactDir = ""
		}, "spec.kubernetes.mirrorURL", "credentials"},
		{"LB VIP outside pool", func(c *inventory.Cluster) { c.Spec.Network.LoadBalancerVIPs = []string{"10.251.0.1"} }, "spec.network.loadBalancerVIPs[0]", "outside"},
		{"LB VIP is API VIP", func(c *inventory.Cluster) { c.Spec.Network.LoadBalancerVIPs = []string{"10.250.0.10"} }, "spec.network.loadBalancerVIPs[0]", "API VIP"},
		{"LB VIP twice", func(c *inventory.Cluster) { c.Spec.Network.LoadBalancerVIPs = []string{"10.250.0.20", "10.250.0.20"} }, "spec.network.loadBalancerVIPs[1]", "twice"},
		{"LB preference unknown", func(c *inventory.Cluster) { c.Spec.Network.LoadBalancerPrefer = "nearest" }, "spec.network.loadBalancerPrefer", "use production, local or none"},
		{"metadata name", func(c *inventory.Cluster) { c.Metadata.Name = "" }, "metadata.name", "empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			c.SetDefaults()
			res := c.Validate(nil)
			if res.OK() {
				t.Fatalf("valid after %q; want an error at %s", tc.name, tc.path)
			}
			for _, p := range res.Errors {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("no error at %s containing %q; got:\n%v", tc.path, tc.msg, res.Err())
		})
	}
}

func TestValidateWarnings(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *inventory.Cluster)
		path   string
		msg    string
	}{
		{"public pod CIDR", func(c *inventory.Cluster) { c.Spec.Network.PodCIDR = "44.0.0.0/10" }, "spec.network.podCIDR", "public"},
		{"public ASN", func(c *inventory.Cluster) { c.Spec.Racks[0].TOR.ASN = 3320 }, "spec.racks[0].tor.asn", "public"},
		{"nine members", func(c *inventory.Cluster) {
			c.Spec.Etcd.Members = 9
			for r := 0; r < 6; r++ {
				c.Spec.Racks[r].Servers[1].Roles = []inventory.Role{inventory.RoleEtcd}
				c.Spec.Racks[r].Servers[2].Roles = []inventory.Role{inventory.RoleEtcd}
			}
		}, "spec.etcd.members", "above 7"},
		{"degraded accepted", func(c *inventory.Cluster) {
			c.Spec.Etcd.Members = 3
			c.Spec.Racks[6].Servers[0].Roles = []inventory.Role{inventory.RoleWorker}
			c.Spec.Etcd.AllowDegradedPlacement = &inventory.Degraded{Reason: "dc3 racks arrive in March"}
		}, "spec.etcd.allowDegradedPlacement", "dc3 racks arrive in March"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			res := c.Validate(nil)
			if !res.OK() {
				t.Fatalf("want valid with a warning, got %v", res.Err())
			}
			for _, p := range res.Warnings {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Fatalf("no warning at %s containing %q; got %v", tc.path, tc.msg, res.Warnings)
		})
	}
}

func TestValidateReportsEverythingAtOnce(t *testing.T) {
	c := base()
	c.Spec.Racks[0].Servers[0].SSH.Address = "127.0.0.1"
	c.Spec.Racks[1].Servers[0].BMC.Address = "224.1.1.1"
	c.Spec.Network.ServiceCIDR = "10.128.0.0/16"
	c.Spec.Racks[2].TOR.ASN = 23456
	res := c.Validate(nil)
	if len(res.Errors) < 4 {
		t.Fatalf("want at least 4 errors, got %d: %v", len(res.Errors), res.Err())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
