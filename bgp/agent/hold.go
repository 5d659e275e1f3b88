package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// Holds. A held service is unhealthy at once, whatever its check says
// ("held: REASON"): its VIPs are withdrawn unless another healthy, unheld
// service lists them, and its checker stops. Releasing it starts a new
// checker, so the VIPs come back only after Rise passing checks. Holds are
// kept as files in the configuration's hold directory (bgp.WriteHold): the
// agent reads them when it starts and on SIGHUP, and writes or removes them
// on Hold and Release.

var _ bgp.Holder = (*Agent)(nil)

// Hold holds service (see bgp.Holder): it records the hold, withdraws the
// service's VIPs and returns once each withdrawal has been written to every
// session that was established when it was queued. Holding a held service
// again updates the reason and waits for withdrawals still under way.
func (a *Agent) Hold(ctx context.Context, service, reason string) (*bgp.HoldResult, error) {
	if err := errors.Join(bgp.CheckServiceName(service), bgp.CheckHoldReason(reason)); err != nil {
		return nil, err
	}
	var res *bgp.HoldResult
	var wait []netip.Prefix
	err := a.do(ctx, func(st *agentState) error {
		var err error
		res, wait, err = st.hold(service, reason)
		return err
	})
	if err != nil {
		return nil, err
	}
	peers, lost, err := a.waitSent(ctx, wait)
	res.Peers, res.Lost = peers, lost
	if err != nil {
		return res, fmt.Errorf("holding %s: %w", service, err)
	}
	a.log.Info("Service held: its VIPs' withdrawal is sent", "service", service, "reason", reason,
		"withdrawn", res.Withdrawn, "peers", res.Peers)
	return res, nil
}

// Release removes service's hold (see bgp.Holder). Releasing a service
// that is not held changes nothing.
func (a *Agent) Release(ctx context.Context, service string) (*bgp.ReleaseResult, error) {
	if err := bgp.CheckServiceName(service); err != nil {
		return nil, err
	}
	var res *bgp.ReleaseResult
	err := a.do(ctx, func(st *agentState) error {
		var err error
		res, err = st.release(service)
		return err
	})
	return res, err
}

// waitSent waits until the withdrawals of prefixes have been written to
// their sessions. It returns the sessions they were written to and those
// that went down first.
func (a *Agent) waitSent(ctx context.Context, prefixes []netip.Prefix) (sent, lost []string, err error) {
	tick := time.NewTicker(10 * time.Millisecond) // session changes are not signalled
	defer tick.Stop()
	for {
		var wake <-chan struct{}
		var pending map[netip.Prefix][]sessionRef
		err := a.do(ctx, func(st *agentState) error {
			wake = st.sent.changed()
			pending = st.unsent(st.runCtx)
			sent, lost = st.reached(prefixes)
			return nil
		})
		if err != nil {
			return sent, lost, err
		}
		var left []string
		for _, p := range prefixes {
			for _, s := range pending[p] {
				left = append(left, fmt.Sprintf("%s to %s", p, s))
			}
		}
		if len(left) == 0 {
			return sent, lost, nil
		}
		select {
		case <-ctx.Done():
			return sent, lost, fmt.Errorf("the withdrawal of %s is not sent yet (%w): is the router reading its session?", strings.Join(left, ", "), ctx.Err())
		case <-wake:
		case <-tick.C:
		}
	}
}

// sessionRef is an established session: a new session with the same
// peer has another since.
type sessionRef struct {
	name, addr string
	since      time.Time
}

func (s sessionRef) String() string { return fmt.Sprintf("%s (%s)", s.name, s.addr) }

// withdrawal is a withdrawn prefix whose UPDATE may not have been written
// to every session yet.
type withdrawal struct {
	// mark is the sentLog sequence number before the path was deleted,
	// annMark the one before it was added.
	mark, annMark uint64
	// peers are the sessions established when it was queued; announcedFirst
	// those that had not been written the announcement yet (it is still
	// queued before the withdrawal).
	peers          []sessionRef
	announcedFirst map[string]bool
	// sent and lost are the sessions it was written to and those that
	// ended first.
	sent, lost []string
}

