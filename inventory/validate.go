package inventory

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var (
	reDNSLabel   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	reDNSName    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	reVersion    = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
	reLabelName  = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	reLabelValue = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
)

// validator carries what the checks share: the result and the addresses
// seen so far, so duplicates name both places.
type validator struct {
	c     *Cluster
	r     *Result
	addrs map[netip.Addr]string // host address -> first path
	names map[string]string     // server/TOR/router name -> first path
	// nets are the prefixes that must not overlap one another.
	nets []namedPrefix
	pod  netip.Prefix
	svc  netip.Prefix
	// What placement and IPAM derived, when the inventory got that far.
	prior  *Prior
	placed *Placement
	ips    *IPPlan
}

type namedPrefix struct {
	path string
	what string
	p    netip.Prefix
}

// Validate checks the whole inventory and reports every problem at once,
// each with its field path, what is wrong and how to fix it. Call it after
// SetDefaults (Load and Parse do that). lines may be nil.
func (c *Cluster) Validate(lines *Lines) *Result {
	return c.validate(lines, nil).r
}

// validate runs every check; placement and IPAM run last, with prior, and
// their results are kept so BuildPlan does not derive them twice.
func (c *Cluster) validate(lines *Lines, prior *Prior) *validator {
	v := &validator{
		c:     c,
		prior: prior,
		r:     &Result{lines: lines, Errors: []Problem{}, Warnings: []Problem{}},
		addrs: map[netip.Addr]string{},
		names: map[string]string{},
	}
	v.metadata()
	sites := v.sites()
	centers := v.centers(sites)
	v.network()
	racksOK := v.racks(centers)
	v.overlaps()
	v.etcd()
	v.kubernetes()
	v.pki()
	if racksOK && len(v.r.Errors) == 0 {
		v.placement()
		v.podCapacity()
	}
	v.r.sort()
	return v
}

func (v *validator) metadata() {
	switch n := v.c.Metadata.Name; {
	case n == "":
		v.r.errorf("metadata.name", "is empty: name the cluster (lowercase letters, digits and '-')")
	case len(n) > 63 || !reDNSLabel.MatchString(n):
		v.r.errorf("metadata.name", "%q is not a DNS label: use at most 63 lowercase letters, digits and '-'", n)
	}
}

// name checks a name and records it in the shared name space of servers,
// TORs and routers (they all become BGP peers and node names).
func (v *validator) name(path, kind, n string, shared bool) {
	switch {
	case n == "":
		v.r.errorf(path, "%s name is empty", kind)
		return
	case len(n) > 63 || !reDNSLabel.MatchString(n):
		v.r.errorf(path, "%s name %q is not a DNS label: use lowercase letters, digits and '-' (at most 63)", kind, n)
	}
	if !shared {
		return
	}
	if first, dup := v.names[n]; dup {
		v.r.errorf(path, "name %q is already used at %s: names of servers, TORs and routers must be unique", n, first)
		return
	}
	v.names[n] = path
}

// hostAddr parses a host address, checks its class and uniqueness.
func (v *validator) hostAddr(path, what, s string) (netip.Addr, bool) {
	if s == "" {
		v.r.errorf(path, "%s address is empty", what)
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		v.r.errorf(path, "%q is not an IP address: write a dotted IPv4 address such as 10.1.2.3", s)
		return netip.Addr{}, false
	}
	if why := badHostAddr(a); why != "" {
		v.r.errorf(path, "%s address %s %s: use a routable private address", what, a, why)
		return a, false
	}
	if first, dup := v.addrs[a]; dup {
		v.r.errorf(path, "address %s is already used at %s: every node, BMC, TOR, router and jump host needs its own address", a, first)
		return a, false
	}
	v.addrs[a] = path
	return a, true
}

// prefix parses a network, checks its class and warns when public.
func (v *validator) prefix(path, what, s string) (netip.Prefix, bool) {
	if s == "" {
		v.r.errorf(path, "%s is empty: set a CIDR such as 10.96.0.0/12", what)
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		v.r.errorf(path, "%q is not a CIDR: write it as ADDRESS/BITS, e.g. 10.1.0.0/24", s)
		return netip.Prefix{}, false
	}
	if p.Masked() != p {
		v.r.errorf(path, "%s has host bits set: did you mean %s?", p, p.Masked())
		return netip.Prefix{}, false
	}
	if why := badPrefix(p); why != "" {
		v.r.errorf(path, "%s %s %s: use a private range", what, p, why)
		return netip.Prefix{}, false
	}
	if !isPrivate(p) {
		v.r.warnf(path, "%s %s is public address space: private (10/8, 172.16/12, 192.168/16), shared (100.64/10) or benchmarking (198.18/15) ranges are expected", what, p)
	}
	return p, true
}

func (v *validator) port(path string, p int) {
	if p < 1 || p > 65535 {
		v.r.errorf(path, "port %d is out of range: use 1-65535", p)
	}
}

