package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
)

// Options tune an Agent.
type Options struct {
	// Logger receives the agent's logs (default: discard).
	Logger *slog.Logger
	// StopTimeout bounds the graceful stop (default 5s).
	StopTimeout time.Duration
	// WatchLoadBalancers watches LoadBalancer Services when the
	// configuration has a loadBalancers section (see loadbalancers.go);
	// without it the section is reported and ignored.
	WatchLoadBalancers WatchFunc
}

// ErrNotRunning is returned by Reload and Status when the agent's loop is
// not running.
var ErrNotRunning = errors.New("agent is not running")

// Agent is the node BGP speaker: an embedded gobgp BgpServer that peers
// with the node's routers and announces the node's prefixes and the VIPs of
// its healthy services. One goroutine (Run) owns all mutable state; Reload
// and Status hand it work through a channel.
type Agent struct {
	log     *slog.Logger
	initial *bgp.Config
	stopTO  time.Duration
	watchLB WatchFunc
	cmds    chan func(*agentState)
	done    chan struct{}
}

// New prepares an agent for cfg (which must have passed Validate).
func New(cfg *bgp.Config, o Options) *Agent {
	l := o.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 5 * time.Second
	}
	return &Agent{log: l, initial: cfg, stopTO: o.StopTimeout, watchLB: o.WatchLoadBalancers,
		cmds: make(chan func(*agentState)), done: make(chan struct{})}
}

// Run starts the speaker and serves until ctx ends, then withdraws every
// announcement and closes the sessions (graceful stop).
func (a *Agent) Run(ctx context.Context) error {
	defer close(a.done)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &agentState{
		log: a.log, runCtx: runCtx,
		health:      make(chan healthEvent, 16),
		services:    map[string]*svcState{},
		announced:   map[netip.Prefix]*announcement{},
		holds:       map[string]bgp.Hold{},
		sent:        newSentLog(),
		withdrawing: map[netip.Prefix]*withdrawal{},
		watchLB:     a.watchLB,
		submit:      a.do,
	}
	if err := st.start(a.initial); err != nil {
		st.stopLoadBalancers()
		st.stop()
		return err
	}
	a.log.Info("Agent started", "node", st.cfg.Node, "asn", st.cfg.ASN, "peers", len(st.cfg.Peers))
	for {
		select {
		case <-ctx.Done():
			a.log.Info("Stopping: withdrawing announcements", "node", st.cfg.Node)
			st.stopLoadBalancers()
			stopped := make(chan struct{})
			go func() { st.stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(a.stopTO):
				return fmt.Errorf("graceful stop of %s took longer than %s", st.cfg.Node, a.stopTO)
			}
			a.log.Info("Agent stopped", "node", st.cfg.Node)
			return nil
		case f := <-a.cmds:
			f(st)
		case ev := <-st.health:
			st.onHealth(ev)
		}
	}
}

