package agent

import (
	"net/netip"
	"sync"

	bgppacket "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// sentLog learns which UPDATEs gobgp has written to each peer's
// connection, from the "sent update" debug message gobgp logs right after
// the write (pkg/server/fsm.go, sendMessageloop). It is the one place that
// tells: gobgp v3 never fills a peer's queue counters (PeerState.OutQ and
// Queues stay 0), and a path deleted from the RIB is only queued for the
// peers. A hold waits on it (see holdWait).
//
// gobgp calls record from its session goroutines, so sentLog has its own
// lock; the agent loop reads it.
type sentLog struct {
	mu   sync.Mutex
	seq  uint64
	last map[string]map[netip.Prefix]*sentOps // peer address -> prefix
	wake chan struct{}                        // closed and replaced on every record
}

// sentOps are the sequence numbers of the last UPDATE written to a peer
// that announced a prefix and of the last that withdrew it.
type sentOps struct {
	announced, withdrawn uint64
}

func newSentLog() *sentLog {
	return &sentLog{last: map[string]map[netip.Prefix]*sentOps{}, wake: make(chan struct{})}
}

// mark is the current sequence number: an UPDATE queued after mark is
// recorded with a larger one.
func (s *sentLog) mark() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// changed is closed at the next record.
func (s *sentLog) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// ops returns what was last written to peer about p.
func (s *sentLog) ops(peer string, p netip.Prefix) sentOps {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.last[peer][p]; o != nil {
		return *o
	}
	return sentOps{}
}

// record notes one UPDATE written to peer.
func (s *sentLog) record(peer string, announced, withdrawn []netip.Prefix) {
	if len(announced) == 0 && len(withdrawn) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	m := s.last[peer]
	if m == nil {
		m = map[netip.Prefix]*sentOps{}
		s.last[peer] = m
	}
	get := func(p netip.Prefix) *sentOps {
		o := m[p]
		if o == nil {
			o = &sentOps{}
			m[p] = o
		}
		return o
	}
	for _, p := range announced {
		get(p).announced = s.seq
	}
	for _, p := range withdrawn {
		get(p).withdrawn = s.seq
	}
	close(s.wake)
	s.wake = make(chan struct{})
}

// onSentUpdate is called with the fields of gobgp's "sent update" message.
func (s *sentLog) onSentUpdate(f map[string]any) {
	peer, _ := f["Key"].(string)
	if peer == "" {
		return
	}
	var ann, wd []netip.Prefix
	add := func(dst *[]netip.Prefix, nlri []*bgppacket.IPAddrPrefix) {
		for _, n := range nlri {
			if a, ok := netip.AddrFromSlice(n.Prefix.To4()); ok {
				*dst = append(*dst, netip.PrefixFrom(a, int(n.Length)))
			}
		}
	}
	if n, ok := f["nlri"].([]*bgppacket.IPAddrPrefix); ok {
		add(&ann, n)
	}
	if n, ok := f["withdrawals"].([]*bgppacket.IPAddrPrefix); ok {
		add(&wd, n)
	}
	// IPv4 routes with an IPv6 next hop (RFC 5549) and other families go
	// in MP_REACH/MP_UNREACH attributes.
	if attrs, ok := f["attributes"].([]bgppacket.PathAttributeInterface); ok {
		for _, a := range attrs {
			switch a := a.(type) {
			case *bgppacket.PathAttributeMpReachNLRI:
				for _, n := range a.Value {
					if ip, ok := n.(*bgppacket.IPAddrPrefix); ok {
						add(&ann, []*bgppacket.IPAddrPrefix{ip})
					}
				}
			case *bgppacket.PathAttributeMpUnreachNLRI:
				for _, n := range a.Value {
					if ip, ok := n.(*bgppacket.IPAddrPrefix); ok {
						add(&wd, []*bgppacket.IPAddrPrefix{ip})
					}
				}
			}
		}
	}
	s.record(peer, ann, wd)
}
