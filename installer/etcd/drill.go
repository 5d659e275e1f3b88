package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Power takes a server down and brings it back, for the drill.
type Power interface {
	// Off makes the server's etcd member vanish as in a center loss.
	Off(ctx context.Context, h inventory.Host) error
	// On brings it back.
	On(ctx context.Context, h inventory.Host) error
	// Describe names the method ("BMC power off", ...).
	Describe() string
}

// BMCPower powers servers off and on through their BMCs (IPMI chassis
// control): a real power cut.
type BMCPower struct {
	Options bmc.Options
	mu      sync.Mutex
	clients map[string]*bmc.Client
}

func (p *BMCPower) client(h inventory.Host) (*bmc.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[h.Name]; c != nil {
		return c, nil
	}
	t, err := bmc.TargetFromHost(h)
	if err != nil {
		return nil, err
	}
	c, err := bmc.NewClient(t, p.Options)
	if err != nil {
		return nil, err
	}
	if p.clients == nil {
		p.clients = map[string]*bmc.Client{}
	}
	p.clients[h.Name] = c
	return c, nil
}

// Describe names the method.
func (p *BMCPower) Describe() string { return "BMC power off/on" }

// Off is a hard power off.
func (p *BMCPower) Off(ctx context.Context, h inventory.Host) error {
	c, err := p.client(h)
	if err != nil {
		return err
	}
	if _, err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		return fmt.Errorf("powering off %s: %w", h.Name, err)
	}
	return nil
}

// On powers the server on.
func (p *BMCPower) On(ctx context.Context, h inventory.Host) error {
	c, err := p.client(h)
	if err != nil {
		return err
	}
	if _, err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		return fmt.Errorf("powering on %s: %w", h.Name, err)
	}
	return nil
}

// SSHPower simulates the loss over SSH where no BMC is available: etcd is
// killed with SIGKILL (no graceful leader transfer) and held stopped; On
// starts it again. The server itself stays up.
type SSHPower struct {
	Manager *phase.Manager
}

// Describe names the method.
func (p *SSHPower) Describe() string { return "SSH: SIGKILL etcd and hold it stopped" }

func (p *SSHPower) host(h inventory.Host) (*phase.Host, error) {
	hs, err := p.Manager.Hosts(inventory.Selector{Servers: []string{h.Name}})
	if err != nil {
		return nil, err
	}
	return hs[0], nil
}

// Off kills etcd.
func (p *SSHPower) Off(ctx context.Context, h inventory.Host) error {
	x, err := p.host(h)
	if err != nil {
		return err
	}
	_, err = x.Sudo(ctx, "systemctl kill --signal=SIGKILL "+Unit+"; systemctl stop "+Unit)
	return err
}

// On starts etcd.
func (p *SSHPower) On(ctx context.Context, h inventory.Host) error {
	x, err := p.host(h)
	if err != nil {
		return err
	}
	return x.Systemctl(ctx, "start", "--no-block", Unit)
}

// DrillOptions configure the center-loss drill.
type DrillOptions struct {
	Cluster   *inventory.Cluster
	Placement *inventory.Placement
	Center    string
	Client    *Client
	Power     Power
	Logger    *slog.Logger
	// Hold is how long the center stays down after writes resumed
	// (default 3 s).
	Hold time.Duration
	// WriteTimeout bounds one write (default 1 s).
	WriteTimeout time.Duration
	// HealthTimeout bounds the wait for health after restoring.
	HealthTimeout time.Duration
	// Writers is the number of concurrent writers (default 1).
	Writers int
}

