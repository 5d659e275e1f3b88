package sshtest

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// OneCenter is Cluster with every host in dc1 (one rack, the targets'
// whole /24), behind dc1's jump host when the lab has one: the shape of a
// center whose servers share one slow way in. dc2 and dc3 stay, empty.
func (l *Lab) OneCenter(o ClusterOptions) *inventory.Cluster {
	c := l.cluster(o)
	var servers []inventory.Server
	for _, r := range c.Spec.Racks {
		servers = append(servers, r.Servers...)
	}
	if len(l.Hosts) == 0 {
		return c
	}
	seg := netip.PrefixFrom(l.Hosts[0].Addr, 24).Masked()
	c.Spec.Racks = []inventory.Rack{{Name: "dc1-r01", Center: "dc1", Subnet: seg.String(),
		TOR:        inventory.TOR{Name: "dc1-r01-tor", ASN: 65100, Address: seg.Addr().Next().String()},
		MaxServers: 150, Servers: servers}}
	c.SetDefaults()
	return c
}

// JumpSentBytes is how many bytes the jump host has sent so far on the
// targets' segment (its inner link): everything that reached the targets
// through it, SSH framing included. Traffic between the targets does not
// pass there.
func (l *Lab) JumpSentBytes() (int64, error) {
	if l.Jump == nil {
		return 0, fmt.Errorf("sshtest: the lab has no jump host")
	}
	link := l.Jump.NS.HostLink("eth1")
	if link == "" {
		return 0, fmt.Errorf("sshtest: the jump host has no inner link")
	}
	// The bridge side of the veth pair receives what the jump host sends.
	b, err := os.ReadFile("/sys/class/net/" + link + "/statistics/rx_bytes")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
