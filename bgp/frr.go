package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// FRROptions tune RenderFRR.
type FRROptions struct {
	// Password is the resolved TCP MD5 password; required when the
	// inventory sets network.bgp.password.
	Password string
}

// ErrUnknownRouter is returned for a router name the plan does not have.
var ErrUnknownRouter = errors.New("unknown router")

// RenderFRR renders the bgpd configuration of one TOR or core router: one
// peer group and listen range per rack whose nodes peer with it, the
// session timers, an inbound filter that accepts only pod CIDRs (of the
// configured size) and VIPs, an outbound filter that sends nodes nothing,
// and ECMP across nodes and racks.
//
// The output is a complete bgpd configuration (bgpd -f FILE) and also the
// "router bgp" part of an integrated frr.conf. It holds the MD5 password in
// clear when one is set: write it with mode 0600.
func RenderFRR(p *Plan, router string, o FRROptions) ([]byte, error) {
	r, ok := p.Router(router)
	if !ok {
		names := p.RouterNames()
		if len(names) == 0 {
			return nil, fmt.Errorf("%w %q: no router peers with any node (check network.bgp.mode, racks[].tor and sites[].coreRouters)", ErrUnknownRouter, router)
		}
		return nil, fmt.Errorf("%w %q: nodes peer with %s", ErrUnknownRouter, router, strings.Join(names, ", "))
	}
	if !p.Password.IsZero() && o.Password == "" {
		return nil, fmt.Errorf("router %s: network.bgp.password is set but no password was given to render", router)
	}
	if strings.ContainsAny(o.Password, " \t\r\n!") {
		return nil, fmt.Errorf("router %s: the BGP password contains whitespace or '!', which FRR cannot read back", router)
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	in, out := policyName(p.Cluster, "IN"), policyName(p.Cluster, "OUT")

	w("frr defaults datacenter")
	w("hostname %s", r.Name)
	w("!")
	w("! Rendered by tricenter from the inventory of cluster %q for %s router %s (site %s).", p.Cluster, r.Kind, r.Name, r.Site)
	w("! Re-render with `tricenter bgp render-frr` instead of editing.")
	w("!")
	// Inbound filter: exactly the prefixes nodes may announce.
	seq := 10
	pl := func(prefix netip.Prefix, ge int) {
		if ge > prefix.Bits() {
			w("ip prefix-list %s seq %d permit %s ge %d le %d", in, seq, prefix, ge, ge)
		} else {
			w("ip prefix-list %s seq %d permit %s", in, seq, prefix)
		}
		seq += 10
	}
	if p.PodCIDR.IsValid() {
		pl(p.PodCIDR, p.PodMaskSize)
	}
	vipInPool := false
	for _, pool := range p.LoadBalancerPool {
		pl(pool, 32)
		vipInPool = vipInPool || pool.Contains(p.APIVIP)
	}
	if p.APIVIP.IsValid() && !vipInPool {
		pl(netip.PrefixFrom(p.APIVIP, 32), 32)
	}
	w("!")
	w("route-map %s permit 10", in)
	w(" match ip address prefix-list %s", in)
	w("exit")
	w("!")
	w("route-map %s deny 10", out)
	w("exit")
	w("!")
	w("router bgp %d", r.ASN)
	w(" bgp router-id %s", r.Address)
	w(" no bgp ebgp-requires-policy")
	w(" no bgp default ipv4-unicast")
	w(" no bgp network import-check")
	w(" bgp bestpath as-path multipath-relax")
	if p.GracefulRestart {
		w(" bgp graceful-restart")
	}
	limit := 0
	for _, g := range r.Groups {
		limit += hostCount(g.Range)
	}
	w(" bgp listen limit %d", min(max(limit, 100), 65535))
	for _, g := range r.Groups {
		w(" neighbor %s peer-group", g.Name)
		if g.ASN != 0 {
			w(" neighbor %s remote-as %d", g.Name, g.ASN)
		} else {
			w(" neighbor %s remote-as external", g.Name)
		}
		w(" neighbor %s description rack %s, center %s: %d node(s)", g.Name, g.Rack, g.Center, len(g.Nodes))
		if p.HoldSeconds > 0 {
			w(" neighbor %s timers %d %d", g.Name, p.KeepaliveSeconds, p.HoldSeconds)
		}
		if o.Password != "" {
			w(" neighbor %s password %s", g.Name, o.Password)
		}
		if g.Multihop {
			w(" neighbor %s ebgp-multihop %d", g.Name, MultihopTTL)
		}
		w(" bgp listen range %s peer-group %s", g.Range, g.Name)
	}
	w(" !")
	w(" address-family ipv4 unicast")
	w("  maximum-paths 64")
	for _, g := range r.Groups {
		w("  neighbor %s activate", g.Name)
		w("  neighbor %s route-map %s in", g.Name, in)
		w("  neighbor %s route-map %s out", g.Name, out)
	}
	w(" exit-address-family")
	w("exit")
	w("!")
	return b.Bytes(), nil
}

func policyName(cluster, dir string) string {
	c := strings.ToUpper(notWord.ReplaceAllString(cluster, "_"))
	if c == "" {
		c = "CLUSTER"
	}
	return "TRICENTER-" + c + "-NODES-" + dir
}

func hostCount(p netip.Prefix) int {
	switch b := p.Bits(); {
	case b >= 31:
		return 2
	case b <= 16:
		return 65535
	default:
		return 1<<uint(32-b) - 2
	}
}
