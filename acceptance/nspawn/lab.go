package nspawn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
	"github.com/tricenter/terraform-provider-tricenter/internal/labnet"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// labRange is the only block lab machines may use (etcd and nspawn).
var labRange = netip.MustParsePrefix("198.19.0.0/16")

// Config describes a lab to bring up.
type Config struct {
	// Cluster is the inventory the lab realises: one machine per server,
	// one bridge per rack, the centers' RTTs between racks. Every rack
	// subnet and server address must lie in 198.19.0.0/16.
	Cluster *inventory.Cluster
	// Rootfs is the root filesystem (EnsureRootfs).
	Rootfs string
	// Dir holds the per-machine overlays; it is removed on Close.
	Dir string
	// KeyFile and KnownHosts are written: the private key the machines
	// accept for root, and their pinned host keys. Defaults: the
	// inventory's spec.ssh.keyFile and spec.ssh.knownHosts.
	KeyFile, KnownHosts string
	// Hosts limits the machines booted at Up (default: every server).
	Hosts []string
	// Delay gives the centers their RTTs (default true).
	NoDelay bool
	// NoFRR leaves BGP out: the router namespace then only routes between
	// the rack subnets. By default FRR (zebra + bgpd) runs there with the
	// configuration `tricenter bgp render-frr` renders, playing every
	// rack's TOR, so pod CIDRs and the API VIP reach the router's kernel
	// table from the node agents (every racks[].tor.asn must be equal).
	NoFRR  bool
	Logger *slog.Logger

	// Management, when set, makes the lab a datacenter the host cannot
	// walk into: the rack bridges get no host address, the host and the
	// router meet on a management network, and the router forwards from
	// it to the racks only what comes from Management.Allow (the jump
	// hosts). Without it the host has an address on every rack.
	Management *Management
	// PoweredOff leaves every machine off at Up (a BMC powers it on).
	PoweredOff bool
	// Skip names servers the lab does not run as machines (they are
	// libvirt VMs, for example, attached to Bridge(rack)).
	Skip map[string]bool
	// Extra are machines outside the inventory on the management network
	// (jump hosts); they boot at Up even with PoweredOff.
	Extra []Extra
	// CoreRouters are the sites' core routers, peering with the lab
	// router over /31 links from CoreTransit (needs FRR).
	CoreRouters []CoreRouter
	CoreTransit netip.Prefix
	// KnownHostLines are added to the known_hosts file the lab writes
	// (host keys of machines it does not run itself).
	KnownHostLines []string
}

// Management is the lab's management network (Config.Management).
type Management struct {
	// Subnet holds Host, Router and every Extra machine.
	Subnet netip.Prefix
	// Host is this machine's address on it, Router the lab router's.
	Host, Router netip.Addr
	// Allow are the management addresses whose traffic the router lets
	// through to the racks; the rest (the host) reaches only the routes
	// of RouteFromHost that are not rack subnets.
	Allow []netip.Addr
}

// Extra is a machine outside the inventory (Config.Extra).
type Extra struct {
	Name    string
	Address netip.Addr
}

// Lab is a running set of machines. Close tears everything down.
type Lab struct {
	id       string
	hostHeld bool
	dirLock  *os.File
	// registration is this lab's entry in registryDir (SweepOrphans).
	registration string
	cfg          Config
	log          *slog.Logger
	net          *labnet.Lab
	router       *labnet.NS
	delayer      *Delayer
	frr          *bgplab.Router
	bgpPlan      *bgp.Plan
	machines     map[string]*Machine
	order        []string
	// bridges are the racks' bridges, by rack name.
	bridges map[string]*labnet.Bridge
	// routerPorts are the router's interfaces on the racks, by rack name.
	routerPorts map[string]string
	mgmt        *labnet.Bridge
	cores       []*bgplab.Router
}

