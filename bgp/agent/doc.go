// Package agent is the node BGP speaker run by cmd/tricenter-bgp: an
// embedded gobgp v3 BgpServer that peers with the node's TOR or core routers
// (as derived by package bgp), announces the node's pod CIDR, and announces
// each service's VIPs only while its health check passes.
//
// One goroutine (Agent.Run) owns all mutable state; Reload and Status hand
// it work through a channel (as gobgp's BgpServer does). Health checkers
// (health.go) poll each service's endpoint and send transitions to that
// loop; a VIP shared by several services stays announced while any of them
// is healthy. A held service (hold.go) is unhealthy whatever its check
// says, and Hold returns once its VIPs' withdrawal has been written to
// every established session (sent.go learns that from gobgp's own record
// of each UPDATE written).
//
// LoadBalancer Services (loadbalancers.go): with a loadBalancers section
// the agent runs a watch (Options.WatchLoadBalancers) that hands the
// node's routes to SetLoadBalancerRoutes; a route's prepends become an AS
// path of the node's ASN. When the Kubernetes API cannot be reached the
// routes stay as last known, as MetalLB's speakers keep announcing rather
// than withdraw every Service; the pod CIDR and the VIPs never depend on
// the API. The watch reports whether it is synced and its last error in
// Status.
//
// Only the agent binary imports this package: the provider and the
// tricenter CLI use package bgp (derivation, rendering, the status protocol)
// and must not link gobgp, which internal/depcheck checks.
package agent