// writtenTo reports whether the withdrawal has been written to the
// session with addr, given what was last written to it about the prefix:
// an UPDATE withdrawing it after the withdrawal was queued and after any
// announcing it — and, when the announcement was still queued at the
// time, after that announcement was written (else an older withdrawal
// written late would pass for this one).
func (w *withdrawal) writtenTo(addr string, o sentOps) bool {
	done := o.withdrawn > w.mark && o.withdrawn > o.announced
	if w.announcedFirst[addr] {
		done = done && o.announced > w.annMark
	}
	return done
}

// established lists the established sessions.
func (st *agentState) established(ctx context.Context) []sessionRef {
	var out []sessionRef
	err := st.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if ref, ok := sessionOf(p); ok {
			out = append(out, ref)
		}
	})
	if err != nil {
		st.log.Warn("Listing sessions failed", "err", err)
	}
	return out
}

func sessionOf(p *api.Peer) (sessionRef, bool) {
	if p.Conf == nil || p.State == nil || p.State.SessionState != api.PeerState_ESTABLISHED {
		return sessionRef{}, false
	}
	ref := sessionRef{name: p.Conf.Description, addr: p.Conf.NeighborAddress}
	if p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
		ref.since = p.Timers.State.Uptime.AsTime()
	}
	return ref, true
}

// newWithdrawal is called before an's path is deleted.
func (st *agentState) newWithdrawal(p netip.Prefix, an *announcement, peers []sessionRef) *withdrawal {
	w := &withdrawal{mark: st.sent.mark(), annMark: an.mark, peers: peers, announcedFirst: map[string]bool{}}
	for _, s := range peers {
		if st.sent.ops(s.addr, p).announced <= an.mark {
			w.announcedFirst[s.addr] = true
		}
	}
	return w
}

// unsent updates the pending withdrawals and returns, for each, the
// sessions it has not been written to yet. A withdrawal is written to a
// session when gobgp has written it an UPDATE withdrawing the prefix after
// the withdrawal was queued, later than any announcing it (and, when the
// announcement itself was still queued, after that announcement). A
// session that ended or was re-established meanwhile is lost: the router
// dropped the routes with it (or keeps them as stale for at most the
// graceful-restart time), and a new session starts without the prefix.
func (st *agentState) unsent(ctx context.Context) map[netip.Prefix][]sessionRef {
	if len(st.withdrawing) == 0 {
		return nil
	}
	now := map[string]sessionRef{}
	for _, s := range st.established(ctx) {
		now[s.addr] = s
	}
	out := map[netip.Prefix][]sessionRef{}
	for p, w := range st.withdrawing {
		var left []sessionRef
		for _, s := range w.peers {
			if slices.Contains(w.sent, s.String()) || slices.Contains(w.lost, s.String()) {
				continue
			}
			if cur, ok := now[s.addr]; !ok || !cur.since.Equal(s.since) {
				w.lost = append(w.lost, s.String())
				st.log.Warn("Session ended before a withdrawal reached it", "prefix", p, "peer", s.name, "address", s.addr)
				continue
			}
			if w.writtenTo(s.addr, st.sent.ops(s.addr, p)) {
				w.sent = append(w.sent, s.String())
				continue
			}
			left = append(left, s)
		}
		if len(left) > 0 {
			out[p] = left
		}
	}
	return out
}

// reached reports, for the withdrawals of prefixes, the sessions they were
// written to and those lost (from the last unsent).
func (st *agentState) reached(prefixes []netip.Prefix) (sent, lost []string) {
	for _, p := range prefixes {
		if w, ok := st.withdrawing[p]; ok {
			sent = append(sent, w.sent...)
			lost = append(lost, w.lost...)
		}
	}
	sort.Strings(sent)
	sort.Strings(lost)
	return slices.Compact(sent), slices.Compact(lost)
}