// DrillReport is what the drill measured.
type DrillReport struct {
	Center        string   `json:"center"`
	Method        string   `json:"method"`
	Stopped       []string `json:"stopped"`
	LeaderBefore  string   `json:"leaderBefore"`
	LeaderDuring  string   `json:"leaderDuring"`
	LeaderWasLost bool     `json:"leaderWasLost"`
	// ElectionTimeout is the configured raft election timeout.
	ElectionTimeout time.Duration `json:"electionTimeout"`
	// WriteGap is the longest time between two acknowledged writes from
	// the moment the center went down until it was restored.
	WriteGap time.Duration `json:"writeGap"`
	// ResumedAfter is the time from the end of the power-off until the
	// first write issued after it was acknowledged.
	ResumedAfter time.Duration `json:"resumedAfter"`
	// PowerOffTook is how long the power-off commands took.
	PowerOffTook time.Duration `json:"powerOffTook"`
	Acknowledged int           `json:"acknowledged"`
	Failed       int           `json:"failed"`
	// Lost counts acknowledged writes missing when read back: must be 0.
	Lost            int           `json:"lost"`
	RestoredHealthy time.Duration `json:"restoredHealthy"`
}

// ErrDrillFailed is wrapped when the drill lost writes or did not recover.
var ErrDrillFailed = errors.New("center-loss drill failed")

// Drill stops every etcd member of one center, measures how long until
// writes succeed again and that no acknowledged write was lost, then
// restores the center and waits for health.
func Drill(ctx context.Context, o DrillOptions) (*DrillReport, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hold <= 0 {
		o.Hold = 3 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = time.Second
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	if o.Writers <= 0 {
		o.Writers = 1
	}
	if o.Cluster.Center(o.Center) == nil {
		return nil, fmt.Errorf("no center named %q in the inventory", o.Center)
	}
	plan := o.Placement.Etcd.Members
	var victims []inventory.Host
	for _, m := range plan {
		if m.Center == o.Center {
			h, _ := o.Cluster.Host(m.Name)
			victims = append(victims, h)
		}
	}
	if len(victims) == 0 {
		return nil, fmt.Errorf("center %s holds no etcd member", o.Center)
	}
	rep := &DrillReport{Center: o.Center, Method: o.Power.Describe(),
		ElectionTimeout: time.Duration(o.Placement.Etcd.Timers.ElectionTimeoutMs) * time.Millisecond}
	h, err := o.Client.WaitHealthy(ctx, plan, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("the cluster must be healthy before the drill: %w", err)
	}
	rep.LeaderBefore = memberName(h, h.Leader)

	prefix := fmt.Sprintf("/tricenter/drill/%s/%d/", o.Center, time.Now().UnixNano())
	w := newWriter(o.Client.KV(), prefix, o.WriteTimeout, o.Writers)
	w.start(ctx)
	// Let the writer get going before the loss.
	if err := waitUntil(ctx, 10*time.Second, func() bool { return w.acked() >= 20 }); err != nil {
		w.stop()
		return nil, fmt.Errorf("writes did not start: %w", err)
	}
	o.Logger.Info("Stopping center", "center", o.Center, "members", len(victims), "method", rep.Method)
	down := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(victims))
	for i, v := range victims {
		rep.Stopped = append(rep.Stopped, v.Name)
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = o.Power.Off(ctx, v) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		w.stop()
		return rep, fmt.Errorf("stopping center %s: %w", o.Center, err)
	}
	offDone := time.Now()
	rep.PowerOffTook = offDone.Sub(down)
	// Writes resume when one issued after the loss succeeds.
	if err := waitUntil(ctx, rep.ElectionTimeout+30*time.Second, func() bool { return w.firstAckAfter(offDone) > 0 }); err != nil {
		w.stop()
		return rep, fmt.Errorf("%w: writes did not resume: %w", ErrDrillFailed, err)
	}
	rep.ResumedAfter = w.firstAckAfter(offDone)
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	if st := o.Client.Health(ctx, survivors(plan, o.Center)); st.Leader != 0 {
		rep.LeaderDuring = memberName(st, st.Leader)
	}
	rep.LeaderWasLost = rep.LeaderDuring != rep.LeaderBefore
	o.Logger.Info("Restoring center", "center", o.Center)
	up := time.Now()
	for i, v := range victims {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = o.Power.On(ctx, v) }()
	}
	wg.Wait()
	restoreErr := errors.Join(errs...)
	rep.WriteGap = w.maxGap(down, time.Now())
	if restoreErr == nil {
		_, restoreErr = o.Client.WaitHealthy(ctx, plan, o.HealthTimeout)
		rep.RestoredHealthy = time.Since(up)
	}
	w.stop()
	rep.Acknowledged, rep.Failed = w.acked(), w.failed()
	lost, err := w.verify(ctx)
	if err != nil {
		return rep, fmt.Errorf("reading the writes back: %w", err)
	}
	rep.Lost = lost
	if restoreErr != nil {
		return rep, fmt.Errorf("%w: restoring center %s: %w", ErrDrillFailed, o.Center, restoreErr)
	}
	if lost > 0 {
		return rep, fmt.Errorf("%w: %d acknowledged writes lost", ErrDrillFailed, lost)
	}
	return rep, nil
}