// asn checks an AS number: reserved values are errors, public ones warn.
func (v *validator) asn(path string, asn uint32) {
	switch {
	case asn == 0:
		v.r.errorf(path, "ASN 0 is reserved (RFC 7607): use a private ASN (64512-65534 or 4200000000-4294967294)")
	case asn == 23456:
		v.r.errorf(path, "ASN 23456 is AS_TRANS (RFC 6793), not a real AS: use a private ASN")
	case asn == 65535:
		v.r.errorf(path, "ASN 65535 is reserved (RFC 7300): use 64512-65534")
	case asn == 4294967295:
		v.r.errorf(path, "ASN 4294967295 is reserved (RFC 7300): use 4200000000-4294967294")
	case (asn >= 64512 && asn <= 65534) || (asn >= 4200000000 && asn <= 4294967294):
	case (asn >= 64496 && asn <= 64511) || (asn >= 65536 && asn <= 65551):
		v.r.warnf(path, "ASN %d is reserved for documentation (RFC 5398): use a private ASN", asn)
	default:
		v.r.warnf(path, "ASN %d is a public AS number: private ASNs (64512-65534, 4200000000-4294967294) are expected inside a datacenter unless it is yours", asn)
	}
}

func (v *validator) secret(path, what string, s SecretRef, required bool) {
	switch {
	case s.IsZero():
		if required {
			v.r.errorf(path, "%s is missing: reference it with env: VAR or file: PATH (never inline)", what)
		}
	case s.Env != "" && s.File != "":
		v.r.errorf(path, "%s sets both env and file: keep one", what)
	case s.Env != "" && !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(s.Env):
		v.r.errorf(path+".env", "%q is not an environment variable name", s.Env)
	}
}

func (v *validator) hostKey(path, s string) {
	if s == "" {
		return
	}
	if fp, ok := strings.CutPrefix(s, "SHA256:"); ok {
		if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fp, "=")); err != nil || len(b) != 32 {
			v.r.errorf(path, "%q is not a SHA256 host-key fingerprint: copy it from `ssh-keyscan HOST | ssh-keygen -lf -`", s)
		}
		return
	}
	f := strings.Fields(s)
	if len(f) < 2 || !strings.HasPrefix(f[0], "ssh-") && !strings.HasPrefix(f[0], "ecdsa-") {
		v.r.errorf(path, "host key must be a fingerprint (SHA256:...) or a public key line (ssh-ed25519 AAAA...)")
		return
	}
	if _, err := base64.StdEncoding.DecodeString(f[1]); err != nil {
		v.r.errorf(path, "the public key is not valid base64: copy the line from the host's /etc/ssh/ssh_host_*_key.pub")
	}
}

func (v *validator) sites() map[string]*Site {
	sites := map[string]*Site{}
	if len(v.c.Spec.Sites) == 0 {
		v.r.errorf("spec.sites", "no sites: a three-center cluster has two sites")
	}
	for i := range v.c.Spec.Sites {
		s := &v.c.Spec.Sites[i]
		path := fmt.Sprintf("spec.sites[%d]", i)
		v.name(path+".name", "site", s.Name, false)
		if _, dup := sites[s.Name]; dup && s.Name != "" {
			v.r.errorf(path+".name", "site %q is defined twice", s.Name)
		}
		sites[s.Name] = s
		for j, cr := range s.CoreRouters {
			rp := fmt.Sprintf("%s.coreRouters[%d]", path, j)
			v.name(rp+".name", "core router", cr.Name, true)
			v.hostAddr(rp+".address", "core router", cr.Address)
			v.asn(rp+".asn", cr.ASN)
		}
	}
	return sites
}

func (v *validator) centers(sites map[string]*Site) map[string]*Center {
	centers := map[string]*Center{}
	roles := map[CenterRole]string{}
	jumps := map[netip.Addr]*JumpHost{}
	if b := v.c.Spec.SSH.Bastion; b != nil {
		v.jumpHost("spec.ssh.bastion", b, jumps)
	}
	if len(v.c.Spec.Centers) == 0 {
		v.r.errorf("spec.centers", "no centers: define production, local-dr and remote-dr")
	}
	for i := range v.c.Spec.Centers {
		ctr := &v.c.Spec.Centers[i]
		path := fmt.Sprintf("spec.centers[%d]", i)
		v.name(path+".name", "center", ctr.Name, false)
		if _, dup := centers[ctr.Name]; dup && ctr.Name != "" {
			v.r.errorf(path+".name", "center %q is defined twice", ctr.Name)
		}
		centers[ctr.Name] = ctr
		if _, ok := sites[ctr.Site]; !ok {
			v.r.errorf(path+".site", "site %q is not defined in spec.sites: add it or fix the name", ctr.Site)
		}
		switch ctr.Role {
		case RoleProduction, RoleLocalDR, RoleRemoteDR:
			if first, dup := roles[ctr.Role]; dup {
				v.r.errorf(path+".role", "role %s is already taken by %s: each of production, local-dr and remote-dr is one center", ctr.Role, first)
			} else {
				roles[ctr.Role] = path
			}
		default:
			v.r.errorf(path+".role", "role %q is unknown: use production, local-dr or remote-dr", ctr.Role)
		}
		if j := ctr.JumpHost; j != nil {
			v.jumpHost(path+".jumpHost", j, jumps)
		}
	}
	for i := range v.c.Spec.Centers {
		ctr := &v.c.Spec.Centers[i]
		path := fmt.Sprintf("spec.centers[%d].rttMs", i)
		for other, ms := range ctr.RTTMs {
			switch {
			case other == ctr.Name:
				v.r.errorf(path+"."+other, "a center's RTT to itself is meaningless: remove it")
			case centers[other] == nil:
				v.r.errorf(path+"."+other, "center %q is not defined in spec.centers", other)
			case ms <= 0 || ms > 1000:
				v.r.errorf(path+"."+other, "RTT %.1f ms is out of range: measure it (ping) and give 0 < rtt <= 1000", ms)
			}
		}
	}
	// Site rules of two sites, three centers.
	prod, ldr, rdr := centerByRole(v.c, RoleProduction), centerByRole(v.c, RoleLocalDR), centerByRole(v.c, RoleRemoteDR)
	if prod != nil && ldr != nil && ldr.Site != prod.Site {
		v.r.errorf(pathOfCenter(v.c, ldr)+".site", "the local-dr center must be in the production center's site (%s): it is the low-latency half of the quorum", prod.Site)
	}
	if prod != nil && rdr != nil && rdr.Site == prod.Site {
		v.r.errorf(pathOfCenter(v.c, rdr)+".site", "the remote-dr center must be in another site than production (%s): otherwise a site loss takes everything", prod.Site)
	}
	return centers
}

