// Package lb gives Services of type LoadBalancer their addresses: the
// allocator hands out addresses of the inventory's load-balancer pool,
// never a reserved one (the API VIP, the static VIPs), honours a
// requested address and lets Services that say so share one address on
// disjoint ports. It is pure: the controller that runs it in the cluster
// feeds it the Services it watches.
package lb

// Annotations a Service may carry.
const (
	// AnnotationAddress asks for an address of the pool (as
	// spec.loadBalancerIP, deprecated upstream, does).
	AnnotationAddress = "lb.tricenter.io/address"
	// AnnotationShare lets Services with the same value share one address
	// when their ports do not overlap.
	AnnotationShare = "lb.tricenter.io/share"
)
