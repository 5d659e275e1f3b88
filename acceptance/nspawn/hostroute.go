package nspawn

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
)

// RouteFromHost routes prefixes (the API VIP's and service ranges, pod
// CIDRs) from this machine — the operator's workstation of the lab — to
// the lab router through the first rack's TOR address, as a datacenter
// routes them to its core. The routes leave with the rack bridge when the
// lab closes; every prefix must lie in the lab's block. The routes name
// the lab's own bridge, so another lab with the same subnets cannot capture
// them.
func (l *Lab) RouteFromHost(ctx context.Context, prefixes ...netip.Prefix) error {
	racks := l.cfg.Cluster.Spec.Racks
	if len(racks) == 0 {
		return fmt.Errorf("the lab has no rack")
	}
	gw := racks[0].TOR.Gateway
	br := l.bridges[racks[0].Name]
	if mg := l.cfg.Management; mg != nil {
		gw, br = mg.Router.String(), l.mgmt
	}
	if br == nil {
		return fmt.Errorf("rack %s has no bridge", racks[0].Name)
	}
	for _, p := range prefixes {
		if !labRange.Contains(p.Addr()) || p.Bits() < labRange.Bits() {
			return fmt.Errorf("host route %s: outside the lab's %s", p, labRange)
		}
		out, err := exec.CommandContext(ctx, "ip", "route", "replace", p.Masked().String(), "via", gw, "dev", br.Name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("host route %s via %s: %w: %s", p, gw, err, out)
		}
	}
	return nil
}

// RouteClusterFromHost routes the inventory's API VIP, service range and
// pod range from this machine to the lab's router (RouteFromHost).
func (l *Lab) RouteClusterFromHost(ctx context.Context) error {
	n := l.cfg.Cluster.Spec.Network
	var routes []netip.Prefix
	for _, s := range []string{n.ServiceCIDR, n.PodCIDR} {
		if p, err := netip.ParsePrefix(s); err == nil {
			routes = append(routes, p)
		}
	}
	if a, err := netip.ParseAddr(n.APIVIP); err == nil {
		routes = append(routes, netip.PrefixFrom(a, 32))
	}
	if l.cfg.Management != nil {
		// The racks are routed too, so that the host's packets to them
		// meet the router's filter instead of the host's default route.
		for _, r := range l.cfg.Cluster.Spec.Racks {
			if p, err := netip.ParsePrefix(r.Subnet); err == nil {
				routes = append(routes, p.Masked())
			}
		}
	}
	return l.RouteFromHost(ctx, routes...)
}