// jumpHost checks a bastion. Several centers may share one (a site
// bastion) when address, port and user agree.
func (v *validator) jumpHost(path string, j *JumpHost, seen map[netip.Addr]*JumpHost) {
	if a, err := netip.ParseAddr(j.Address); err == nil {
		if prev, ok := seen[a]; ok {
			if prev.Port != j.Port || prev.User != j.User {
				v.r.errorf(path+".address", "jump host %s is also used with another port or user: give both the same port and user, or use another address", a)
			}
		} else {
			v.hostAddr(path+".address", "jump host", j.Address)
			seen[a] = j
		}
	} else {
		v.hostAddr(path+".address", "jump host", j.Address)
	}
	v.port(path+".port", j.Port)
	v.hostKey(path+".hostKey", j.HostKey)
}

func centerByRole(c *Cluster, r CenterRole) *Center {
	for i := range c.Spec.Centers {
		if c.Spec.Centers[i].Role == r {
			return &c.Spec.Centers[i]
		}
	}
	return nil
}

func pathOfCenter(c *Cluster, ctr *Center) string {
	for i := range c.Spec.Centers {
		if &c.Spec.Centers[i] == ctr {
			return fmt.Sprintf("spec.centers[%d]", i)
		}
	}
	return "spec.centers"
}