func survivors(plan []inventory.Member, center string) []inventory.Member {
	var out []inventory.Member
	for _, m := range plan {
		if m.Center != center {
			out = append(out, m)
		}
	}
	return out
}

func memberName(h *ClusterHealth, id uint64) string {
	for _, m := range h.Members {
		if m.ID == id {
			return m.Name
		}
	}
	return strconv.FormatUint(id, 16)
}

func waitUntil(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// writer writes a numbered sequence of keys and remembers which writes
// etcd acknowledged, and when.
type writer struct {
	kv      *clientv3.Client
	prefix  string
	timeout time.Duration
	n       int
	mu      sync.Mutex
	seq     int
	acks    map[int]time.Time // seq → when acknowledged
	issued  map[int]time.Time
	fails   int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newWriter(kv *clientv3.Client, prefix string, timeout time.Duration, n int) *writer {
	return &writer{kv: kv, prefix: prefix, timeout: timeout, n: n, acks: map[int]time.Time{}, issued: map[int]time.Time{}}
}

func key(prefix string, seq int) string { return fmt.Sprintf("%s%010d", prefix, seq) }

func (w *writer) start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	for range w.n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for ctx.Err() == nil {
				w.mu.Lock()
				w.seq++
				s := w.seq
				at := time.Now()
				w.issued[s] = at
				w.mu.Unlock()
				cctx, cancel := context.WithTimeout(ctx, w.timeout)
				_, err := w.kv.Put(cctx, key(w.prefix, s), strconv.Itoa(s))
				cancel()
				w.mu.Lock()
				if err == nil {
					w.acks[s] = time.Now()
				} else {
					w.fails++
				}
				w.mu.Unlock()
				if err != nil {
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
}

func (w *writer) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
}

func (w *writer) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

func (w *writer) failed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fails
}

// firstAckAfter is the time from t to the acknowledgement of the first
// write issued after t, or 0.
func (w *writer) firstAckAfter(t time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best time.Time
	for s, at := range w.acks {
		if w.issued[s].After(t) && (best.IsZero() || at.Before(best)) {
			best = at
		}
	}
	if best.IsZero() {
		return 0
	}
	return best.Sub(t)
}

// maxGap is the longest interval without an acknowledgement in [from, to].
func (w *writer) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	var ts []time.Time
	for _, at := range w.acks {
		if !at.Before(from) && !at.After(to) {
			ts = append(ts, at)
		}
	}
	w.mu.Unlock()
	sortTimes(ts)
	prev, gap := from, time.Duration(0)
	for _, t := range ts {
		if d := t.Sub(prev); d > gap {
			gap = d
		}
		prev = t
	}
	if d := to.Sub(prev); d > gap {
		gap = d
	}
	return gap
}

func sortTimes(ts []time.Time) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
}

// verify reads the prefix back (a linearizable read) and counts
// acknowledged writes that are missing or wrong.
func (w *writer) verify(ctx context.Context) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := w.kv.Get(cctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	have := map[string]string{}
	for _, kv := range r.Kvs {
		have[string(kv.Key)] = string(kv.Value)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lost := 0
	for s := range w.acks {
		if have[key(w.prefix, s)] != strconv.Itoa(s) {
			lost++
		}
	}
	return lost, nil
}