// Up builds the networks and boots the machines, waiting for each one's
// sshd to accept connections.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	c := cfg.Cluster
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeyFile == "" {
		cfg.KeyFile = c.Spec.SSH.KeyFile
	}
	if cfg.KnownHosts == "" && len(c.Spec.SSH.KnownHosts) > 0 {
		cfg.KnownHosts = c.Spec.SSH.KnownHosts[0]
	}
	if cfg.KeyFile == "" || cfg.KnownHosts == "" {
		return nil, errors.New("lab inventory: set spec.ssh.keyFile and spec.ssh.knownHosts: the lab writes its key and the machines' host keys there")
	}
	if err := checkAddresses(c, cfg.Management != nil); err != nil {
		return nil, err
	}
	if removed, err := SweepOrphans(cfg.Logger); err != nil {
		return nil, fmt.Errorf("removing what a killed lab left: %w", err)
	} else if len(removed) > 0 {
		cfg.Logger.Info("Removed a killed lab's leftovers", "count", len(removed))
	}
	if err := checkHostFree(c); err != nil {
		return nil, err
	}
	var frrConf []byte
	var bgpPlan *bgp.Plan
	if !cfg.NoFRR {
		if err := bgplab.Available(); err != nil {
			return nil, fmt.Errorf("lab router: %w", err)
		}
		var err error
		if frrConf, bgpPlan, err = routerConfig(c); err != nil {
			return nil, err
		}
	}
	nl, err := labnet.New()
	if err != nil {
		return nil, err
	}
	l := &Lab{id: randHex(3), cfg: cfg, log: cfg.Logger, net: nl, machines: map[string]*Machine{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	if err := prepareHost(); err != nil {
		return nil, fmt.Errorf("preparing the host for kubelets in the machines: %w", err)
	}
	l.hostHeld = true
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	// Two labs on one directory would boot machines on each other's
	// overlays and remove them on Close: the first one holds it.
	if l.dirLock, err = os.Open(cfg.Dir); err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(l.dirLock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		l.dirLock.Close()
		l.dirLock = nil
		l.cfg.Dir = "" // not ours to remove
		return nil, fmt.Errorf("lab directory %s is in use by another lab (%w): give each lab its own Config.Dir", cfg.Dir, err)
	}
	if l.registration, err = register(nl.ID(), l.id, cfg.Dir); err != nil {
		return nil, err
	}
	if err := ensureClientKey(ctx, cfg.KeyFile); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(cfg.KeyFile + ".pub")
	if err != nil {
		return nil, err
	}
	if l.router, err = nl.Namespace("rtr"); err != nil {
		return nil, err
	}
	rtrCmd := func(args ...string) error {
		out, err := l.router.Command(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("router: %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	// No ICMP redirects, as on a datacenter TOR ("no ip redirects"): the
	// router forwards traffic between two hosts of one rack (pod CIDRs, the
	// API VIP from this machine when it sits in the first rack), and a
	// redirect would make the sender bypass the router, its BGP routes and
	// their withdrawal for minutes: after a center's servers die, the
	// sender would go on sending to the dead next hop. Set before the
	// router's ports exist, so that every port inherits it.
	if err := rtrCmd("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0", "net.ipv4.conf.lo.send_redirects=0"); err != nil {
		return nil, err
	}
	centerIdx := map[string]int{}
	for i, ctr := range c.Spec.Centers {
		centerIdx[ctr.Name] = i
	}
	bridges := map[string]*labnet.Bridge{}
	l.bridges = bridges
	var zones []zone
	type rackIf struct {
		ifname string
		center int
		subnet netip.Prefix
	}
	var rifs []rackIf
	for i, r := range c.Spec.Racks {
		subnet := netip.MustParsePrefix(r.Subnet).Masked()
		hostAddr, err := freeAddr(subnet, r)
		if err != nil {
			return nil, err
		}
		hostPrefix := netip.PrefixFrom(hostAddr, subnet.Bits())
		if cfg.Management != nil {
			hostPrefix = netip.Prefix{} // the host is not in the racks
		}
		br, err := nl.Bridge(hostPrefix)
		if err != nil {
			return nil, fmt.Errorf("rack %s: %w", r.Name, err)
		}
		bridges[r.Name] = br
		gw := netip.MustParseAddr(r.TOR.Gateway)
		ifname := "r" + strconv.Itoa(i)
		if l.routerPorts == nil {
			l.routerPorts = map[string]string{}
		}
		l.routerPorts[r.Name] = ifname
		if err := l.router.Attach(br, ifname, netip.PrefixFrom(gw, subnet.Bits())); err != nil {
			return nil, fmt.Errorf("rack %s router port: %w", r.Name, err)
		}
		if err := rtrCmd("sysctl", "-qw", "net.ipv4.conf."+ifname+".rp_filter=0"); err != nil {
			return nil, err
		}
		zones = append(zones, zone{prefix: subnet, center: centerIdx[r.Center]})
		rifs = append(rifs, rackIf{ifname, centerIdx[r.Center], subnet})
	}
	if mg := cfg.Management; mg != nil {
		if err := l.management(ctx, mg, rtrCmd); err != nil {
			return nil, err
		}
	}
	if bgpPlan != nil {
		// Pod CIDRs sit in their node's center: traffic between pods of
		// different centers gets the centers' RTT too. (The lab plans pod
		// CIDRs as a first apply does; a later apply that allocates
		// others leaves those undelayed.)
		for _, n := range bgpPlan.Nodes {
			zones = append(zones, zone{prefix: n.PodCIDR, center: centerIdx[n.Center]})
		}
	}
	if !cfg.NoDelay {
		rtt := centerRTTs(c)
		if len(rtt) > 0 {
			nsPath := "/run/netns/" + l.router.Name
			if l.delayer, err = newDelayer(nsPath, "tcdelay", zones, rtt, l.log); err != nil {
				return nil, err
			}
			l.delayer.Start()
			if err := rtrCmd("ip", "link", "set", "tcdelay", "up"); err != nil {
				return nil, err
			}
			if err := rtrCmd("sysctl", "-qw", "net.ipv4.conf.tcdelay.rp_filter=0"); err != nil {
				return nil, err
			}
			if err := rtrCmd("ip", "route", "add", labRange.String(), "dev", "tcdelay", "table", "100"); err != nil {
				return nil, err
			}
			pref := 100
			for _, a := range rifs {
				for _, b := range rifs {
					if a.center == b.center || rtt[pairKey(a.center, b.center)] == 0 {
						continue
					}
					if err := rtrCmd("ip", "rule", "add", "pref", strconv.Itoa(pref), "iif", a.ifname,
						"to", b.subnet.String(), "lookup", "100"); err != nil {
						return nil, err
					}
				}
				if bgpPlan == nil {
					continue
				}
				for _, n := range bgpPlan.Nodes {
					if ci := centerIdx[n.Center]; ci == a.center || rtt[pairKey(a.center, ci)] == 0 {
						continue
					}
					if err := rtrCmd("ip", "rule", "add", "pref", strconv.Itoa(pref), "iif", a.ifname,
						"to", n.PodCIDR.String(), "lookup", "100"); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	if len(cfg.CoreRouters) > 0 && (cfg.NoFRR || !labRange.Contains(cfg.CoreTransit.Addr()) || cfg.CoreTransit.Bits() > 32-len(cfg.CoreRouters)) {
		return nil, fmt.Errorf("core routers need FRR and a transit prefix inside %s with room for %d /31 links (got %s)", labRange, len(cfg.CoreRouters), cfg.CoreTransit)
	}
	if !cfg.NoFRR {
		if len(cfg.CoreRouters) > 0 {
			b := c.Spec.Network.BGP
			frrConf = append(frrConf, torCoreConfig(c.Spec.Racks[0].TOR.ASN, cfg.CoreTransit, cfg.CoreRouters, b.KeepaliveSeconds, b.HoldSeconds)...)
		}
		if l.frr, err = bgplab.StartRouter(l.router, labRouterName, frrConf); err != nil {
			return nil, fmt.Errorf("lab router: starting FRR: %w", err)
		}
		if err := l.startCores(); err != nil {
			return nil, err
		}
		l.bgpPlan = bgpPlan
		l.log.Debug("FRR runs in the lab router", "dir", l.frr.Dir)
	}
	want := map[string]bool{}
	for _, h := range cfg.Hosts {
		want[h] = true
	}
	known := append([]string(nil), cfg.KnownHostLines...)
	type spec struct {
		name    string
		addr    netip.Addr
		gateway netip.Addr
		subnet  netip.Prefix
		bridge  *labnet.Bridge
		port    int
		extra   bool
	}
	var specs []spec
	for _, h := range c.Hosts() {
		if cfg.Skip[h.Name] {
			continue
		}
		subnet := netip.MustParsePrefix(h.Rack.Subnet).Masked()
		specs = append(specs, spec{h.Name, h.Addr(), netip.MustParseAddr(h.Rack.TOR.Gateway), subnet, bridges[h.Rack.Name], h.SSH.Port, false})
	}
	for _, x := range cfg.Extra {
		if cfg.Management == nil {
			return nil, fmt.Errorf("machine %s: extra machines live on the management network: set Config.Management", x.Name)
		}
		specs = append(specs, spec{x.Name, x.Address, cfg.Management.Router, cfg.Management.Subnet, l.mgmt, 22, true})
	}
	for _, sp := range specs {
		m := &Machine{
			Name: sp.name, Address: sp.addr, lab: l, extra: sp.extra,
			gateway: sp.gateway, prefix: sp.subnet.Bits(),
			dir: filepath.Join(cfg.Dir, sp.name), rootfs: cfg.Rootfs, log: l.log.With("machine", sp.name),
		}
		if m.ns, err = nl.Namespace(shortName(sp.name)); err != nil {
			return nil, err
		}
		if err := m.ns.Attach(sp.bridge, "host0", netip.PrefixFrom(m.Address, sp.subnet.Bits())); err != nil {
			return nil, fmt.Errorf("machine %s: %w", sp.name, err)
		}
		if err := m.ns.Route(netip.MustParsePrefix("198.18.0.0/15"), m.gateway); err != nil {
			return nil, fmt.Errorf("machine %s: %w", sp.name, err)
		}
		if err := m.prepare(ctx, pub); err != nil {
			return nil, err
		}
		hostPub, err := os.ReadFile(filepath.Join(m.upper(), "etc/ssh/ssh_host_ed25519_key.pub"))
		if err != nil {
			return nil, err
		}
		f := strings.Fields(string(hostPub))
		port := sp.port
		hostPattern := m.Address.String()
		if port != 0 && port != 22 {
			hostPattern = "[" + hostPattern + "]:" + strconv.Itoa(port)
		}
		known = append(known, hostPattern+" "+f[0]+" "+f[1])
		l.machines[sp.name] = m
		l.order = append(l.order, sp.name)
	}
	sort.Strings(known)
	if err := fsutil.WriteFileAtomic(cfg.KnownHosts, []byte(strings.Join(known, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(l.order))
	for i, name := range l.order {
		if len(want) > 0 && !want[name] || cfg.PoweredOff && !l.machines[name].extra {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.machines[name].Start(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

func pairKey(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// centerRTTs reads the RTT between every pair of centers (the larger of the
// two directions when both are given).
func centerRTTs(c *inventory.Cluster) map[[2]int]time.Duration {
	idx := map[string]int{}
	for i, ctr := range c.Spec.Centers {
		idx[ctr.Name] = i
	}
	out := map[[2]int]time.Duration{}
	for i, ctr := range c.Spec.Centers {
		for other, ms := range ctr.RTTMs {
			j, ok := idx[other]
			if !ok || j == i || ms <= 0 {
				continue
			}
			d := time.Duration(ms * float64(time.Millisecond))
			if k := pairKey(i, j); d > out[k] {
				out[k] = d
			}
		}
	}
	return out
}

func checkAddresses(c *inventory.Cluster, jumpHosts bool) error {
	var errs []error
	for _, r := range c.Spec.Racks {
		p, err := netip.ParsePrefix(r.Subnet)
		if err != nil || !labRange.Contains(p.Addr()) || p.Bits() < labRange.Bits() {
			errs = append(errs, fmt.Errorf("rack %s: subnet %q must lie inside %s for the nspawn lab", r.Name, r.Subnet, labRange))
		}
		if _, err := netip.ParseAddr(r.TOR.Gateway); err != nil {
			errs = append(errs, fmt.Errorf("rack %s: no TOR gateway address", r.Name))
		}
	}
	for _, h := range c.Hosts() {
		if !labRange.Contains(h.Addr()) {
			errs = append(errs, fmt.Errorf("server %s: address %q must lie inside %s for the nspawn lab", h.Name, h.SSH.Address, labRange))
		}
		if h.JumpHost() != nil && !jumpHosts {
			errs = append(errs, fmt.Errorf("server %s: the nspawn lab has no jump hosts: drop the center's jumpHost", h.Name))
		}
	}
	return errors.Join(errs...)
}

// checkHostFree fails when a rack subnet is already on one of this host's
// interfaces or overlaps one of its routes: another lab with the same
// addresses is running, and the host would reach the wrong machines.
func checkHostFree(c *inventory.Cluster) error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("listing the host's addresses: %w", err)
	}
	routes, err := hostRoutes()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range c.Spec.Racks {
		subnet, err := netip.ParsePrefix(r.Subnet)
		if err != nil {
			continue
		}
		for _, rt := range routes {
			if rt.Overlaps(subnet.Masked()) {
				errs = append(errs, fmt.Errorf("rack %s: subnet %s overlaps the host's route to %s (another lab's): stop that lab or give this one other subnets", r.Name, r.Subnet, rt))
				break
			}
		}
	}
	for _, r := range c.Spec.Racks {
		subnet, err := netip.ParsePrefix(r.Subnet)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && subnet.Masked().Contains(ip.Unmap()) {
				errs = append(errs, fmt.Errorf("rack %s: subnet %s is already in use on this host (address %s): another lab with the same rack subnets is running; stop it or give this lab other subnets", r.Name, r.Subnet, ip.Unmap()))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// hostRoutes lists the destinations of the host's main-table routes in
// the lab range that go through a gateway (what another lab adds with
// RouteFromHost); directly connected subnets are found by their addresses.
func hostRoutes() ([]netip.Prefix, error) {
	out, err := exec.Command("ip", "-j", "route", "show", "table", "main").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the host's routes: %w", err)
	}
	var rs []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal(out, &rs); err != nil {
		return nil, fmt.Errorf("parsing the host's routes: %w", err)
	}
	var ps []netip.Prefix
	for _, r := range rs {
		if r.Gateway == "" || r.Dst == "default" {
			continue
		}
		d := r.Dst
		if !strings.Contains(d, "/") {
			d += "/32"
		}
		if p, err := netip.ParsePrefix(d); err == nil && netip.MustParsePrefix("198.18.0.0/15").Overlaps(p) {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// freeAddr picks the highest address of the subnet that no server, TOR or
// gateway uses: the test host's own address on the rack bridge.
func freeAddr(subnet netip.Prefix, r inventory.Rack) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, s := range []string{r.TOR.Address, r.TOR.Gateway} {
		if a, err := netip.ParseAddr(s); err == nil {
			used[a] = true
		}
	}
	for _, s := range r.Servers {
		if a, err := netip.ParseAddr(s.SSH.Address); err == nil {
			used[a] = true
		}
	}
	last := lastAddr(subnet)
	for a := last.Prev(); subnet.Contains(a) && a != subnet.Addr(); a = a.Prev() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("rack %s: no free address in %s for the lab host", r.Name, subnet)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func shortName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
	if len(s) > 20 {
		s = s[len(s)-20:]
	}
	return s
}

// cgroupName is the name of a machine's own cgroup under the lab
// process's cgroup (the lab's id keeps concurrent labs apart).
func (l *Lab) cgroupName(machine string) string { return "tricenter-" + l.id + "-" + machine }

// machineName is a machine's systemd-nspawn name (-M): unique on the host,
// since nspawn keeps per-name state under /run/systemd/nspawn and two labs
// of one inventory may run at once. Inside, the machine's host name is
// still its server name (/etc/hostname).
func (l *Lab) machineName(server string) string { return server + "-" + l.id }

// Machine returns the named machine, or nil.
func (l *Lab) Machine(name string) *Machine { return l.machines[name] }

// Machines lists the machines in inventory order.
func (l *Lab) Machines() []*Machine {
	out := make([]*Machine, 0, len(l.order))
	for _, n := range l.order {
		out = append(out, l.machines[n])
	}
	return out
}

// Delayer is the center-latency emulator, or nil without RTTs.
func (l *Lab) Delayer() *Delayer { return l.delayer }

// Ping measures the round-trip time from machine a to b with ICMP (from
// inside a's network namespace), averaging count probes.
func (l *Lab) Ping(ctx context.Context, from, to string, count int) (time.Duration, error) {
	a, b := l.machines[from], l.machines[to]
	if a == nil || b == nil {
		return 0, fmt.Errorf("ping %s → %s: no such machine", from, to)
	}
	out, err := a.ns.Command(ctx, "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "2",
		b.Address.String()).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ping %s → %s: %w: %s", from, to, err, out)
	}
	// rtt min/avg/max/mdev = 20.101/20.215/20.402/0.090 ms
	s := string(out)
	i := strings.Index(s, "= ")
	if i < 0 {
		return 0, fmt.Errorf("ping %s → %s: unexpected output %q", from, to, s)
	}
	parts := strings.Split(strings.Fields(s[i+2:])[0], "/")
	if len(parts) < 2 {
		return 0, fmt.Errorf("ping %s → %s: unexpected output %q", from, to, s)
	}
	ms, err := strconv.ParseFloat(parts[1], 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

// Close stops every machine, removes the overlays and the networks.
func (l *Lab) Close() error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, m := range l.machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.destroy(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, r := range l.cores {
		r.Stop()
	}
	l.cores = nil
	if l.frr != nil {
		l.frr.Stop()
		l.frr = nil
	}
	if l.delayer != nil {
		if err := l.delayer.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if l.hostHeld {
		if err := releaseHost(); err != nil {
			errs = append(errs, fmt.Errorf("restoring the host sysctls: %w", err))
		}
		l.hostHeld = false
	}
	if err := l.net.Close(); err != nil {
		errs = append(errs, err)
	}
	if l.cfg.Dir != "" && l.dirLock != nil {
		if err := os.RemoveAll(l.cfg.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if l.dirLock != nil {
		l.dirLock.Close()
		l.dirLock = nil
	}
	if l.registration != "" && len(errs) == 0 {
		// Kept after a failed Close: the next lab sweeps what is left.
		_ = os.Remove(l.registration)
		l.registration = ""
	}
	return errors.Join(errs...)
}

// ensureClientKey creates an ed25519 key pair at path unless one exists.
func ensureClientKey(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		if _, err := os.Stat(path + ".pub"); err == nil {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	_ = os.Remove(path)
	_ = os.Remove(path + ".pub")
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tricenter-lab", "-f", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh-keygen %s: %w: %s", path, err, out)
	}
	return nil
}

// waitTCP polls addr until it accepts a connection or ctx ends.
func waitTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(cctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %w)", addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