func (v *validator) network() {
	n := &v.c.Spec.Network
	if p, ok := v.prefix("spec.network.podCIDR", "pod CIDR", n.PodCIDR); ok {
		v.pod = p
		v.nets = append(v.nets, namedPrefix{"spec.network.podCIDR", "the pod CIDR", p})
		if n.PodMaskSize < p.Bits() || n.PodMaskSize > 28 {
			v.r.errorf("spec.network.podMaskSize", "/%d does not fit the pod CIDR %s: use a value between %d and 28 (24 gives 254 pods per node)", n.PodMaskSize, p, p.Bits())
		} else if n.PodMaskSize-p.Bits() > 24 {
			v.r.errorf("spec.network.podMaskSize", "/%d splits %s into more than 16M blocks: use a shorter mask", n.PodMaskSize, p)
		}
	}
	if p, ok := v.prefix("spec.network.serviceCIDR", "service CIDR", n.ServiceCIDR); ok {
		v.svc = p
		v.nets = append(v.nets, namedPrefix{"spec.network.serviceCIDR", "the service CIDR", p})
		switch {
		case p.Bits() < 12:
			v.r.errorf("spec.network.serviceCIDR", "%s is larger than kube-apiserver accepts: use /12 or longer", p)
		case p.Bits() > 28:
			v.r.errorf("spec.network.serviceCIDR", "%s is too small: it must hold the kubernetes service IP and the cluster DNS IP (the tenth address); use /28 or shorter", p)
		}
	}
	for i, s := range n.LoadBalancerPool {
		path := fmt.Sprintf("spec.network.loadBalancerPool[%d]", i)
		if p, ok := v.prefix(path, "LoadBalancer pool", s); ok {
			v.nets = append(v.nets, namedPrefix{path, "the LoadBalancer pool " + p.String(), p})
		}
	}
	if n.APIVIP == "" {
		v.r.errorf("spec.network.apiVIP", "is empty: set the Kubernetes API virtual IP, or a loadBalancerPool to take it from")
	} else if a, ok := v.hostAddr("spec.network.apiVIP", "API VIP", n.APIVIP); ok {
		inPool := false
		for _, np := range v.nets {
			if strings.HasPrefix(np.path, "spec.network.loadBalancerPool") && np.p.Contains(a) {
				inPool = true
				if w := networkOrBroadcast(np.p, a); w != "" {
					v.r.errorf("spec.network.apiVIP", "%s is the %s address of %s: pick another address", a, w, np.p)
				}
			}
		}
		for _, np := range v.nets {
			if !strings.HasPrefix(np.path, "spec.network.loadBalancerPool") && np.p.Contains(a) {
				v.r.errorf("spec.network.apiVIP", "%s lies inside %s (%s): the VIP must not collide with pods or services", a, np.what, np.p)
			}
		}
		if !inPool && len(n.LoadBalancerPool) > 0 {
			v.r.warnf("spec.network.apiVIP", "%s is outside the LoadBalancer pool: make sure the routers accept it", a)
		}
	}
	v.loadBalancerVIPs()
	if n.ClusterDomain != "" && !reDNSName.MatchString(n.ClusterDomain) {
		v.r.errorf("spec.network.clusterDomain", "%q is not a DNS name", n.ClusterDomain)
	}
	b := &n.BGP
	switch b.Mode {
	case BGPModeTOR, BGPModeCore:
	default:
		v.r.errorf("spec.network.bgp.mode", "%q is unknown: use tor (peer with the rack's TOR) or core (peer with the site's core routers)", b.Mode)
	}
	switch b.NodeASN {
	case ASNPerRack, ASNPerNode:
	default:
		v.r.errorf("spec.network.bgp.nodeASN", "%q is unknown: use per-rack or per-node", b.NodeASN)
	}
	v.asn("spec.network.bgp.asnBase", b.ASNBase)
	if b.KeepaliveSeconds < 1 || b.KeepaliveSeconds > 3600 {
		v.r.errorf("spec.network.bgp.keepaliveSeconds", "%d is out of range: use 1-3600 (default 3)", b.KeepaliveSeconds)
	}
	if b.HoldSeconds < 3 || b.HoldSeconds > 65535 {
		v.r.errorf("spec.network.bgp.holdSeconds", "%d is out of range: use 3-65535 (default 9)", b.HoldSeconds)
	} else if b.HoldSeconds < 3*b.KeepaliveSeconds {
		v.r.errorf("spec.network.bgp.holdSeconds", "hold time %d s is shorter than three keepalives (%d s): a single lost keepalive would drop the session", b.HoldSeconds, 3*b.KeepaliveSeconds)
	}
	v.secret("spec.network.bgp.password", "BGP TCP-MD5 password", b.Password, false)
}

// loadBalancerVIPs checks the static service VIPs: inside the pool, not
// the API VIP, no duplicates; and the LoadBalancer Services' default
// center preference.
func (v *validator) loadBalancerVIPs() {
	n := &v.c.Spec.Network
	switch n.LoadBalancerPrefer {
	case "", "production", "local", "none":
	default:
		v.r.errorf("spec.network.loadBalancerPrefer", "%q is unknown: use production, local or none", n.LoadBalancerPrefer)
	}
	seen := map[netip.Addr]bool{}
	for i, s := range n.LoadBalancerVIPs {
		path := fmt.Sprintf("spec.network.loadBalancerVIPs[%d]", i)
		a, err := netip.ParseAddr(s)
		if err != nil {
			v.r.errorf(path, "%q is not an IP address", s)
			continue
		}
		if why := badHostAddr(a); why != "" {
			v.r.errorf(path, "VIP %s %s", a, why)
			continue
		}
		inPool := false
		for _, np := range v.nets {
			if strings.HasPrefix(np.path, "spec.network.loadBalancerPool") && np.p.Contains(a) {
				inPool = true
			}
		}
		switch {
		case !inPool:
			v.r.errorf(path, "VIP %s is outside spec.network.loadBalancerPool: routers only accept VIPs from the pool", a)
		case s == n.APIVIP:
			v.r.errorf(path, "VIP %s is the API VIP: pick another address", a)
		case seen[a]:
			v.r.errorf(path, "VIP %s is listed twice", a)
		}
		seen[a] = true
	}
}