// loadHolds reads the hold directory and applies it to the services: a
// service held by a new file is held, one whose file went is released.
func (st *agentState) loadHolds() {
	holds, err := bgp.ReadHolds(st.cfg.HoldDirectory())
	if err != nil {
		st.log.Error("Reading holds", "dir", st.cfg.HoldDirectory(), "err", err)
	}
	st.holds = holds
	for name, h := range holds {
		st.log.Info("Service held", "service", name, "reason", h.Reason, "since", h.Since)
	}
	for name, ss := range st.services {
		h, held := holds[name]
		switch {
		case held && (ss.held == nil || *ss.held != h):
			st.setHeld(ss, h)
		case !held && ss.held != nil:
			st.log.Info("Hold gone from the hold directory: checking the service again", "service", name)
			st.startCheck(ss)
		}
	}
}

// hold records and applies a hold; it returns what to wait for.
func (st *agentState) hold(service, reason string) (*bgp.HoldResult, []netip.Prefix, error) {
	ss, ok := st.services[service]
	if !ok {
		return nil, nil, bgp.UnknownService(st.cfg, service)
	}
	h := bgp.Hold{Reason: reason, Since: time.Now().UTC().Truncate(time.Second)}
	old, already := st.holds[service]
	if already {
		h.Since = old.Since
	}
	res := &bgp.HoldResult{Service: service, Hold: h, Already: already, Withdrawn: []string{}, Peers: []string{}}
	// Recorded first (again when held: the file may have gone): a hold the
	// agent cannot keep across a restart is refused rather than half
	// applied.
	if err := bgp.WriteHold(st.cfg.HoldDirectory(), service, h); err != nil {
		return nil, nil, fmt.Errorf("%w: nothing was withdrawn", err)
	}
	st.holds[service] = h
	st.setHeld(ss, h)
	if already {
		st.log.Info("Service held again", "service", service, "reason", reason)
	} else {
		st.log.Warn("Service held: withdrawing its VIPs unless another healthy service holds them", "service", service, "vips", ss.svc.VIPs, "reason", reason)
	}
	if err := st.reconcile(); err != nil {
		return nil, nil, fmt.Errorf("withdrawing the VIPs of %s: %w", service, err)
	}
	var wait []netip.Prefix
	for _, v := range ss.svc.VIPs {
		p := netip.PrefixFrom(netip.MustParseAddr(v), 32) // validated
		if an, ok := st.announced[p]; ok {
			if res.Kept == nil {
				res.Kept = map[string][]string{}
			}
			for _, r := range an.reasons {
				res.Kept[p.String()] = append(res.Kept[p.String()], strings.TrimPrefix(r, "service "))
			}
			continue
		}
		res.Withdrawn = append(res.Withdrawn, p.String())
		if _, ok := st.withdrawing[p]; ok {
			wait = append(wait, p)
		}
	}
	return res, wait, nil
}

// release removes a hold: the service's checker starts again.
func (st *agentState) release(service string) (*bgp.ReleaseResult, error) {
	ss, configured := st.services[service]
	_, held := st.holds[service]
	removed, err := bgp.RemoveHold(st.cfg.HoldDirectory(), service)
	if err != nil {
		return nil, err
	}
	if !configured && !held && !removed {
		return nil, bgp.UnknownService(st.cfg, service)
	}
	res := &bgp.ReleaseResult{Service: service, Released: held || removed}
	delete(st.holds, service)
	if !configured {
		return res, nil
	}
	if ss.svc.Check != nil {
		res.Rise = ss.svc.Check.Rise
	}
	if ss.held == nil {
		return res, nil
	}
	st.log.Info("Service released: announcing its VIPs again once its check passes", "service", service, "rise", res.Rise)
	st.startCheck(ss)
	if err := st.reconcile(); err != nil {
		return res, fmt.Errorf("announcing the VIPs of %s: %w", service, err)
	}
	return res, nil
}