// do runs f on the agent's loop and waits for it.
func (a *Agent) do(ctx context.Context, f func(*agentState) error) error {
	errc := make(chan error, 1)
	select {
	case a.cmds <- func(st *agentState) { errc <- f(st) }:
	case <-a.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload applies a new configuration. Prefix, service, community and
// next-hop changes are applied on the established sessions; a changed or
// new peer resets only that peer; a changed ASN, router ID, timers or
// graceful-restart setting restarts the speaker.
func (a *Agent) Reload(ctx context.Context, cfg *bgp.Config) error {
	return a.do(ctx, func(st *agentState) error { return st.reload(cfg) })
}

// Status reports sessions, announcements and service health.
func (a *Agent) Status(ctx context.Context) (*bgp.Status, error) {
	var s *bgp.Status
	err := a.do(ctx, func(st *agentState) error {
		var err error
		s, err = st.status(ctx)
		return err
	})
	return s, err
}

// agentState is owned by the Run goroutine.
type agentState struct {
	log       *slog.Logger
	runCtx    context.Context
	cfg       *bgp.Config
	srv       *server.BgpServer
	started   time.Time
	peers     map[string]appliedPeer // by address
	services  map[string]*svcState
	gen       uint64
	health    chan healthEvent
	announced map[netip.Prefix]*announcement
	watchStop context.CancelFunc
	// holds are the held services (hold.go), as in the hold directory.
	holds map[string]bgp.Hold
	// sent tells which UPDATEs have been written to which peer.
	sent *sentLog
	// withdrawing are withdrawals not yet known to be written to every
	// session that was established when they were queued.
	withdrawing map[netip.Prefix]*withdrawal
	// lb is the LoadBalancer watch and its routes (loadbalancers.go).
	lb      lbState
	watchLB WatchFunc
	// submit runs a function on the loop (Agent.do), for the watch.
	submit func(context.Context, func(*agentState) error) error
}

type appliedPeer struct {
	conf     bgp.PeerConfig
	password string
}

type svcState struct {
	svc     bgp.Service
	gen     uint64
	healthy bool
	detail  string
	since   time.Time
	cancel  context.CancelFunc
	// held is set while the service is held.
	held *bgp.Hold
}

type announcement struct {
	uuid     []byte
	key      string
	reasons  []string
	prepends int
	since    time.Time
	// mark is the sentLog sequence number before the path was added.
	mark uint64
}

var familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// start brings up the BgpServer, peers, checkers and announcements.
func (st *agentState) start(cfg *bgp.Config) error {
	st.cfg = cfg
	st.started = time.Now()
	st.srv = server.NewBgpServer(server.LoggerOption(slogAdapter{l: st.log, sent: st.sent}))
	go st.srv.Serve()
	ctx := st.runCtx
	err := st.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.ASN, RouterId: cfg.RouterID, ListenPort: -1,
	}})
	if err != nil {
		return fmt.Errorf("starting BGP on %s: %w", cfg.Node, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	st.watchStop = wcancel
	err = st.srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		pe := r.GetPeer()
		if pe == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer == nil || pe.Peer.State == nil {
			return
		}
		s := pe.Peer.State
		lvl := slog.LevelInfo
		if s.SessionState != api.PeerState_ESTABLISHED {
			lvl = slog.LevelDebug
			if s.SessionState == api.PeerState_IDLE || s.SessionState == api.PeerState_ACTIVE {
				lvl = slog.LevelInfo
			}
		}
		st.log.Log(context.Background(), lvl, "Session "+sessionState(s.SessionState), "node", cfg.Node, "peer", s.Description, "address", s.NeighborAddress, "asn", s.PeerAsn)
	})
	if err != nil {
		return fmt.Errorf("watching sessions on %s: %w", cfg.Node, err)
	}
	st.peers = map[string]appliedPeer{}
	var errs []error
	for _, pc := range cfg.Peers {
		if err := st.addPeer(pc); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	st.loadHolds()
	st.applyServices(cfg.Services)
	st.applyLoadBalancers(cfg.LoadBalancers)
	return st.reconcile()
}

// stop withdraws every announcement, waits briefly for the withdrawals to
// leave, then closes the sessions (Cease) and stops the server.
func (st *agentState) stop() {
	for _, s := range st.services {
		s.cancel()
	}
	st.services = map[string]*svcState{}
	if st.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	peers := st.established(ctx)
	for p, an := range st.announced {
		w := st.newWithdrawal(p, an, peers)
		if err := st.srv.DeletePath(ctx, &api.DeletePathRequest{Family: familyIPv4, Uuid: an.uuid}); err != nil {
			st.log.Warn("Withdrawing failed", "prefix", p, "err", err)
		} else {
			st.withdrawing[p] = w
		}
		delete(st.announced, p)
	}
	// Let the withdrawals reach the routers before the Cease; the routers
	// drop the routes on the Cease anyway.
	deadline := time.Now().Add(time.Second)
	for {
		wake := st.sent.changed()
		if len(st.unsent(ctx)) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-wake:
		case <-time.After(10 * time.Millisecond):
		}
	}
	st.withdrawing = map[netip.Prefix]*withdrawal{}
	if st.watchStop != nil {
		st.watchStop()
	}
	if err := st.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		st.log.Warn("Stopping BGP failed", "err", err)
	}
	st.srv.Stop()
	st.srv = nil
}