// racks checks racks, TORs and servers. It returns false when references
// are broken, so placement is not attempted on a topology it cannot read.
func (v *validator) racks(centers map[string]*Center) bool {
	ok := true
	seen := map[string]string{}
	bmcs := map[string]string{}
	if len(v.c.Spec.Racks) == 0 {
		v.r.errorf("spec.racks", "no racks: describe each rack with its TOR, subnet and servers")
		return false
	}
	for i := range v.c.Spec.Racks {
		r := &v.c.Spec.Racks[i]
		path := fmt.Sprintf("spec.racks[%d]", i)
		v.name(path+".name", "rack", r.Name, false)
		if first, dup := seen[r.Name]; dup && r.Name != "" {
			v.r.errorf(path+".name", "rack %q is already defined at %s", r.Name, first)
		}
		seen[r.Name] = path
		ctr, found := centers[r.Center]
		if !found {
			v.r.errorf(path+".center", "center %q is not defined in spec.centers", r.Center)
			ok = false
		}
		subnet, subnetOK := v.prefix(path+".subnet", "rack subnet", r.Subnet)
		if subnetOK {
			if subnet.Bits() > 29 {
				v.r.errorf(path+".subnet", "%s is too small for a rack: use /29 or shorter (the default is /24)", subnet)
				subnetOK = false
			} else {
				v.nets = append(v.nets, namedPrefix{path + ".subnet", "rack " + r.Name + "'s subnet", subnet})
			}
		}
		// TOR
		tp := path + ".tor"
		v.name(tp+".name", "TOR", r.TOR.Name, true)
		var torAddr netip.Addr
		if r.TOR.Address != "" {
			if a, aok := v.hostAddr(tp+".address", "TOR", r.TOR.Address); aok {
				torAddr = a
				v.inSubnet(tp+".address", "TOR", a, subnet, subnetOK)
			}
		}
		if r.TOR.Gateway != "" && r.TOR.Gateway != r.TOR.Address {
			if a, err := netip.ParseAddr(r.TOR.Gateway); err != nil {
				v.r.errorf(tp+".gateway", "%q is not an IP address", r.TOR.Gateway)
			} else if why := badHostAddr(a); why != "" {
				v.r.errorf(tp+".gateway", "gateway %s %s", a, why)
			} else {
				v.inSubnet(tp+".gateway", "gateway", a, subnet, subnetOK)
			}
		}
		mode := v.c.Spec.Network.BGP.Mode
		if r.TOR.ASN != 0 {
			v.asn(tp+".asn", r.TOR.ASN)
		} else if mode == BGPModeTOR {
			v.r.errorf(tp+".asn", "TOR %s has no ASN but network.bgp.mode is tor: set the TOR's ASN, or use mode core to peer with the site's core routers", r.TOR.Name)
		}
		if mode == BGPModeTOR && !torAddr.IsValid() && r.TOR.Address == "" {
			v.r.errorf(tp+".address", "TOR %s has no address but network.bgp.mode is tor: nodes need it to peer", r.TOR.Name)
		}
		if mode == BGPModeCore && ctr != nil {
			if s := v.c.Site(ctr.Site); s != nil && len(s.CoreRouters) == 0 {
				v.r.errorf(path, "network.bgp.mode is core but site %s has no coreRouters: add them or use mode tor", ctr.Site)
			}
		}
		if r.NodeASN != 0 {
			v.asn(path+".nodeASN", r.NodeASN)
		}
		// Capacity
		if r.MaxServers < 1 || r.MaxServers > 1024 {
			v.r.errorf(path+".maxServers", "%d is out of range: use 1-1024 (a TOR has 40-48 server ports)", r.MaxServers)
		} else if len(r.Servers) > r.MaxServers {
			v.r.errorf(path+".servers", "rack %s has %d servers but its TOR takes %d (maxServers): move servers to another rack", r.Name, len(r.Servers), r.MaxServers)
		}
		if subnetOK {
			free := usableHosts(subnet)
			if torAddr.IsValid() && subnet.Contains(torAddr) {
				free--
			}
			if len(r.Servers) > free {
				v.r.errorf(path+".servers", "rack %s has %d servers but subnet %s holds %d host addresses: widen the subnet", r.Name, len(r.Servers), subnet, free)
			}
		}
		for j := range r.Servers {
			v.server(fmt.Sprintf("%s.servers[%d]", path, j), &r.Servers[j], subnet, subnetOK, torAddr, bmcs)
		}
	}
	return ok
}

func (v *validator) inSubnet(path, what string, a netip.Addr, subnet netip.Prefix, subnetOK bool) {
	if !subnetOK {
		return
	}
	if !subnet.Contains(a) {
		v.r.errorf(path, "%s address %s is outside the rack subnet %s: fix the address or the subnet", what, a, subnet)
		return
	}
	if w := networkOrBroadcast(subnet, a); w != "" {
		v.r.errorf(path, "%s address %s is the %s address of %s: use a host address", what, a, w, subnet)
	}
}

