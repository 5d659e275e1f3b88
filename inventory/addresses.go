package inventory

import (
	"net/netip"
)

// Address classes a node, BMC, TOR, pod, service or VIP address must never
// come from, with the reason shown to the user.
var forbiddenRanges = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `is in 0.0.0.0/8 ("this network"), which is not routable`},
	{netip.MustParsePrefix("127.0.0.0/8"), "is a loopback address (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "is link-local (169.254.0.0/16): what a host gets when DHCP failed"},
	{netip.MustParsePrefix("224.0.0.0/4"), "is a multicast address (class D, 224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "is reserved (class E, 240.0.0.0/4)"},
}

// Ranges meant for private networks; anything else is public and warned
// about when used for node, pod or service networks.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("198.18.0.0/15"),
}

var limitedBroadcast = netip.MustParseAddr("255.255.255.255")

// badHostAddr says why a is not usable as a host address, or "".
func badHostAddr(a netip.Addr) string {
	if !a.Is4() {
		return "is not an IPv4 address (IPv6 is not supported yet)"
	}
	if a == limitedBroadcast {
		return "is the limited broadcast address 255.255.255.255"
	}
	for _, f := range forbiddenRanges {
		if f.p.Contains(a) {
			return f.reason
		}
	}
	return ""
}

// badPrefix says why p cannot hold nodes, pods, services or VIPs, or "".
func badPrefix(p netip.Prefix) string {
	if !p.Addr().Is4() {
		return "is not an IPv4 prefix (IPv6 is not supported yet)"
	}
	for _, f := range forbiddenRanges {
		if f.p.Overlaps(p) {
			return "overlaps " + f.p.String() + ": it " + f.reason
		}
	}
	return ""
}

// isPrivate reports whether p lies inside one of the private ranges.
func isPrivate(p netip.Prefix) bool {
	for _, r := range privateRanges {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// networkOrBroadcast reports whether a is the network or broadcast address
// of p (only meaningful for prefixes shorter than /31).
func networkOrBroadcast(p netip.Prefix, a netip.Addr) string {
	if p.Bits() >= 31 || !p.Contains(a) {
		return ""
	}
	if a == p.Masked().Addr() {
		return "network"
	}
	if a == lastAddr(p) {
		return "broadcast"
	}
	return ""
}

func lastAddr(p netip.Prefix) netip.Addr {
	v := addrU32(p.Masked().Addr())
	return u32Addr(v | (1<<uint(32-p.Bits()) - 1))
}

// usableHosts is the number of host addresses of an IPv4 prefix.
func usableHosts(p netip.Prefix) int {
	switch b := p.Bits(); b {
	case 32:
		return 1
	case 31:
		return 2
	default:
		return 1<<uint(32-b) - 2
	}
}