func readPassword(pc bgp.PeerConfig) (string, error) {
	if pc.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(pc.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("peer %s: reading password file: %w", pc.Name, err)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("peer %s: password file %s is empty", pc.Name, pc.PasswordFile)
	}
	if len(pw) > 80 {
		return "", fmt.Errorf("peer %s: password in %s is longer than 80 bytes (TCP MD5 limit)", pc.Name, pc.PasswordFile)
	}
	return pw, nil
}

func (st *agentState) apiPeer(pc bgp.PeerConfig, pw string) *api.Peer {
	c := st.cfg
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: pc.Address, PeerAsn: pc.ASN, AuthPassword: pw, Description: pc.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(c.Timers.ConnectRetrySeconds),
			HoldTime:          uint64(c.Timers.HoldSeconds),
			KeepaliveInterval: uint64(c.Timers.KeepaliveSeconds),
		}},
		Transport: &api.Transport{LocalAddress: c.NextHop, RemotePort: uint32(pc.Port)},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{
				Config: &api.MpGracefulRestartConfig{Enabled: c.Graceful.Enabled},
			},
		}},
	}
	if pc.MultihopTTL > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(pc.MultihopTTL)}
	}
	if c.Graceful.Enabled {
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(c.Graceful.RestartSeconds)}
	}
	return p
}

func (st *agentState) addPeer(pc bgp.PeerConfig) error {
	pw, err := readPassword(pc)
	if err != nil {
		return err
	}
	st.log.Info("Adding peer", "node", st.cfg.Node, "peer", pc.Name, "address", pc.Address, "asn", pc.ASN)
	if err := st.srv.AddPeer(st.runCtx, &api.AddPeerRequest{Peer: st.apiPeer(pc, pw)}); err != nil {
		return fmt.Errorf("adding peer %s (%s) on %s: %w", pc.Name, pc.Address, st.cfg.Node, err)
	}
	st.peers[pc.Address] = appliedPeer{conf: pc, password: pw}
	return nil
}

func (st *agentState) deletePeer(addr string) error {
	st.log.Info("Removing peer", "node", st.cfg.Node, "peer", st.peers[addr].conf.Name, "address", addr)
	delete(st.peers, addr)
	if err := st.srv.DeletePeer(st.runCtx, &api.DeletePeerRequest{Address: addr}); err != nil {
		return fmt.Errorf("removing peer %s on %s: %w", addr, st.cfg.Node, err)
	}
	return nil
}

// applyServices starts, restarts or stops checkers to match svcs. A
// service whose definition is unchanged keeps its checker and state.
func (st *agentState) applyServices(svcs []bgp.Service) {
	want := map[string]bgp.Service{}
	for _, s := range svcs {
		want[s.Name] = s
	}
	for name, s := range st.services {
		if w, ok := want[name]; !ok || !reflect.DeepEqual(w, s.svc) {
			s.cancel()
			delete(st.services, name)
		}
	}
	for _, s := range svcs {
		if _, ok := st.services[s.Name]; ok {
			continue
		}
		ss := &svcState{svc: s, since: time.Now(), cancel: func() {}}
		st.services[s.Name] = ss
		if h, ok := st.holds[s.Name]; ok {
			st.setHeld(ss, h)
			continue
		}
		st.startCheck(ss)
	}
}

