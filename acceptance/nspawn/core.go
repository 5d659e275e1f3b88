package nspawn

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/bgp/bgplab"
)

// CoreRouter is a site's core router: an FRR router in a namespace of its
// own, linked to the lab router (the TORs) and peering with it by eBGP, so
// it learns what the racks announce (pod CIDRs, the API VIP) as a
// datacenter core does.
type CoreRouter struct {
	Name string
	Site string
	ASN  uint32
}

// coreAddrs are the two ends of core router i's link in transit: the lab
// router's (even) and the core's (odd), as a /31.
func coreAddrs(transit netip.Prefix, i int) (tor, core netip.Addr) {
	b := transit.Masked().Addr().As4()
	b[3] = byte(2 * i)
	tor = netip.AddrFrom4(b)
	b[3]++
	return tor, netip.AddrFrom4(b)
}

// torCoreConfig is what the lab router's bgpd adds for its core routers
// (a second "router bgp" block enters the same instance).
func torCoreConfig(torASN uint32, transit netip.Prefix, cores []CoreRouter, keepalive, hold int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n", torASN)
	for i, c := range cores {
		_, core := coreAddrs(transit, i)
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description core router %s (%s)\n", core, c.ASN, core, c.Name, c.Site)
		if hold > 0 {
			fmt.Fprintf(&b, " neighbor %s timers %d %d\n", core, keepalive, hold)
		}
	}
	b.WriteString(" address-family ipv4 unicast\n")
	for i := range cores {
		_, core := coreAddrs(transit, i)
		fmt.Fprintf(&b, "  neighbor %s activate\n", core)
	}
	b.WriteString(" exit-address-family\nexit\n!\n")
	return b.String()
}

// coreConfig is a core router's bgpd configuration: one eBGP session to
// the lab router, everything it announces accepted.
func coreConfig(c CoreRouter, self, tor netip.Addr, torASN uint32, keepalive, hold int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n", c.ASN, self)
	b.WriteString(" bgp bestpath as-path multipath-relax\n")
	fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description the racks' TORs\n", tor, torASN, tor)
	if hold > 0 {
		fmt.Fprintf(&b, " neighbor %s timers %d %d\n", tor, keepalive, hold)
	}
	fmt.Fprintf(&b, " address-family ipv4 unicast\n  maximum-paths 64\n  neighbor %s activate\n exit-address-family\nexit\n!\n", tor)
	return []byte(b.String())
}

// startCores links and starts the core routers (after the lab router).
func (l *Lab) startCores() error {
	cfg := l.cfg
	bgpCfg := cfg.Cluster.Spec.Network.BGP
	torASN := cfg.Cluster.Spec.Racks[0].TOR.ASN
	for i, c := range cfg.CoreRouters {
		ns, err := l.net.Namespace("core" + fmt.Sprint(i))
		if err != nil {
			return err
		}
		tor, core := coreAddrs(cfg.CoreTransit, i)
		if err := l.net.Link(l.router, fmt.Sprintf("core%d", i), netip.PrefixFrom(tor, 31), ns, "tor", netip.PrefixFrom(core, 31)); err != nil {
			return fmt.Errorf("core router %s: %w", c.Name, err)
		}
		r, err := bgplab.StartRouter(ns, c.Name, coreConfig(c, core, tor, torASN, bgpCfg.KeepaliveSeconds, bgpCfg.HoldSeconds))
		if err != nil {
			return fmt.Errorf("core router %s: starting FRR: %w", c.Name, err)
		}
		l.cores = append(l.cores, r)
	}
	return nil
}

// Cores are the core routers' FRR instances, in Config.CoreRouters order.
func (l *Lab) Cores() []*bgplab.Router { return l.cores }
