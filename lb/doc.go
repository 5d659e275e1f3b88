// Package lb decides for Services of type LoadBalancer. The allocator
// hands out addresses of the inventory's load-balancer pool, never a
// reserved one (the API VIP, the static VIPs), honours a requested address
// and lets Services that say so share one address on disjoint ports.
// Announcements says which /32s a node's BGP agent announces, by traffic
// policy, ready endpoints and the Service's center preference (AS-path
// prepends). The package is pure: the in-cluster controller and the node
// agents feed it what they watch.
package lb

// Annotations a Service may carry.
const (
	// AnnotationAddress asks for an address of the pool (as
	// spec.loadBalancerIP, deprecated upstream, does).
	AnnotationAddress = "lb.tricenter.io/address"
	// AnnotationShare lets Services with the same value share one address
	// when their ports do not overlap.
	AnnotationShare = "lb.tricenter.io/share"
	// AnnotationNodes names, comma-separated, the nodes that announce a
	// Service of externalTrafficPolicy Cluster instead of every worker
	// (ServiceView.Nodes). Local-policy Services ignore it: their nodes
	// are those with a ready endpoint.
	AnnotationNodes = "lb.tricenter.io/nodes"
)