// startCheck (re)starts a service's checker: the service is unhealthy
// until Rise checks pass (healthy at once without a check).
func (st *agentState) startCheck(ss *svcState) {
	ss.cancel()
	ss.cancel = func() {}
	ss.held = nil
	st.gen++
	ss.gen = st.gen // events of an earlier checker are dropped
	ss.since = time.Now()
	s := ss.svc
	if s.Check == nil {
		ss.healthy, ss.detail = true, ""
		return
	}
	ss.healthy, ss.detail = false, "not checked yet"
	c, err := newChecker(s.Name, ss.gen, *s.Check, st.health)
	if err != nil {
		ss.detail = err.Error()
		st.log.Error("Health check cannot run: VIPs stay withdrawn", "service", s.Name, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(st.runCtx)
	ss.cancel = cancel
	go c.run(ctx)
}

// setHeld makes a service unhealthy because it is held; its checker stops
// (a release starts a new one).
func (st *agentState) setHeld(ss *svcState, h bgp.Hold) {
	ss.cancel()
	ss.cancel = func() {}
	st.gen++
	ss.gen = st.gen
	ss.healthy, ss.detail = false, "held: "+h.Reason
	ss.held = &h
	ss.since = h.Since
	if ss.since.IsZero() {
		ss.since = time.Now()
	}
}

func (st *agentState) onHealth(ev healthEvent) {
	s, ok := st.services[ev.service]
	if !ok || s.gen != ev.gen {
		return // from a checker that was replaced
	}
	s.detail = ev.detail
	if s.healthy == ev.healthy {
		if ev.detail != "" {
			st.log.Warn("Service unhealthy", "service", ev.service, "reason", ev.detail)
		}
		return
	}
	s.healthy, s.since = ev.healthy, ev.at
	if ev.healthy {
		st.log.Info("Service healthy: announcing its VIPs", "service", ev.service, "vips", s.svc.VIPs)
	} else {
		st.log.Warn("Service unhealthy: withdrawing its VIPs unless another healthy service holds them", "service", ev.service, "vips", s.svc.VIPs, "reason", ev.detail)
	}
	if err := st.reconcile(); err != nil {
		st.log.Error("Updating announcements failed", "err", err)
	}
}

// desire is one prefix to announce: why, and with how many prepends.
type desire struct {
	reasons  []string
	prepends int
}

// desired computes what should be announced, with the reasons: the static
// prefixes, each VIP whose reference count (healthy services listing it)
// is above zero, and the LoadBalancer routes. A prefix wanted for several
// reasons is announced once, with the fewest prepends (none for a prefix
// or a service VIP).
func (st *agentState) desired() map[netip.Prefix]*desire {
	out := map[netip.Prefix]*desire{}
	add := func(p netip.Prefix, reason string) {
		d := out[p]
		if d == nil {
			d = &desire{}
			out[p] = d
		}
		d.prepends = 0
		d.reasons = append(d.reasons, reason)
	}
	for _, s := range st.cfg.Prefixes {
		add(netip.MustParsePrefix(s), "prefix") // validated
	}
	for _, s := range st.services {
		if !s.healthy {
			continue
		}
		for _, v := range s.svc.VIPs {
			add(netip.PrefixFrom(netip.MustParseAddr(v), 32), "service "+s.svc.Name)
		}
	}
	st.lbDesired(out)
	for _, d := range out {
		sort.Strings(d.reasons)
	}
	return out
}

func (st *agentState) attrKey() string {
	return st.cfg.NextHop + "|" + strings.Join(st.cfg.Communities, ",")
}

// reconcile adds and withdraws paths so the announced set matches desired.
func (st *agentState) reconcile() error {
	ctx := st.runCtx
	want := st.desired()
	key := st.attrKey()
	var errs []error
	var peers []sessionRef
	listed := false
	for p, an := range st.announced {
		if _, ok := want[p]; ok {
			continue
		}
		if !listed {
			peers, listed = st.established(ctx), true
		}
		w := st.newWithdrawal(p, an, peers)
		st.log.Info("Withdrawing", "prefix", p, "was", strings.Join(an.reasons, ", "))
		if err := st.srv.DeletePath(ctx, &api.DeletePathRequest{Family: familyIPv4, Uuid: an.uuid}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
			continue
		}
		delete(st.announced, p)
		st.withdrawing[p] = w
	}
	prefixes := make([]netip.Prefix, 0, len(want))
	for p := range want {
		prefixes = append(prefixes, p)
	}
	sort.Slice(prefixes, func(i, j int) bool { return prefixes[i].String() < prefixes[j].String() })
	for _, p := range prefixes {
		reasons, prepends := want[p].reasons, want[p].prepends
		an, ok := st.announced[p]
		if ok && an.key == key && an.prepends == prepends {
			an.reasons = reasons
			continue
		}
		path, err := st.path(p, prepends)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.log.Info("Announcing", "prefix", p, "for", strings.Join(reasons, ", "), "nexthop", st.cfg.NextHop, "prepends", prepends)
		mark := st.sent.mark()
		resp, err := st.srv.AddPath(ctx, &api.AddPathRequest{Path: path})
		if err != nil {
			errs = append(errs, fmt.Errorf("announcing %s: %w", p, err))
			continue
		}
		since := time.Now()
		if ok {
			since = an.since
		}
		st.announced[p] = &announcement{uuid: resp.Uuid, key: key, reasons: reasons, prepends: prepends, since: since, mark: mark}
		delete(st.withdrawing, p)
	}
	return errors.Join(errs...)
}

// path is the announcement of p. With prepends > 0 it carries an AS path
// of the node's ASN repeated that many times; gobgp puts the ASN once
// more in front on every eBGP session, so the routers see a path 1 +
// prepends long (an unprepended path: the ASN once).
func (st *agentState) path(p netip.Prefix, prepends int) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	attrs := []proto.Message{
		&api.OriginAttribute{Origin: 0}, // IGP
		&api.NextHopAttribute{NextHop: st.cfg.NextHop},
	}
	if prepends > 0 {
		asns := make([]uint32, prepends)
		for i := range asns {
			asns[i] = st.cfg.ASN
		}
		attrs = append(attrs, &api.AsPathAttribute{Segments: []*api.AsSegment{{Type: api.AsSegment_AS_SEQUENCE, Numbers: asns}}})
	}
	if len(st.cfg.Communities) > 0 {
		lc := &api.LargeCommunitiesAttribute{}
		for _, s := range st.cfg.Communities {
			c, _ := bgp.ParseLargeCommunity(s) // validated
			lc.Communities = append(lc.Communities, &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Data1, LocalData2: c.Data2})
		}
		attrs = append(attrs, lc)
	}
	path := &api.Path{Family: familyIPv4, Nlri: nlri}
	for _, m := range attrs {
		a, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		path.Pattrs = append(path.Pattrs, a)
	}
	return path, nil
}

