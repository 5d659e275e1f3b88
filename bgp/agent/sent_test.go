package agent

import (
	"log/slog"
	"net/netip"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	bgppacket "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// sentUpdate is what gobgp's session goroutine logs right after writing an
// UPDATE (pkg/server/fsm.go): the fields the sentLog reads.
func sentUpdate(a slogAdapter, peer string, nlri, withdrawals []string) {
	conv := func(ss []string) []*bgppacket.IPAddrPrefix {
		var out []*bgppacket.IPAddrPrefix
		for _, s := range ss {
			p := netip.MustParsePrefix(s)
			out = append(out, bgppacket.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()))
		}
		return out
	}
	a.Debug("sent update", gobgplog.Fields{
		"Topic": "Peer", "Key": peer, "State": "BGP_FSM_ESTABLISHED",
		"nlri": conv(nlri), "withdrawals": conv(withdrawals), "attributes": []bgppacket.PathAttributeInterface{},
	})
}

// The adapter feeds gobgp's "sent update" messages to the sentLog and asks
// gobgp for them whatever the log level; other debug messages are not
// recorded.
func TestSentLogFromGobgpLog(t *testing.T) {
	sl := newSentLog()
	a := slogAdapter{l: slog.New(slog.DiscardHandler), sent: sl}
	if a.GetLevel() != gobgplog.DebugLevel {
		t.Fatalf("GetLevel = %v: gobgp would not log its sent updates", a.GetLevel())
	}
	if (slogAdapter{l: slog.New(slog.DiscardHandler)}).GetLevel() == gobgplog.DebugLevel {
		t.Error("without a sentLog the adapter still asks gobgp for debug messages")
	}
	vip := netip.MustParsePrefix("198.18.100.10/32")
	pod := netip.MustParsePrefix("198.18.64.0/26")
	m0 := sl.mark()
	wake := sl.changed()
	sentUpdate(a, "198.18.0.1", []string{vip.String(), pod.String()}, nil)
	select {
	case <-wake:
	default:
		t.Fatal("a recorded update did not wake the waiters")
	}
	if o := sl.ops("198.18.0.1", vip); o.announced <= m0 || o.withdrawn != 0 {
		t.Fatalf("after an announcement: %+v (mark %d)", o, m0)
	}
	m1 := sl.mark()
	a.Debug("sent", gobgplog.Fields{"Key": "198.18.0.1"}) // a keepalive
	sentUpdate(a, "198.18.0.2", nil, []string{vip.String()})
	if o := sl.ops("198.18.0.1", vip); o.withdrawn != 0 {
		t.Errorf("a withdrawal to another peer counted for 198.18.0.1: %+v", o)
	}
	if o := sl.ops("198.18.0.2", vip); o.withdrawn <= m1 {
		t.Errorf("withdrawal to 198.18.0.2 not recorded after mark %d: %+v", m1, o)
	}
	if o := sl.ops("198.18.0.1", pod); o.announced <= m0 {
		t.Errorf("the second prefix of an update was not recorded: %+v", o)
	}
}

// A withdrawal counts as written only from an UPDATE written after it was
// queued; when its announcement was still queued, only after that
// announcement: queue W1, A, W2 for the same prefix, W1 written late must
// not pass for W2.
func TestWithdrawalWrittenTo(t *testing.T) {
	sl := newSentLog()
	a := slogAdapter{l: slog.New(slog.DiscardHandler), sent: sl}
	const peer = "198.18.0.1"
	vip := netip.MustParsePrefix("198.18.100.10/32")

	// Simple case: announced and written, then withdrawn.
	annMark := sl.mark()
	sentUpdate(a, peer, []string{vip.String()}, nil)
	w := &withdrawal{mark: sl.mark(), annMark: annMark, announcedFirst: map[string]bool{}}
	if w.writtenTo(peer, sl.ops(peer, vip)) {
		t.Fatal("written before any withdrawal was sent")
	}
	sentUpdate(a, peer, nil, []string{vip.String()})
	if !w.writtenTo(peer, sl.ops(peer, vip)) {
		t.Fatalf("not written after the withdrawal was sent: %+v", sl.ops(peer, vip))
	}

	// W1 queued (not written), A queued, W2 queued: what the agent records.
	w1 := &withdrawal{mark: sl.mark(), annMark: annMark, announcedFirst: map[string]bool{}}
	aMark := sl.mark()
	w2 := &withdrawal{mark: sl.mark(), annMark: aMark, announcedFirst: map[string]bool{}}
	if sl.ops(peer, vip).announced <= aMark {
		w2.announcedFirst[peer] = true // A is still queued when W2 is
	}
	sentUpdate(a, peer, nil, []string{vip.String()}) // W1 written
	if !w1.writtenTo(peer, sl.ops(peer, vip)) {
		t.Error("W1 not written after its UPDATE")
	}
	if w2.writtenTo(peer, sl.ops(peer, vip)) {
		t.Fatal("W1 written late passed for W2 while A and W2 are still queued")
	}
	sentUpdate(a, peer, []string{vip.String()}, nil) // A written
	if w2.writtenTo(peer, sl.ops(peer, vip)) {
		t.Fatal("W2 counted as written right after A (the router has the VIP again)")
	}
	sentUpdate(a, peer, nil, []string{vip.String()}) // W2 written
	if !w2.writtenTo(peer, sl.ops(peer, vip)) {
		t.Fatalf("W2 not written after its UPDATE: %+v", sl.ops(peer, vip))
	}
}
