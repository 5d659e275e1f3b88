package inventory

import (
	"fmt"
	"math/big"
	"net/netip"
	"sort"
)

// Prior is what the last apply recorded (the CLI's state directory or
// Terraform state): allocations that must not move. A nil Prior is a first
// run.
type Prior struct {
	// PodCIDRs by server name.
	PodCIDRs map[string]string `json:"podCIDRs,omitempty"`
	// EtcdMembers by server name.
	EtcdMembers []string `json:"etcdMembers,omitempty"`
	// Kubernetes and Etcd are the releases the cluster runs, as the last
	// successful apply or upgrade left it ("": not recorded). An apply
	// with other releases is refused: tricenter upgrade changes them.
	Kubernetes string `json:"kubernetes,omitempty"`
	Etcd       string `json:"etcd,omitempty"`
}

// IPPlan is the outcome of IP address management.
type IPPlan struct {
	// PodCIDRs by server name.
	PodCIDRs map[string]netip.Prefix
	// KubernetesServiceIP is the first usable address of the service CIDR
	// (the "kubernetes" Service in the default namespace).
	KubernetesServiceIP netip.Addr
	// ClusterDNSIP is the tenth address of the service CIDR.
	ClusterDNSIP netip.Addr
	// APIVIP is the Kubernetes API virtual IP.
	APIVIP netip.Addr
	// LoadBalancerPool lists the pool's ranges; the API VIP is reserved
	// when it falls inside the pool.
	LoadBalancerPool []netip.Prefix
	// LoadBalancerFree is the number of pool addresses left for services.
	LoadBalancerFree uint64
}

// PodCIDR returns the server's pod CIDR.
func (p *IPPlan) PodCIDR(server string) (netip.Prefix, bool) {
	x, ok := p.PodCIDRs[server]
	return x, ok
}

// AllocateIPs assigns every server a pod CIDR and derives the well-known
// service addresses.
//
// Pod CIDRs are stable across runs: a block pinned in the inventory
// (server.podCIDR) or recorded by the last apply (prior) is kept for as long
// as its server exists; only servers without one get a new block, the lowest
// free one, in inventory order. Adding or removing a server therefore never
// renumbers another server. Without prior state (a first run) the result is a
// deterministic function of the inventory.
//
// The cluster must have passed Validate.
func AllocateIPs(c *Cluster, prior *Prior) (*IPPlan, error) {
	n := c.Spec.Network
	pod, err := netip.ParsePrefix(n.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("spec.network.podCIDR: %w", err)
	}
	pod = pod.Masked()
	svc, err := netip.ParsePrefix(n.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("spec.network.serviceCIDR: %w", err)
	}
	svc = svc.Masked()
	plan := &IPPlan{PodCIDRs: map[string]netip.Prefix{}}
	plan.KubernetesServiceIP = nthAddr(svc.Addr(), 1)
	plan.ClusterDNSIP = nthAddr(svc.Addr(), 10)
	if n.APIVIP != "" {
		plan.APIVIP, err = netip.ParseAddr(n.APIVIP)
		if err != nil {
			return nil, fmt.Errorf("spec.network.apiVIP: %w", err)
		}
	}
	var free uint64
	for i, s := range n.LoadBalancerPool {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("spec.network.loadBalancerPool[%d]: %w", i, err)
		}
		p = p.Masked()
		plan.LoadBalancerPool = append(plan.LoadBalancerPool, p)
		size := prefixSize(p)
		if size.IsUint64() {
			free += size.Uint64()
		}
		if p.Contains(plan.APIVIP) && free > 0 {
			free--
		}
	}
	plan.LoadBalancerFree = free

	a, err := newBlockAllocator(pod, n.PodMaskSize)
	if err != nil {
		return nil, err
	}
	// Lost centers' servers keep their blocks: they come back.
	hosts := c.AllHosts()
	// Pinned blocks first: they win over anything recorded.
	for _, h := range hosts {
		if h.PodCIDR == "" {
			continue
		}
		p, err := netip.ParsePrefix(h.PodCIDR)
		if err != nil {
			return nil, fmt.Errorf("%s.podCIDR: %w", h.Path, err)
		}
		if err := a.claim(p); err != nil {
			return nil, fmt.Errorf("%s.podCIDR %s: %w", h.Path, p, err)
		}
		plan.PodCIDRs[h.Name] = p
	}
	// Then what the last apply recorded, when it still fits the plan.
	if prior != nil {
		names := make([]string, 0, len(prior.PodCIDRs))
		for name := range prior.PodCIDRs {
			names = append(names, name)
		}
		sort.Strings(names)
		exists := make(map[string]bool, len(hosts))
		for _, h := range hosts {
			exists[h.Name] = true
		}
		for _, name := range names {
			if _, done := plan.PodCIDRs[name]; done || !exists[name] {
				continue
			}
			p, err := netip.ParsePrefix(prior.PodCIDRs[name])
			if err != nil || a.claim(p) != nil {
				continue // no longer fits (pod CIDR or mask changed): reallocate
			}
			plan.PodCIDRs[name] = p
		}
	}
	for _, h := range hosts {
		if _, done := plan.PodCIDRs[h.Name]; done {
			continue
		}
		p, ok := a.next()
		if !ok {
			return nil, fmt.Errorf("spec.network.podCIDR %s has no free /%d block left for server %s: widen the pod CIDR or lengthen podMaskSize", pod, n.PodMaskSize, h.Name)
		}
		plan.PodCIDRs[h.Name] = p
	}
	return plan, nil
}