func (v *validator) server(path string, s *Server, subnet netip.Prefix, subnetOK bool, tor netip.Addr, bmcs map[string]string) {
	v.name(path+".name", "server", s.Name, true)
	if len(s.Roles) == 0 {
		v.r.errorf(path+".roles", "server %s has no role: give it etcd, control-plane and/or worker", s.Name)
	}
	seenRole := map[Role]bool{}
	for k, role := range s.Roles {
		if !validRole(role) {
			v.r.errorf(fmt.Sprintf("%s.roles[%d]", path, k), "role %q is unknown: use etcd, control-plane or worker", role)
		}
		if seenRole[role] {
			v.r.errorf(fmt.Sprintf("%s.roles[%d]", path, k), "role %s is listed twice", role)
		}
		seenRole[role] = true
	}
	sp := path + ".ssh"
	if a, ok := v.hostAddr(sp+".address", "node", s.SSH.Address); ok {
		v.inSubnet(sp+".address", "node", a, subnet, subnetOK)
	}
	v.port(sp+".port", s.SSH.Port)
	if s.SSH.User == "" {
		v.r.errorf(sp+".user", "SSH user is empty: set it here or in spec.ssh.user")
	}
	if s.SSH.KeyFile == "" && (s.SSH.Agent == nil || !*s.SSH.Agent) {
		v.r.errorf(sp, "server %s has no SSH authentication: set spec.ssh.keyFile, or agent: true to use ssh-agent", s.Name)
	}
	if s.SSH.JumpHost != "" && s.SSH.JumpHost != JumpNone {
		v.r.errorf(sp+".jumpHost", "%q: leave it empty to use the center's jump host, or write none for a direct connection", s.SSH.JumpHost)
	}
	v.hostKey(sp+".hostKey", s.SSH.HostKey)
	if b := s.BMC; b != nil {
		bp := path + ".bmc"
		if a, ok := v.hostAddr(bp+".address", "BMC", b.Address); ok {
			key := netip.AddrPortFrom(a, uint16(b.Port)).String()
			if first, dup := bmcs[key]; dup {
				v.r.errorf(bp, "BMC endpoint %s is already used at %s", key, first)
			}
			bmcs[key] = bp
		}
		v.port(bp+".port", b.Port)
		if b.User == "" {
			v.r.errorf(bp+".user", "BMC user is empty")
		}
		v.secret(bp+".password", "BMC password", b.Password, true)
		if len(b.User) > 16 {
			v.r.errorf(bp+".user", "BMC user %q is longer than 16 bytes, the IPMI limit", b.User)
		}
		seenSuite := map[int]bool{}
		for k, cs := range b.CipherSuites {
			cp := fmt.Sprintf("%s.cipherSuites[%d]", bp, k)
			switch {
			case cs == 0:
				v.r.errorf(cp, "cipher suite 0 has no authentication and is refused: use 17 or 3")
			case cs < 0 || cs > 19:
				v.r.errorf(cp, "cipher suite %d does not exist: IPMI 2.0 defines 0-19 (use 17, then 3)", cs)
			case !contains(SupportedCipherSuites, cs):
				v.r.errorf(cp, "cipher suite %d lacks integrity or AES confidentiality (or uses RC4): use one of 17, 3, 8 or 12", cs)
			case seenSuite[cs]:
				v.r.errorf(cp, "cipher suite %d is listed twice", cs)
			}
			seenSuite[cs] = true
		}
	}
	if s.PodCIDR != "" {
		if p, err := netip.ParsePrefix(s.PodCIDR); err != nil {
			v.r.errorf(path+".podCIDR", "%q is not a CIDR", s.PodCIDR)
		} else if v.pod.IsValid() {
			switch {
			case p.Bits() != v.c.Spec.Network.PodMaskSize:
				v.r.errorf(path+".podCIDR", "%s is a /%d, podMaskSize is /%d", p, p.Bits(), v.c.Spec.Network.PodMaskSize)
			case p.Masked() != p:
				v.r.errorf(path+".podCIDR", "%s has host bits set: did you mean %s?", p, p.Masked())
			case !v.pod.Contains(p.Addr()):
				v.r.errorf(path+".podCIDR", "%s is outside the pod CIDR %s", p, v.pod)
			}
		}
	}
	for k, val := range s.Labels {
		lp := path + ".labels." + k
		name := k
		if i := strings.LastIndex(k, "/"); i >= 0 {
			if !reDNSName.MatchString(k[:i]) || i > 253 {
				v.r.errorf(lp, "label prefix %q is not a DNS subdomain", k[:i])
			}
			name = k[i+1:]
		}
		if len(name) > 63 || !reLabelName.MatchString(name) {
			v.r.errorf(lp, "label key %q is not valid: at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric", k)
		}
		if len(val) > 63 || !reLabelValue.MatchString(val) {
			v.r.errorf(lp, "label value %q is not valid: at most 63 letters, digits, '-', '_' or '.'", val)
		}
		if strings.HasPrefix(k, "topology.kubernetes.io/") || strings.HasPrefix(k, "tricenter.io/") {
			v.r.errorf(lp, "label %s is set by tricenter from the topology: remove it", k)
		}
	}
}

// overlaps reports every pair of pod, service, rack and pool networks that
// overlap.
func (v *validator) overlaps() {
	for i := 0; i < len(v.nets); i++ {
		for j := i + 1; j < len(v.nets); j++ {
			a, b := v.nets[i], v.nets[j]
			if a.p.Overlaps(b.p) {
				v.r.errorf(b.path, "%s (%s) overlaps %s (%s at %s): give each its own range", b.what, b.p, a.what, a.p, a.path)
			}
		}
	}
}