// needsRestart reports whether moving from old to new needs a new speaker.
func needsRestart(old, new *bgp.Config) bool {
	return old.ASN != new.ASN || old.RouterID != new.RouterID ||
		old.Timers != new.Timers || old.Graceful != new.Graceful
}

func (st *agentState) reload(cfg *bgp.Config) error {
	old := st.cfg
	if cfg.StatusSocket != old.StatusSocket {
		st.log.Warn("statusSocket changes take effect on restart", "socket", old.StatusSocket)
	}
	if needsRestart(old, cfg) {
		st.log.Warn("ASN, router ID, timers or graceful restart changed: restarting the speaker (sessions reset)", "node", cfg.Node)
		st.stop()
		st.announced = map[netip.Prefix]*announcement{}
		return st.start(cfg)
	}
	st.cfg = cfg
	st.loadHolds()
	var errs []error
	want := map[string]bgp.PeerConfig{}
	for _, pc := range cfg.Peers {
		want[pc.Address] = pc
	}
	for addr, ap := range st.peers {
		pc, ok := want[addr]
		if ok && pc == ap.conf {
			pw, err := readPassword(pc)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if pw == ap.password {
				continue
			}
			st.log.Info("Password changed: resetting the session", "peer", pc.Name)
		}
		if err := st.deletePeer(addr); err != nil {
			errs = append(errs, err)
		}
	}
	for _, pc := range cfg.Peers {
		if _, ok := st.peers[pc.Address]; ok {
			continue
		}
		if err := st.addPeer(pc); err != nil {
			errs = append(errs, err)
		}
	}
	st.applyServices(cfg.Services)
	st.applyLoadBalancers(cfg.LoadBalancers)
	if err := st.reconcile(); err != nil {
		errs = append(errs, err)
	}
	st.log.Info("Configuration reloaded", "node", cfg.Node, "announced", len(st.announced))
	return errors.Join(errs...)
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "Idle"
	case api.PeerState_CONNECT:
		return "Connect"
	case api.PeerState_ACTIVE:
		return "Active"
	case api.PeerState_OPENSENT:
		return "OpenSent"
	case api.PeerState_OPENCONFIRM:
		return "OpenConfirm"
	case api.PeerState_ESTABLISHED:
		return "Established"
	}
	return "Unknown"
}

