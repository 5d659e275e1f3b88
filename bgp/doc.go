// Package bgp derives every node's BGP sessions and announcements from the
// inventory, renders the node agent's configuration and the routers' FRR
// configuration, checks the BGP gate, and speaks the agent's status-socket
// protocol (the JSON Status, ServeStatus and FetchStatus).
//
// It is pure derivation and rendering: the speaker itself (an embedded gobgp
// v3 BgpServer and the service health checkers) lives in package bgp/agent,
// which only the node agent's binary (cmd/tricenter-bgp) links, so the
// provider and the tricenter CLI do not link gobgp (internal/depcheck checks
// it).
//
// # Network model
//
// Pods are routed, not tunnelled. Each node announces its pod CIDR to its
// rack's TOR (network.bgp.mode tor, when the rack's TOR has an ASN) or to its
// site's core routers (mode core, or a rack whose TOR has no ASN), with the
// node's own address as next hop. The API VIP is announced as a /32 by
// control-plane nodes only while the local kube-apiserver's /readyz answers
// OK; the static LoadBalancer VIPs (network.loadBalancerVIPs) are
// announced as /32s by every node while its kube-proxy is healthy. Routers
// spread traffic to a VIP by ECMP.
//
// With a loadBalancers section in its configuration (ConfigOptions.
// LoadBalancers) a node also announces the addresses of Services of type
// LoadBalancer it serves, as package lb decides from the Services and
// their EndpointSlices (package lb/watch): with a center preference, the
// nodes of less preferred centers prepend their own ASN (1 + prepends in
// the AS path the routers see), so the routers' best paths, and their
// ECMP, go to the preferred center while it announces and move to the
// next one by themselves when it stops. The routers accept these /32s as
// they accept the static VIPs: any /32 of the load-balancer pool, from
// every node.
//
// Nodes do not install learned routes into their kernel: the router sends
// them nothing (its outbound route-map denies everything) and a node reaches
// other nodes' pods through its rack's default gateway, which holds a route
// for every pod CIDR. This keeps the node's routing table independent of BGP
// and the agent free of netlink.
//
// # ASNs
//
// Node ASNs do not depend on list positions, so adding or removing racks or
// servers never renumbers another node:
//
//   - per-rack (default, RFC 7938 style): every node of a rack shares one
//     ASN. rack.nodeASN wins when set; otherwise the ASN is
//     asnBase + (the rack subnet's network number mod 2^k), where the network
//     number is the subnet address shifted right by its host bits and k is the
//     largest power of two that fits between asnBase and the top of its
//     private range (k = 26 for the default 4200000000, so any /26 or larger
//     rack subnets get distinct ASNs).
//   - per-node: asnBase + (the node address mod 2^k); node addresses inside
//     one /6 (default base) never collide.
//
// Two racks or nodes that still collide (only possible with very small
// subnets or a small asnBase) are reported by Derive with the advice to set
// rack.nodeASN.
//
// # Communities
//
// Every announcement carries two large communities (RFC 8092) with asnBase as
// global administrator: asnBase:1:C tags the center (C = 1 production,
// 2 local-dr, 3 remote-dr) and asnBase:2:R tags the rack (R = the rack
// subnet's network address as a 32-bit number). Both are stable.
package bgp