func (v *validator) etcd() {
	e := &v.c.Spec.Etcd
	if e.Version != "" {
		if ver, err := ParseVersion(e.Version); err != nil {
			v.r.errorf("spec.etcd.version", "%v", err)
		} else if !EtcdSupported(ver) {
			v.r.errorf("spec.etcd.version", "%s is not a supported etcd minor: use v%s.x or v%s.x (default %s)", ver, SupportedEtcdMinors[0], SupportedEtcdMinors[len(SupportedEtcdMinors)-1], DefaultEtcdVersion)
		}
	}
	if n := int(e.Members); n != 0 {
		switch {
		case n%2 == 0:
			v.r.errorf("spec.etcd.members", "%d is even: an even member count tolerates no more failures than the odd count below it; use %d or %d", n, n-1, n+1)
		case n == 1:
			if e.AllowDegradedPlacement == nil {
				v.r.errorf("spec.etcd.members", "1 member survives no failure: use 3, 5 or 7 (or set allowDegradedPlacement with a reason for a test cluster)")
			}
		case n > 7:
			v.r.warnf("spec.etcd.members", "%d members: every write waits for %d of them; above 7 members etcd gets slower without real gain", n, n/2+1)
		}
	}
	if e.HeartbeatMs < 0 || e.HeartbeatMs > 5000 {
		v.r.errorf("spec.etcd.heartbeatMs", "%d is out of range: use 10-5000 ms, or leave it empty to derive it from the centers' RTTs", e.HeartbeatMs)
	}
	if e.ElectionTimeoutMs < 0 || e.ElectionTimeoutMs > maxElectionMs {
		v.r.errorf("spec.etcd.electionTimeoutMs", "%d is out of range: at most %d ms", e.ElectionTimeoutMs, maxElectionMs)
	}
	if e.HeartbeatMs > 0 && e.ElectionTimeoutMs > 0 && e.ElectionTimeoutMs < minElectionRatio*e.HeartbeatMs {
		v.r.errorf("spec.etcd.electionTimeoutMs", "%d ms is less than %d heartbeats (%d ms): etcd refuses it; use at least %d", e.ElectionTimeoutMs, minElectionRatio, e.HeartbeatMs, minElectionRatio*e.HeartbeatMs)
	}
	if d := e.AllowDegradedPlacement; d != nil && strings.TrimSpace(d.Reason) == "" {
		v.r.errorf("spec.etcd.allowDegradedPlacement.reason", "is empty: say why a placement that cannot survive a center loss is acceptable")
	}
	if s := e.Snapshots; s != nil {
		d, err := time.ParseDuration(s.Every)
		switch {
		case s.Every == "":
			v.r.errorf("spec.etcd.snapshots.every", "is empty: say how often to take a snapshot, such as 6h")
		case err != nil:
			v.r.errorf("spec.etcd.snapshots.every", "%q is not a duration: write it like 6h or 30m", s.Every)
		case d < MinSnapshotEvery || d > MaxSnapshotEvery:
			v.r.errorf("spec.etcd.snapshots.every", "%s is out of range: use %v to %v", s.Every, MinSnapshotEvery, MaxSnapshotEvery)
		}
		if s.Keep < 0 || s.Keep > 1000 {
			v.r.errorf("spec.etcd.snapshots.keep", "%d is out of range: keep 1 to 1000 snapshots per storing member (default %d)", s.Keep, DefaultSnapshotKeep)
		}
		if len(v.c.Spec.Sites) < 2 {
			v.r.errorf("spec.etcd.snapshots", "needs two sites: snapshots are kept in the site they were not taken in, so that losing a site leaves a copy")
		}
	}
}

// pki checks spec.pki: positive durations, renewBefore shorter than the
// leaf lifetime (else every apply would reissue every leaf).
func (v *validator) pki() {
	p := v.c.Spec.PKI
	parse := func(path, s string) (time.Duration, bool) {
		if s == "" {
			return 0, false
		}
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			v.r.errorf(path, "%q is not a duration: write it like 720h or 10m", s)
			return 0, false
		case d <= 0:
			v.r.errorf(path, "%s is not positive: use a duration such as 720h, or leave it empty for the default", s)
			return 0, false
		}
		return d, true
	}
	life, lifeOK := parse("spec.pki.leafLifetime", p.LeafLifetime)
	if !lifeOK {
		life = DefaultPKILeafLifetime
	}
	renew, renewOK := parse("spec.pki.renewBefore", p.RenewBefore)
	if lifeOK && life < time.Minute {
		v.r.errorf("spec.pki.leafLifetime", "%s is shorter than a minute: use at least 1m", p.LeafLifetime)
	}
	if !renewOK {
		if lifeOK && DefaultPKIRenewBefore >= life {
			v.r.errorf("spec.pki.renewBefore", "is unset, and its default %s is not shorter than spec.pki.leafLifetime %s: every apply would reissue every certificate; set renewBefore shorter than leafLifetime (e.g. half of it)", fmtDuration(DefaultPKIRenewBefore), p.LeafLifetime)
		}
		return
	}
	if renew >= life {
		v.r.errorf("spec.pki.renewBefore", "%s is not shorter than the leaf lifetime %s: every apply would reissue every certificate; use less (e.g. half of it)", p.RenewBefore, fmtDuration(life))
	}
}

