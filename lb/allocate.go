package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Port is one port a Service exposes, as sharing compares them.
type Port struct {
	Protocol string // TCP, UDP or SCTP
	Port     int32
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// Service is what allocation needs to know of a Service of type
// LoadBalancer.
type Service struct {
	// Key is namespace/name.
	Key string
	// Requested is the address the Service asks for (spec.loadBalancerIP
	// or the AnnotationAddress annotation); zero when it takes any.
	Requested netip.Addr
	// SharingKey is the AnnotationShare annotation: Services with the
	// same non-empty key and disjoint ports may share one address.
	SharingKey string
	Ports      []Port
}

// Pool is the addresses the allocator hands out: every address of the
// inventory's network.loadBalancerPool (each is announced as a /32, so a
// range's first and last addresses are as good as the others, and the
// inventory counts them), without the reserved addresses (the API VIP,
// the static network.loadBalancerVIPs).
type Pool struct {
	Ranges []netip.Prefix
	// Reserved maps an address of the ranges never handed out to why.
	Reserved map[netip.Addr]string
}

// ErrExhausted is returned when every address of the pool is taken.
var ErrExhausted = errors.New("the load-balancer pool has no free address")

// ConflictError is a requested address the Service cannot have.
type ConflictError struct {
	Service string
	Addr    netip.Addr
	Why     string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("service %s: address %s: %s", e.Service, e.Addr, e.Why)
}

// Allocator records which Services hold which addresses. It is not safe
// for concurrent use: the controller serializes its calls.
//
// The record is rebuilt from the Services' status (Restore) whenever a
// controller starts or becomes leader: the API server, not this process,
// is where an assignment lives, so no address is handed out twice across
// a restart or a leader change.
type Allocator struct {
	pool    Pool
	holders map[netip.Addr][]Service
	byKey   map[string]netip.Addr
}

// New is an allocator over p. The ranges must be IPv4 and non-empty.
func New(p Pool) (*Allocator, error) {
	if len(p.Ranges) == 0 {
		return nil, errors.New("network.loadBalancerPool is empty: add a range to give LoadBalancer Services addresses")
	}
	for _, r := range p.Ranges {
		if !r.IsValid() || !r.Addr().Is4() {
			return nil, fmt.Errorf("network.loadBalancerPool: %s is not an IPv4 prefix", r)
		}
	}
	return &Allocator{pool: p, holders: map[netip.Addr][]Service{}, byKey: map[string]netip.Addr{}}, nil
}

// Holders lists the Services holding addr, by key.
func (a *Allocator) Holders(addr netip.Addr) []string {
	var keys []string
	for _, s := range a.holders[addr] {
		keys = append(keys, s.Key)
	}
	sort.Strings(keys)
	return keys
}

// Addr is the address s.Key holds.
func (a *Allocator) Addr(key string) (netip.Addr, bool) {
	x, ok := a.byKey[key]
	return x, ok
}

// inPool reports whether addr is one the pool may hand out, or why not.
func (a *Allocator) inPool(addr netip.Addr) error {
	if why, ok := a.pool.Reserved[addr]; ok {
		return fmt.Errorf("reserved: %s", why)
	}
	for _, r := range a.pool.Ranges {
		if r.Contains(addr) {
			return nil
		}
	}
	return fmt.Errorf("not in network.loadBalancerPool (%s)", joinPrefixes(a.pool.Ranges))
}

// compatible reports whether s may share addr with its holders, or why
// not: every holder has s's non-empty sharing key and no port in common.
func (a *Allocator) compatible(s Service, addr netip.Addr) error {
	for _, h := range a.holders[addr] {
		if h.Key == s.Key {
			continue
		}
		if s.SharingKey == "" || h.SharingKey != s.SharingKey {
			return fmt.Errorf("held by %s (to share an address, both Services need the same %s annotation)", h.Key, AnnotationShare)
		}
		for _, p := range s.Ports {
			if slices.Contains(h.Ports, p) {
				return fmt.Errorf("held by %s, which uses port %s too", h.Key, p)
			}
		}
	}
	return nil
}

// Restore records an address a Service already holds (its status),
// checking it as Assign would. A Service found holding an address it may
// not (outside the pool, reserved, or shared against the rules) is not
// recorded: the error says why, and the controller takes the address
// back from it.
func (a *Allocator) Restore(s Service, addr netip.Addr) error {
	if err := a.inPool(addr); err != nil {
		return &ConflictError{Service: s.Key, Addr: addr, Why: err.Error()}
	}
	if s.Requested.IsValid() && s.Requested != addr {
		return &ConflictError{Service: s.Key, Addr: addr, Why: "the Service now asks for " + s.Requested.String()}
	}
	if err := a.compatible(s, addr); err != nil {
		return &ConflictError{Service: s.Key, Addr: addr, Why: err.Error()}
	}
	a.hold(s, addr)
	return nil
}

func (a *Allocator) hold(s Service, addr netip.Addr) {
	a.release(s.Key)
	a.holders[addr] = append(a.holders[addr], s)
	a.byKey[s.Key] = addr
}

// Assign gives s an address: the one it holds if it still may, else the
// one it asks for, else an address it may share (same sharing key,
// disjoint ports), else the lowest free one. It returns ErrExhausted or a
// *ConflictError naming the holder.
func (a *Allocator) Assign(s Service) (netip.Addr, error) {
	if cur, ok := a.byKey[s.Key]; ok && (!s.Requested.IsValid() || s.Requested == cur) {
		// Re-check against the others: ports or the sharing key may have
		// changed since the address was given.
		a.release(s.Key)
		if err := a.compatible(s, cur); err == nil {
			a.hold(s, cur)
			return cur, nil
		}
	}
	a.release(s.Key)
	if s.Requested.IsValid() {
		if err := a.inPool(s.Requested); err != nil {
			return netip.Addr{}, &ConflictError{Service: s.Key, Addr: s.Requested, Why: err.Error()}
		}
		if err := a.compatible(s, s.Requested); err != nil {
			return netip.Addr{}, &ConflictError{Service: s.Key, Addr: s.Requested, Why: err.Error()}
		}
		a.hold(s, s.Requested)
		return s.Requested, nil
	}
	if s.SharingKey != "" {
		for _, addr := range a.sortedHeld() {
			if a.sharedBy(addr, s.SharingKey) && a.compatible(s, addr) == nil {
				a.hold(s, addr)
				return addr, nil
			}
		}
	}
	for _, r := range a.pool.Ranges {
		for addr := r.Masked().Addr(); r.Contains(addr); addr = addr.Next() {
			if _, reserved := a.pool.Reserved[addr]; reserved || len(a.holders[addr]) > 0 {
				continue
			}
			a.hold(s, addr)
			return addr, nil
		}
	}
	return netip.Addr{}, ErrExhausted
}

// sharedBy reports whether every holder of addr carries key.
func (a *Allocator) sharedBy(addr netip.Addr, key string) bool {
	hs := a.holders[addr]
	return len(hs) > 0 && !slices.ContainsFunc(hs, func(h Service) bool { return h.SharingKey != key })
}

func (a *Allocator) sortedHeld() []netip.Addr {
	out := make([]netip.Addr, 0, len(a.holders))
	for addr := range a.holders {
		out = append(out, addr)
	}
	slices.SortFunc(out, func(x, y netip.Addr) int { return x.Compare(y) })
	return out
}

// Release gives back what key holds (the Service was deleted or is no
// longer of type LoadBalancer).
func (a *Allocator) Release(key string) { a.release(key) }

func (a *Allocator) release(key string) {
	addr, ok := a.byKey[key]
	if !ok {
		return
	}
	delete(a.byKey, key)
	hs := slices.DeleteFunc(a.holders[addr], func(h Service) bool { return h.Key == key })
	if len(hs) == 0 {
		delete(a.holders, addr)
	} else {
		a.holders[addr] = hs
	}
}

// Free is the number of pool addresses no Service holds.
func (a *Allocator) Free() int {
	n := 0
	for _, r := range a.pool.Ranges {
		for addr := r.Masked().Addr(); r.Contains(addr); addr = addr.Next() {
			if _, reserved := a.pool.Reserved[addr]; !reserved && len(a.holders[addr]) == 0 {
				n++
			}
		}
	}
	return n
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// PoolFor is the pool of a cluster: the ranges of ips, with the API VIP
// and the static VIPs (spec.network.loadBalancerVIPs) reserved.
func PoolFor(c *inventory.Cluster, ips *inventory.IPPlan) (Pool, error) {
	p := Pool{Ranges: ips.LoadBalancerPool, Reserved: map[netip.Addr]string{}}
	if ips.APIVIP.IsValid() {
		p.Reserved[ips.APIVIP] = "the API VIP (spec.network.apiVIP)"
	}
	for i, s := range c.Spec.Network.LoadBalancerVIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Pool{}, fmt.Errorf("spec.network.loadBalancerVIPs[%d]: %w", i, err)
		}
		p.Reserved[a] = fmt.Sprintf("a static VIP (spec.network.loadBalancerVIPs[%d])", i)
	}
	return p, nil
}