// blockAllocator hands out the aligned sub-blocks of an IPv4 prefix.
type blockAllocator struct {
	base   uint32
	shift  uint
	mask   int
	count  uint32
	used   []uint64 // bitmap
	cursor uint32
	parent netip.Prefix
}

func newBlockAllocator(parent netip.Prefix, mask int) (*blockAllocator, error) {
	if !parent.Addr().Is4() {
		return nil, fmt.Errorf("pod CIDR %s: only IPv4 is supported", parent)
	}
	if mask < parent.Bits() || mask > 32 {
		return nil, fmt.Errorf("podMaskSize /%d does not fit inside pod CIDR %s", mask, parent)
	}
	if mask-parent.Bits() > 24 {
		return nil, fmt.Errorf("pod CIDR %s split into /%d blocks gives more than 16M blocks: lengthen the pod CIDR or shorten podMaskSize", parent, mask)
	}
	count := uint32(1) << uint(mask-parent.Bits())
	return &blockAllocator{
		base: addrU32(parent.Addr()), shift: uint(32 - mask), mask: mask,
		count: count, used: make([]uint64, (count+63)/64), parent: parent,
	}, nil
}

func (a *blockAllocator) claim(p netip.Prefix) error {
	if p.Bits() != a.mask {
		return fmt.Errorf("is a /%d, expected a /%d (podMaskSize)", p.Bits(), a.mask)
	}
	if p.Masked() != p {
		return fmt.Errorf("is not aligned: use %s", p.Masked())
	}
	if !a.parent.Contains(p.Addr()) {
		return fmt.Errorf("lies outside the pod CIDR %s", a.parent)
	}
	i := (addrU32(p.Addr()) - a.base) >> a.shift
	if a.used[i/64]&(1<<(i%64)) != 0 {
		return fmt.Errorf("is already assigned to another server")
	}
	a.used[i/64] |= 1 << (i % 64)
	return nil
}

func (a *blockAllocator) next() (netip.Prefix, bool) {
	for ; a.cursor < a.count; a.cursor++ {
		i := a.cursor
		if a.used[i/64] == ^uint64(0) {
			a.cursor = (i/64+1)*64 - 1
			continue
		}
		if a.used[i/64]&(1<<(i%64)) == 0 {
			a.used[i/64] |= 1 << (i % 64)
			a.cursor++
			return netip.PrefixFrom(u32Addr(a.base+i<<a.shift), a.mask), true
		}
	}
	return netip.Prefix{}, false
}

func addrU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func u32Addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// nthAddr returns a+n (wrapping is the caller's concern: Validate checks
// the service CIDR holds at least 16 addresses).
func nthAddr(a netip.Addr, n int) netip.Addr {
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

func prefixSize(p netip.Prefix) *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
}