// fmtDuration writes d without zero minutes and seconds ("720h", "10m").
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (v *validator) kubernetes() {
	k := &v.c.Spec.Kubernetes
	v.podSecurity(&k.PodSecurity)
	if ver, err := ParseVersion(k.Version); err != nil {
		v.r.errorf("spec.kubernetes.version", "%v", err)
	} else if !KubernetesSupported(ver) {
		v.r.errorf("spec.kubernetes.version", "%s is not a supported Kubernetes minor: use v%s.x or v%s.x (default %s)", ver, SupportedKubernetesMinors[0], SupportedKubernetesMinors[len(SupportedKubernetesMinors)-1], DefaultKubernetesVersion)
	}
	switch k.NodeProfile {
	case "", NodeProfileBareMetal, NodeProfileNspawn:
	default:
		v.r.errorf("spec.kubernetes.nodeProfile", "%q is not a node profile: use bare-metal (real servers) or nspawn (the lab's machines)", k.NodeProfile)
	}
	if k.MirrorURL == "" {
		for _, f := range []struct {
			path string
			set  bool
		}{
			{"spec.kubernetes.mirrorManifestSHA256", k.MirrorManifestSHA256 != ""},
			{"spec.kubernetes.mirrorManifest", k.MirrorManifest != ""},
			{"spec.kubernetes.allowInsecureMirror", k.AllowInsecureMirror},
		} {
			if f.set {
				v.r.errorf(f.path, "is set without mirrorURL: remove it, or set mirrorURL")
			}
		}
		return
	}
	u, err := url.Parse(k.MirrorURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.r.errorf("spec.kubernetes.mirrorURL", "%q is not an http(s) URL", k.MirrorURL)
	case u.User != nil:
		v.r.errorf("spec.kubernetes.mirrorURL", "credentials in the URL would end up in logs: use a mirror without inline credentials")
	case u.Scheme == "http" && !k.AllowInsecureMirror:
		v.r.errorf("spec.kubernetes.mirrorURL", "%q is plain http: use https, or set allowInsecureMirror: true for a lab", k.MirrorURL)
	case u.Scheme == "http":
		v.r.warnf("spec.kubernetes.allowInsecureMirror", "the mirror %s is plain http: anyone on the path sees what is fetched and can stall it (the pinned manifest still rejects altered files); use https outside a lab", u.Host)
	case k.AllowInsecureMirror:
		v.r.warnf("spec.kubernetes.allowInsecureMirror", "has no effect: the mirror is https; remove it")
	}
	if k.ArtifactDir != "" && k.ArtifactDir != DefaultArtifactDir {
		v.r.errorf("spec.kubernetes", "artifactDir and mirrorURL are both set: choose one source")
	}
	if k.MirrorManifestSHA256 == "" && k.MirrorManifest == "" {
		v.r.errorf("spec.kubernetes.mirrorManifestSHA256", "is required with mirrorURL: pin the sha256 of the mirror's SHA256SUMS (sha256sum SHA256SUMS on a copy you trust), or set mirrorManifest to your own copy of it")
	}
	if s := k.MirrorManifestSHA256; s != "" && !reSHA256.MatchString(s) {
		v.r.errorf("spec.kubernetes.mirrorManifestSHA256", "%q is not a sha256: write the 64 lowercase hex characters sha256sum prints", s)
	}
}

var reSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// podSecurity checks spec.kubernetes.podSecurity: each level is one of the
// Pod Security Standards, each exempt namespace a namespace name, once.
func (v *validator) podSecurity(p *PodSecurity) {
	for _, f := range []struct{ path, level string }{
		{"spec.kubernetes.podSecurity.enforce", p.Enforce},
		{"spec.kubernetes.podSecurity.warn", p.Warn},
		{"spec.kubernetes.podSecurity.audit", p.Audit},
	} {
		switch f.level {
		case "", PodSecurityPrivileged, PodSecurityBaseline, PodSecurityRestricted:
		default:
			v.r.errorf(f.path, "%q is not a Pod Security level: use privileged, baseline or restricted", f.level)
		}
	}
	if p.Enforce == PodSecurityPrivileged {
		v.r.warnf("spec.kubernetes.podSecurity.enforce", "is privileged: every namespace without its own pod-security.kubernetes.io/enforce label admits privileged pods, host namespaces and hostPath volumes; baseline is the default")
	}
	seen := map[string]bool{}
	for i, ns := range p.ExemptNamespaces {
		path := fmt.Sprintf("spec.kubernetes.podSecurity.exemptNamespaces[%d]", i)
		switch {
		case len(ns) > 63 || !reDNSLabel.MatchString(ns):
			v.r.errorf(path, "%q is not a namespace name: lowercase letters, digits and '-', at most 63 characters", ns)
		case seen[ns]:
			v.r.errorf(path, "%q is listed twice: remove one", ns)
		}
		seen[ns] = true
	}
}

func (v *validator) placement() {
	var issues []placementIssue
	v.placed, issues = place(v.c, v.prior)
	for _, is := range issues {
		if is.warning {
			v.r.warnf(is.path, "%s", is.msg)
		} else {
			v.r.errorf(is.path, "%s", is.msg)
		}
	}
}

// podCapacity checks that every server gets a pod CIDR.
func (v *validator) podCapacity() {
	ips, err := AllocateIPs(v.c, v.prior)
	if err != nil {
		v.r.errorf("spec.network.podCIDR", "%v", err)
		return
	}
	v.ips = ips
}
