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
// lab closes; every prefix must lie in the lab's block.
func (l *Lab) RouteFromHost(ctx context.Context, prefixes ...netip.Prefix) error {
	racks := l.cfg.Cluster.Spec.Racks
	if len(racks) == 0 {
		return fmt.Errorf("the lab has no rack")
	}
	gw := racks[0].TOR.Gateway
	for _, p := range prefixes {
		if !labRange.Contains(p.Addr()) || p.Bits() < labRange.Bits() {
			return fmt.Errorf("host route %s: outside the lab's %s", p, labRange)
		}
		out, err := exec.CommandContext(ctx, "ip", "route", "replace", p.Masked().String(), "via", gw).CombinedOutput()
		if err != nil {
			return fmt.Errorf("host route %s via %s: %w: %s", p, gw, err, out)
		}
	}
	return nil
}