func (st *agentState) status(ctx context.Context) (*bgp.Status, error) {
	s := &bgp.Status{
		Node: st.cfg.Node, ASN: st.cfg.ASN, RouterID: st.cfg.RouterID,
		Started: st.started, Sessions: []bgp.Session{}, Announced: []bgp.Announced{}, Services: []bgp.ServiceStatus{},
	}
	now := time.Now()
	err := st.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil {
			return
		}
		se := bgp.Session{
			Name: p.Conf.Description, Address: p.Conf.NeighborAddress, ASN: p.Conf.PeerAsn,
			State: sessionState(p.State.SessionState),
		}
		if p.State.SessionState == api.PeerState_ESTABLISHED && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			se.Since = p.Timers.State.Uptime.AsTime()
			se.UptimeSeconds = now.Sub(se.Since).Seconds()
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				se.Received += af.State.Received
				se.Accepted += af.State.Accepted
			}
		}
		s.Sessions = append(s.Sessions, se)
	})
	if err != nil {
		return nil, fmt.Errorf("listing sessions of %s: %w", st.cfg.Node, err)
	}
	sort.Slice(s.Sessions, func(i, j int) bool { return s.Sessions[i].Address < s.Sessions[j].Address })
	for p, an := range st.announced {
		s.Announced = append(s.Announced, bgp.Announced{Prefix: p.String(), For: an.reasons, Since: an.since, NextHop: st.cfg.NextHop, Prepends: an.prepends})
	}
	sort.Slice(s.Announced, func(i, j int) bool { return prefixLess(s.Announced[i].Prefix, s.Announced[j].Prefix) })
	for _, sv := range st.services {
		ss := bgp.ServiceStatus{Name: sv.svc.Name, VIPs: sv.svc.VIPs, Healthy: sv.healthy, Since: sv.since, Held: sv.held}
		if !sv.healthy {
			ss.Reason = sv.detail
		}
		if sv.svc.Check != nil {
			ss.Check = sv.svc.Check.URL
		}
		s.Services = append(s.Services, ss)
	}
	sort.Slice(s.Services, func(i, j int) bool { return s.Services[i].Name < s.Services[j].Name })
	for p, left := range st.unsent(ctx) {
		w := bgp.Withdrawal{Prefix: p.String()}
		for _, r := range left {
			w.Peers = append(w.Peers, r.String())
		}
		s.Withdrawing = append(s.Withdrawing, w)
	}
	sort.Slice(s.Withdrawing, func(i, j int) bool { return prefixLess(s.Withdrawing[i].Prefix, s.Withdrawing[j].Prefix) })
	s.LoadBalancers = st.lbStatus()
	return s, nil
}

func prefixLess(a, b string) bool {
	pa, ea := netip.ParsePrefix(a)
	pb, eb := netip.ParsePrefix(b)
	if ea != nil || eb != nil {
		return a < b
	}
	if c := pa.Addr().Compare(pb.Addr()); c != 0 {
		return c < 0
	}
	return pa.Bits() < pb.Bits()
}
