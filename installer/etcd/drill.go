package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Power takes a server down and brings it back, for the drill.
type Power interface {
	// Off takes the server down as in a center loss; when it returns nil
	// the server is down.
	Off(ctx context.Context, h inventory.Host) error
	// On brings it back (a no-op for a server that is up).
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

// SSHPower stands in for a power cut where no BMC is available: etcd is
// killed with SIGKILL (no graceful leader transfer) and held stopped; On
// starts it again. It is not a power cut: the server stays up, its kernel
// closes the member's connections at once (so clients fail over faster
// than after a real loss) and only etcd members are touched.
type SSHPower struct {
	Manager *phase.Manager
}

// Describe names the method.
func (p *SSHPower) Describe() string {
	return "SSH: SIGKILL etcd and hold it stopped (not a power cut: the servers stay up)"
}

// StopsOnlyEtcd reports that SSHPower stops etcd, not the server.
func (p *SSHPower) StopsOnlyEtcd() bool { return true }

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

// EtcdOnly is implemented by a Power that does not cut a server's power
// but only stops its etcd member (SSHPower): the drill then takes down the
// center's etcd members only, and its report says it was no power cut.
type EtcdOnly interface {
	StopsOnlyEtcd() bool
}

// Probe is a check run periodically while a center is lost, so other
// components (the Kubernetes API through its VIP, ...) can measure their
// own disturbance during the drill. Check must honour ctx's deadline.
type Probe interface {
	Name() string
	Check(ctx context.Context) error
}

// ProbeReport is what one probe saw from the loss until the center was
// healthy again (or the drill ended).
type ProbeReport struct {
	Name     string `json:"name"`
	Attempts int    `json:"attempts"`
	Failures int    `json:"failures"`
	// MaxGap is the longest time without a successful check.
	MaxGap    time.Duration `json:"maxGap"`
	LastError string        `json:"lastError,omitempty"`
	// Errors are the kinds of failure seen, in the order they first
	// appeared, with when and how often.
	Errors []ProbeError `json:"errors,omitempty"`
}

// ProbeError is one kind of failed check.
type ProbeError struct {
	// Error is the failure in short: its first line, or the failing
	// checks ("[-]...") of a /readyz answer.
	Error string    `json:"error"`
	Count int       `json:"count"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// errorKind shortens a probe failure to what tells failures apart.
func errorKind(err error) string {
	msg := err.Error()
	var failing []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "[-]") {
			failing = append(failing, l)
		}
	}
	if len(failing) > 0 {
		head, _, _ := strings.Cut(msg, ":")
		return head + ": " + strings.Join(failing, " ")
	}
	first, _, _ := strings.Cut(msg, "\n")
	if len(first) > 200 {
		first = first[:200] + "..."
	}
	return first
}

func (r *ProbeReport) record(err error, at time.Time) {
	kind := errorKind(err)
	for i := range r.Errors {
		if r.Errors[i].Error == kind {
			r.Errors[i].Count++
			r.Errors[i].Last = at
			return
		}
	}
	r.Errors = append(r.Errors, ProbeError{Error: kind, Count: 1, First: at, Last: at})
}

// Drill defaults.
const (
	// DefaultDrillHealthTimeout bounds the wait for health after the
	// center is powered back on: real servers take minutes to boot.
	DefaultDrillHealthTimeout = 10 * time.Minute
	// DefaultRestoreTimeout bounds powering the center's servers back on
	// (the On calls and their retries).
	DefaultRestoreTimeout = 2 * time.Minute
	// DefaultProbeInterval is the time between two checks of a probe.
	DefaultProbeInterval = 250 * time.Millisecond
	// DrillKeysTimeout bounds deleting the drill's keys at its end.
	DrillKeysTimeout = 10 * time.Second
)

// Methods a drill journal records (state.DrillJournal.Method): how the
// servers were taken down, hence how drill resume brings them back.
const (
	// MethodBMC: powered off through the BMCs (BMCPower).
	MethodBMC = "bmc"
	// MethodSSH: etcd stopped over SSH (SSHPower).
	MethodSSH = "ssh"
)

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
	// ResumeTimeout bounds the wait for writes to resume after the loss
	// (default: the election timeout + 30 s).
	ResumeTimeout time.Duration
	// RestoreTimeout bounds powering the center back on
	// (DefaultRestoreTimeout).
	RestoreTimeout time.Duration
	// HealthTimeout bounds the wait for health after restoring
	// (DefaultDrillHealthTimeout).
	HealthTimeout time.Duration
	// Writers is the number of concurrent writers through each member
	// outside the center (default 1). Each writer keeps to one member, so
	// the write gap measures the cluster: a client balancing over every
	// endpoint keeps sending to a powered-off member until its keepalive
	// gives up on the connection, and each of those writes waits out
	// WriteTimeout.
	Writers int
	// Probes are checked every ProbeInterval (DefaultProbeInterval) from
	// the loss until the center is healthy again.
	Probes        []Probe
	ProbeInterval time.Duration
	// Abandon, once closed, gives up the restore (the CLI's second
	// Ctrl-C): the report then lists the servers that may still be off.
	// Cancelling ctx does not stop the restore: it runs under its own
	// context and deadlines.
	Abandon <-chan struct{}
	// Journal, when set, is the state directory where the drill keeps its
	// journal (state.DrillJournal): written before the first power-off,
	// updated as servers come back on, removed once every server is back,
	// so that ResumeDrill can bring back what a killed drill left down.
	// The drill holds the directory's drill lock while it runs and refuses
	// to start while a journal exists (ErrDrillJournal).
	Journal *state.Dir
	// Method is what the journal records: MethodBMC or MethodSSH
	// (default: MethodSSH for a Power that only stops etcd, MethodBMC
	// otherwise).
	Method string
}

// DrillServer is one server of the lost center.
type DrillServer struct {
	Name       string `json:"name"`
	EtcdMember bool   `json:"etcdMember"`
	// OffAt is when its power-off was confirmed (the server was down no
	// later than that); zero when the power-off failed.
	OffAt    time.Time `json:"offAt,omitzero"`
	OffError string    `json:"offError,omitempty"`
	// PoweredOn says the restore's power-on succeeded, at OnAt.
	PoweredOn bool      `json:"poweredOn"`
	OnAt      time.Time `json:"onAt,omitzero"`
	OnError   string    `json:"onError,omitempty"`
}

// DrillReport is what the drill measured.
type DrillReport struct {
	Center string `json:"center"`
	Method string `json:"method"`
	// PowerCut is false when the method only stops etcd (SSH).
	PowerCut bool   `json:"powerCut"`
	Note     string `json:"note,omitempty"`
	// Servers are the servers taken down: every server of the center for
	// a power cut, its etcd members otherwise.
	Servers []DrillServer `json:"servers"`
	// Stopped names the servers the drill tried to take down.
	Stopped       []string `json:"stopped"`
	LeaderBefore  string   `json:"leaderBefore"`
	LeaderDuring  string   `json:"leaderDuring"`
	LeaderWasLost bool     `json:"leaderWasLost"`
	// ElectionTimeout is the configured raft election timeout.
	ElectionTimeout time.Duration `json:"electionTimeout"`
	// LossAt is when the first server of the center was confirmed down.
	LossAt time.Time `json:"lossAt,omitzero"`
	// PowerOffTook is the time from issuing the first power-off until the
	// last one returned.
	PowerOffTook time.Duration `json:"powerOffTook"`
	// ResumedAfter is the time from LossAt until the first write issued
	// after every etcd member of the center was down was acknowledged.
	ResumedAfter time.Duration `json:"resumedAfter"`
	// WriteGap is the longest time between two acknowledged writes from
	// the first power-off until the center was powered back on.
	WriteGap time.Duration `json:"writeGap"`
	// RejoinWriteGap is the longest time between two acknowledged writes
	// from power-on until Hold after the cluster was healthy again (or
	// until the restore ended).
	RejoinWriteGap time.Duration `json:"rejoinWriteGap"`
	// Acknowledged and Failed count the writes through the members
	// outside the center.
	Acknowledged int `json:"acknowledged"`
	Failed       int `json:"failed"`
	// Verified says every acknowledged write was read back; otherwise
	// NotVerified says why and Lost means nothing.
	Verified    bool   `json:"verified"`
	NotVerified string `json:"notVerified,omitempty"`
	// Lost counts acknowledged writes missing when read back: must be 0.
	Lost int `json:"lost"`
	// Restored says the restore ran; PoweredBackOn and StillOff list the
	// servers it powered on and those that may still be off.
	Restored      bool     `json:"restored"`
	PoweredBackOn []string `json:"poweredBackOn"`
	StillOff      []string `json:"stillOff,omitempty"`
	// RestoreAbandoned: the restore was given up (Abandon closed).
	RestoreAbandoned bool `json:"restoreAbandoned,omitempty"`
	// Healthy: the cluster was healthy again after the restore, at
	// RestoredHealthy after power-on.
	Healthy         bool          `json:"healthy"`
	RestoredHealthy time.Duration `json:"restoredHealthy"`
	RestoreError    string        `json:"restoreError,omitempty"`
	// LeaderHome is where the leader was once the restored cluster was
	// healthy and, when it was outside production while production was
	// healthy (the drill took production down), moved back there
	// (LeaderHome in this package decides). LeaderMovedFrom names the
	// member it left ("member (center)"), LeaderMoveTook the move and the
	// wait for health after it; LeaderMoveError why the move failed.
	LeaderHome      *LeaderPlacement `json:"leaderHome,omitempty"`
	LeaderMovedFrom string           `json:"leaderMovedFrom,omitempty"`
	LeaderMoveTook  time.Duration    `json:"leaderMoveTook,omitempty"`
	LeaderMoveError string           `json:"leaderMoveError,omitempty"`
	Probes          []ProbeReport    `json:"probes,omitempty"`
	// Keys is the prefix of the drill's writes; KeysDeleted says they were
	// deleted once read back, KeysError why not.
	Keys        string `json:"keys"`
	KeysDeleted bool   `json:"keysDeleted"`
	KeysError   string `json:"keysError,omitempty"`
	// Journal is the drill journal's path (DrillOptions.Journal);
	// JournalKept says it was left for drill resume because servers may
	// still be down.
	Journal     string `json:"journal,omitempty"`
	JournalKept bool   `json:"journalKept,omitempty"`
}

// MarshalJSON writes lost as null unless the writes were read back, so
// a consumer of -o json cannot mistake "not checked" for "0 lost".
func (r DrillReport) MarshalJSON() ([]byte, error) {
	type plain DrillReport
	var lost *int
	if r.Verified {
		lost = &r.Lost
	}
	return json.Marshal(struct {
		plain
		Lost *int `json:"lost"`
	}{plain(r), lost})
}

// ErrDrillFailed is wrapped when the drill lost writes or did not recover.
var ErrDrillFailed = errors.New("center-loss drill failed")

// ErrRestoreAbandoned is wrapped when the restore was given up.
var ErrRestoreAbandoned = errors.New("restore abandoned")

// ErrDrillJournal is wrapped when a drill journal exists: an earlier drill
// ended (was killed) before it confirmed every server back on.
var ErrDrillJournal = errors.New("an earlier drill left its journal")

// drillCluster is what the drill needs from etcd (a *Client; fakes in
// unit tests).
type drillCluster interface {
	WaitHealthy(ctx context.Context, plan []inventory.Member, timeout time.Duration) (*ClusterHealth, error)
	Health(ctx context.Context, plan []inventory.Member) *ClusterHealth
	// Put writes through one member (its client URL only).
	Put(ctx context.Context, via inventory.Member, key, value string) error
	GetPrefix(ctx context.Context, prefix string) (map[string]string, error)
	// DeletePrefix deletes every key under prefix.
	DeletePrefix(ctx context.Context, prefix string) (int64, error)
	// MoveLeader brings the leader home after the restore.
	MoveLeader(ctx context.Context, leaderEndpoint string, to uint64) error
}

type clientCluster struct{ *Client }

func (c clientCluster) Put(ctx context.Context, via inventory.Member, key, value string) error {
	one, err := c.single(ClientURL(via.Address))
	if err != nil {
		return err
	}
	_, err = one.Put(ctx, key, value)
	return err
}

func (c clientCluster) GetPrefix(ctx context.Context, prefix string) (map[string]string, error) {
	r, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(r.Kvs))
	for _, kv := range r.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, nil
}

func (c clientCluster) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	r, err := c.cli.Delete(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	return r.Deleted, nil
}

// Drill takes one center down while writes go on — every server of it
// through its BMC, or only its etcd members when the Power only stops
// etcd — measures how long until writes succeed again, restores the
// center, waits for health and reads every acknowledged write back.
//
// Once anything was powered off, the restore runs on every path (a
// failed power-off, writes that never resume, a cancelled ctx) under its
// own context and deadlines; only closing o.Abandon gives it up. The
// report always says what was restored and what was verified.
func Drill(ctx context.Context, o DrillOptions) (*DrillReport, error) {
	if o.Client == nil {
		return nil, errors.New("drill: no etcd client")
	}
	return drill(ctx, o, clientCluster{o.Client})
}

func (o *DrillOptions) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hold <= 0 {
		o.Hold = 3 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = time.Second
	}
	if o.RestoreTimeout <= 0 {
		o.RestoreTimeout = DefaultRestoreTimeout
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultDrillHealthTimeout
	}
	if o.Writers <= 0 {
		o.Writers = 1
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
}

// DrillServers are the servers a drill of o.Center takes down with
// o.Power: every server of the center, or only its etcd members when the
// Power only stops etcd (EtcdOnly). It is what the CLI shows before asking
// for confirmation.
func DrillServers(o DrillOptions) ([]inventory.Host, error) {
	if o.Cluster.Center(o.Center) == nil {
		return nil, fmt.Errorf("no center named %q in the inventory", o.Center)
	}
	hosts, _, err := victims(o, stopsOnlyEtcd(o.Power))
	return hosts, err
}

func stopsOnlyEtcd(p Power) bool {
	eo, ok := p.(EtcdOnly)
	return ok && eo.StopsOnlyEtcd()
}

// CheckDrillJournal returns an error wrapping state.ErrDrillRunning while
// a drill or drill resume of the cluster runs, and one wrapping
// ErrDrillJournal when the state directory holds a drill journal (a drill
// was killed before it brought every server back), naming it and what it
// left down.
func CheckDrillJournal(d *state.Dir) error {
	unlock, err := d.LockDrill()
	if err != nil {
		return err
	}
	unlock()
	return checkJournal(d)
}

// checkJournal is CheckDrillJournal for a caller holding the drill lock.
func checkJournal(d *state.Dir) error {
	j, err := d.DrillJournal()
	if err != nil || j == nil {
		return err
	}
	pending := "none"
	if p := j.Pending(); len(p) > 0 {
		pending = strings.Join(p, ", ")
	}
	return fmt.Errorf("%w: %s: the drill of %s did not confirm back on: %s: resume it (drill resume) before starting another drill",
		ErrDrillJournal, d.DrillJournalPath(), j.Describe(), pending)
}

// journal keeps the drill journal up to date as servers come back.
type journal struct {
	dir *state.Dir
	log *slog.Logger
	mu  sync.Mutex
	j   state.DrillJournal
}

func (jr *journal) write() error {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	return jr.dir.WriteDrillJournal(&jr.j)
}

// restored records a server confirmed back on; a failed update is logged
// (the restore goes on: the journal then names a server that is back).
func (jr *journal) restored(name string) {
	if jr == nil {
		return
	}
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if !slices.Contains(jr.j.Restored, name) {
		jr.j.Restored = append(jr.j.Restored, name)
	}
	if err := jr.dir.WriteDrillJournal(&jr.j); err != nil {
		jr.log.Warn("Drill journal not updated", "server", name, "journal", jr.dir.DrillJournalPath(), "error", err)
	}
}

// finish removes the journal when every server is back, and reports
// whether it did.
func (jr *journal) finish(stillOff []string) bool {
	if len(stillOff) > 0 {
		jr.log.Warn("Drill journal kept: servers may still be down", "journal", jr.dir.DrillJournalPath(), "servers", stillOff)
		return false
	}
	if err := jr.dir.RemoveDrillJournal(); err != nil {
		jr.log.Warn("Drill journal not removed", "journal", jr.dir.DrillJournalPath(), "error", err)
		return false
	}
	return true
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// deleteKeys deletes the drill's writes, under its own deadline (whatever
// happened to ctx).
func deleteKeys(ctx context.Context, cl drillCluster, prefix string, log *slog.Logger) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DrillKeysTimeout)
	defer cancel()
	n, err := cl.DeletePrefix(dctx, prefix)
	if err != nil {
		log.Warn("Drill keys not deleted", "prefix", prefix, "error", err)
		return fmt.Errorf("deleting the drill keys under %s: %w", prefix, err)
	}
	log.Debug("Drill keys deleted", "prefix", prefix, "keys", n)
	return nil
}

// victims are the servers the drill takes down: the whole center for a
// power cut, its etcd members when the power only stops etcd.
func victims(o DrillOptions, etcdOnly bool) ([]inventory.Host, map[string]bool, error) {
	members := map[string]bool{}
	for _, m := range o.Placement.Etcd.Members {
		if m.Center == o.Center {
			members[m.Name] = true
		}
	}
	if len(members) == 0 {
		return nil, nil, fmt.Errorf("center %s holds no etcd member: choose a center with one", o.Center)
	}
	hosts, err := o.Cluster.Select(inventory.Selector{Centers: []string{o.Center}})
	if err != nil {
		return nil, nil, err
	}
	var out []inventory.Host
	for _, h := range hosts {
		if !etcdOnly || members[h.Name] {
			out = append(out, h)
		}
	}
	return out, members, nil
}

func drill(ctx context.Context, o DrillOptions, cl drillCluster) (*DrillReport, error) {
	o.setDefaults()
	started := time.Now()
	if o.Cluster.Center(o.Center) == nil {
		return nil, fmt.Errorf("no center named %q in the inventory", o.Center)
	}
	etcdOnly := stopsOnlyEtcd(o.Power)
	hosts, members, err := victims(o, etcdOnly)
	if err != nil {
		return nil, err
	}
	if o.Method == "" {
		o.Method = MethodBMC
		if etcdOnly {
			o.Method = MethodSSH
		}
	}
	if o.Journal != nil {
		unlock, err := o.Journal.LockDrill()
		if err != nil {
			return nil, err
		}
		defer unlock()
		if err := checkJournal(o.Journal); err != nil {
			return nil, err
		}
	}
	plan := o.Placement.Etcd.Members
	rep := &DrillReport{Center: o.Center, Method: o.Power.Describe(), PowerCut: !etcdOnly,
		ElectionTimeout: time.Duration(o.Placement.Etcd.Timers.ElectionTimeoutMs) * time.Millisecond}
	if etcdOnly {
		rep.Note = "only etcd was stopped on the center's members; the servers stayed up, so this is not a power cut " +
			"(their kernels closed connections at once, which a dead server does not do)"
	}
	for _, h := range hosts {
		rep.Servers = append(rep.Servers, DrillServer{Name: h.Name, EtcdMember: members[h.Name]})
		rep.Stopped = append(rep.Stopped, h.Name)
	}
	h, err := cl.WaitHealthy(ctx, plan, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("the cluster must be healthy before the drill: %w", err)
	}
	rep.LeaderBefore = memberName(h, h.Leader)

	prefix := fmt.Sprintf("/tricenter/drill/%s/%d/", o.Center, time.Now().UnixNano())
	rep.Keys = prefix
	w := newWriter(cl, prefix, o.WriteTimeout, o.Writers, survivors(plan, o.Center), o.Logger)
	// The writes go on through the restore (the rejoin is measured too),
	// whatever happens to ctx.
	w.start(context.WithoutCancel(ctx))
	defer w.stop()
	// The keys go once read back; on the paths that end earlier, here.
	keysDeleted := false
	defer func() {
		if !keysDeleted {
			w.stop()
			_ = deleteKeys(ctx, cl, prefix, o.Logger)
		}
	}()
	if err := waitUntil(ctx, 10*time.Second, func() bool { return w.acked() >= 20 }); err != nil {
		return nil, fmt.Errorf("writes did not start: %w", err)
	}

	var jr *journal
	if o.Journal != nil {
		jr = &journal{dir: o.Journal, log: o.Logger, j: state.DrillJournal{Center: o.Center, Method: o.Method,
			Servers: rep.Stopped, Restored: []string{}, Keys: prefix, PID: os.Getpid(), Host: hostname(), Started: started}}
		o.Logger.Info("Writing the drill journal", "journal", o.Journal.DrillJournalPath())
		if err := jr.write(); err != nil {
			return nil, fmt.Errorf("%w: nothing was taken down", err)
		}
		rep.Journal = o.Journal.DrillJournalPath()
	}

	o.Logger.Info("Stopping center", "center", o.Center, "servers", len(hosts), "method", rep.Method)
	down := time.Now()
	probes := startProbes(context.WithoutCancel(ctx), o.Probes, o.ProbeInterval, o.WriteTimeout)
	outage := powerOff(ctx, o.Power, hosts, rep)
	rep.PowerOffTook = time.Since(down)
	for _, s := range rep.Servers {
		if !s.OffAt.IsZero() && (rep.LossAt.IsZero() || s.OffAt.Before(rep.LossAt)) {
			rep.LossAt = s.OffAt
		}
	}
	if outage == nil {
		outage = measureOutage(ctx, o, cl, w, rep, plan)
	}

	// From here on the restore runs whatever happened.
	up := time.Now()
	healthyAt, restoreErr := restore(ctx, o, cl, hosts, rep, plan, jr)
	if jr != nil {
		rep.JournalKept = !jr.finish(rep.StillOff)
	}
	if !healthyAt.IsZero() && ctx.Err() == nil {
		// A member that rejoins can still disturb the cluster (an
		// election it forces): keep measuring for Hold after health.
		select {
		case <-time.After(o.Hold):
		case <-ctx.Done():
		}
	}
	end := time.Now()
	rep.WriteGap = w.maxGap(down, up)
	rep.RejoinWriteGap = w.maxGap(up, end)
	from := rep.LossAt
	if from.IsZero() {
		from = down
	}
	rep.Probes = probes.stop(from, end)
	w.stop()
	rep.Acknowledged, rep.Failed = w.acked(), w.failed()
	var lost int
	var verr error
	if abandoned(o.Abandon) {
		verr = ErrRestoreAbandoned
		rep.NotVerified = "the restore was abandoned before the writes were read back"
	} else {
		verifyCtx, cancel := abandonable(context.WithoutCancel(ctx), 30*time.Second, o.Abandon)
		lost, verr = w.verify(verifyCtx)
		cancel()
	}
	switch {
	case rep.NotVerified != "":
	case verr != nil:
		rep.NotVerified = "reading the writes back failed: " + verr.Error()
	default:
		rep.Verified, rep.Lost = true, lost
	}
	keysDeleted = true
	if err := deleteKeys(ctx, cl, prefix, o.Logger); err != nil {
		rep.KeysError = err.Error()
	} else {
		rep.KeysDeleted = true
	}

	var errs []error
	if outage != nil {
		errs = append(errs, outage)
	}
	if restoreErr != nil {
		errs = append(errs, restoreErr)
	}
	switch {
	case rep.RestoreAbandoned:
		// The restore error says it; the report says what was not verified.
	case verr != nil:
		errs = append(errs, fmt.Errorf("%w: acknowledged writes not verified: reading them back: %w", ErrDrillFailed, verr))
	case lost > 0:
		errs = append(errs, fmt.Errorf("%w: %d acknowledged writes lost", ErrDrillFailed, lost))
	}
	return rep, errors.Join(errs...)
}

// powerOff takes every host down at once and records when each was
// confirmed down.
func powerOff(ctx context.Context, p Power, hosts []inventory.Host, rep *DrillReport) error {
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Off(ctx, h); err != nil {
				errs[i] = fmt.Errorf("taking %s down: %w", h.Name, err)
				rep.Servers[i].OffError = err.Error()
				return
			}
			rep.Servers[i].OffAt = time.Now()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: stopping center %s: %w", ErrDrillFailed, rep.Center, err)
	}
	return nil
}

// measureOutage waits until writes resume after the loss, holds the
// center down and records the leader the survivors elected.
func measureOutage(ctx context.Context, o DrillOptions, cl drillCluster, w *writer, rep *DrillReport, plan []inventory.Member) error {
	limit := o.ResumeTimeout
	if limit <= 0 {
		limit = rep.ElectionTimeout + 30*time.Second
	}
	// Only a write issued once every etcd member of the center was down
	// proves the survivors took over; the time counts from the loss.
	var membersDown time.Time
	for _, s := range rep.Servers {
		if s.EtcdMember && s.OffAt.After(membersDown) {
			membersDown = s.OffAt
		}
	}
	if err := waitUntil(ctx, limit, func() bool { return !w.firstAckAfter(membersDown).IsZero() }); err != nil {
		return fmt.Errorf("%w: writes did not resume after losing center %s: %w", ErrDrillFailed, rep.Center, err)
	}
	rep.ResumedAfter = w.firstAckAfter(membersDown).Sub(rep.LossAt)
	o.Logger.Info("Writes resumed", "center", o.Center, "after", rep.ResumedAfter)
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
		return fmt.Errorf("holding center %s down: %w", rep.Center, ctx.Err())
	}
	if st := cl.Health(ctx, survivors(plan, o.Center)); st.Leader != 0 {
		rep.LeaderDuring = memberName(st, st.Leader)
	}
	rep.LeaderWasLost = rep.LeaderDuring != rep.LeaderBefore
	return nil
}

// abandonable is a context with its own deadline that Abandon cancels.
func abandonable(parent context.Context, limit time.Duration, abandon <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, limit)
	if abandon == nil {
		return ctx, cancel
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-abandon:
			cancel()
		case <-stop:
		case <-ctx.Done():
		}
	}()
	return ctx, func() { close(stop); cancel() }
}

func abandoned(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// restore powers every host of the center back on (retrying each for the
// restore deadline) and waits until the cluster is healthy. It ignores
// ctx's cancellation: only o.Abandon stops it.
func restore(ctx context.Context, o DrillOptions, cl drillCluster, hosts []inventory.Host, rep *DrillReport, plan []inventory.Member, jr *journal) (healthyAt time.Time, _ error) {
	rep.Restored = true
	base := context.WithoutCancel(ctx)
	o.Logger.Info("Restoring center", "center", o.Center, "servers", len(hosts))
	rctx, cancel := abandonable(base, o.RestoreTimeout, o.Abandon)
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = powerOn(rctx, o.Power, h)
			if errs[i] != nil {
				rep.Servers[i].OnError = errs[i].Error()
				return
			}
			rep.Servers[i].PoweredOn, rep.Servers[i].OnAt = true, time.Now()
			jr.restored(h.Name)
		}()
	}
	wg.Wait()
	cancel()
	for _, s := range rep.Servers {
		if s.PoweredOn {
			rep.PoweredBackOn = append(rep.PoweredBackOn, s.Name)
		} else {
			rep.StillOff = append(rep.StillOff, s.Name)
		}
	}
	if abandoned(o.Abandon) {
		rep.RestoreAbandoned = true
		rep.RestoreError = "restore abandoned"
		return time.Time{}, fmt.Errorf("%w: %w: center %s: servers that may still be off: %v", ErrDrillFailed, ErrRestoreAbandoned, o.Center, rep.StillOff)
	}
	if err := errors.Join(errs...); err != nil {
		rep.RestoreError = err.Error()
		return time.Time{}, fmt.Errorf("%w: restoring center %s: %w", ErrDrillFailed, o.Center, err)
	}
	up := time.Now()
	hctx, cancel := abandonable(base, o.HealthTimeout, o.Abandon)
	defer cancel()
	h, err := cl.WaitHealthy(hctx, plan, o.HealthTimeout)
	if err != nil {
		if abandoned(o.Abandon) {
			rep.RestoreAbandoned = true
			rep.RestoreError = "restore abandoned while waiting for health"
			return time.Time{}, fmt.Errorf("%w: %w: center %s powered back on but not yet healthy", ErrDrillFailed, ErrRestoreAbandoned, o.Center)
		}
		rep.RestoreError = err.Error()
		return time.Time{}, fmt.Errorf("%w: center %s powered back on but the cluster did not become healthy: %w", ErrDrillFailed, o.Center, err)
	}
	healthyAt = time.Now()
	rep.Healthy, rep.RestoredHealthy = true, healthyAt.Sub(up)
	o.Logger.Info("Center restored", "center", o.Center, "healthyAfter", rep.RestoredHealthy)
	return healthyAt, leaderBack(base, o, cl, h, rep, plan)
}

// leaderBack moves the leader back into production after the restore
// when it is elsewhere and production is healthy: after production was
// the center lost, the survivors' leader is in a DR center.
func leaderBack(base context.Context, o DrillOptions, cl drillCluster, h *ClusterHealth, rep *DrillReport, plan []inventory.Member) error {
	ctx, cancel := abandonable(base, o.HealthTimeout, o.Abandon)
	defer cancel()
	before := LeaderHome(o.Cluster, plan, h)
	mv, _, err := MoveLeaderHome(ctx, cl, o.Cluster, plan, h, o.HealthTimeout, o.Logger)
	rep.LeaderHome = &mv.After
	if mv.Moved != "" {
		rep.LeaderMovedFrom, rep.LeaderMoveTook = before.At(), mv.Took
	}
	if err != nil {
		rep.LeaderMoveError = err.Error()
		return fmt.Errorf("center %s restored and healthy, but the leader did not come back into production: %w", o.Center, err)
	}
	return nil
}

// powerOn retries a failed power-on until ctx ends (a BMC may be busy
// right after a power-off).
func powerOn(ctx context.Context, p Power, h inventory.Host) error {
	for {
		err := p.On(ctx, h)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("powering %s back on: %w", h.Name, err)
		case <-time.After(time.Second):
		}
	}
}

// probeRun runs the probes until stopped.
type probeRun struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	reps   []ProbeReport
	oks    [][]time.Time
}

func startProbes(ctx context.Context, ps []Probe, every, timeout time.Duration) *probeRun {
	r := &probeRun{reps: make([]ProbeReport, len(ps)), oks: make([][]time.Time, len(ps))}
	ctx, r.cancel = context.WithCancel(ctx)
	for i, p := range ps {
		r.reps[i].Name = p.Name()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				cctx, cancel := context.WithTimeout(ctx, timeout)
				err := p.Check(cctx)
				cancel()
				if ctx.Err() != nil {
					return
				}
				r.mu.Lock()
				r.reps[i].Attempts++
				if err != nil {
					r.reps[i].Failures++
					r.reps[i].LastError = err.Error()
					r.reps[i].record(err, time.Now())
				} else {
					r.oks[i] = append(r.oks[i], time.Now())
				}
				r.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	return r
}

// stop ends the probes and reports them; MaxGap is measured in [from, to].
func (r *probeRun) stop(from, to time.Time) []ProbeReport {
	r.cancel()
	r.wg.Wait()
	if len(r.reps) == 0 {
		return nil
	}
	for i := range r.reps {
		r.reps[i].MaxGap = maxGap(r.oks[i], from, to)
	}
	return r.reps
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
	kv      drillCluster
	prefix  string
	timeout time.Duration
	n       int
	via     []inventory.Member
	log     *slog.Logger
	mu      sync.Mutex
	seq     int
	acks    map[int]time.Time // seq → when acknowledged
	issued  map[int]time.Time
	fails   int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// newWriter writes with n writers through each member of via.
func newWriter(kv drillCluster, prefix string, timeout time.Duration, n int, via []inventory.Member, log *slog.Logger) *writer {
	return &writer{kv: kv, prefix: prefix, timeout: timeout, n: n, via: via, log: log,
		acks: map[int]time.Time{}, issued: map[int]time.Time{}}
}

func key(prefix string, seq int) string { return fmt.Sprintf("%s%010d", prefix, seq) }

func (w *writer) start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	for i := range w.n * len(w.via) {
		m := w.via[i%len(w.via)]
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
				err := w.kv.Put(cctx, m, key(w.prefix, s), strconv.Itoa(s))
				cancel()
				w.mu.Lock()
				switch {
				case err == nil:
					w.acks[s] = time.Now()
				case ctx.Err() == nil:
					// A write cut short by stop is no failure.
					w.fails++
					w.log.Debug("Drill write failed", "via", m.Name, "took", time.Since(at).Round(time.Millisecond), "error", err)
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

// firstAckAfter is when the first write issued after t was
// acknowledged, or the zero time.
func (w *writer) firstAckAfter(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best time.Time
	for s, at := range w.acks {
		if w.issued[s].After(t) && (best.IsZero() || at.Before(best)) {
			best = at
		}
	}
	return best
}

// maxGap is the longest interval without an acknowledgement in [from, to].
func (w *writer) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	ts := make([]time.Time, 0, len(w.acks))
	for _, at := range w.acks {
		ts = append(ts, at)
	}
	w.mu.Unlock()
	return maxGap(ts, from, to)
}

// maxGap is the longest interval in [from, to] that holds none of ts.
func maxGap(ts []time.Time, from, to time.Time) time.Duration {
	var in []time.Time
	for _, t := range ts {
		if !t.Before(from) && !t.After(to) {
			in = append(in, t)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Before(in[j]) })
	prev, gap := from, time.Duration(0)
	for _, t := range in {
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

// verify reads the prefix back (a linearizable read) and counts
// acknowledged writes that are missing or wrong.
func (w *writer) verify(ctx context.Context) (int, error) {
	have, err := w.kv.GetPrefix(ctx, w.prefix)
	if err != nil {
		return 0, err
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
