package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Defaults for Options.
const (
	DefaultHealthTimeout = 2 * time.Minute
	DefaultMaxClockSkew  = 2 * time.Second
	DefaultMinFreeDisk   = 1 << 30
	// DefaultPromoteTimeout bounds how long a learner may take to catch up.
	DefaultPromoteTimeout = 2 * time.Minute
)

// Options configure Apply.
type Options struct {
	Cluster   *inventory.Cluster
	Placement *inventory.Placement
	// Prior names the members of the last apply, so servers that left the
	// plan are found and retired.
	Prior     *inventory.Prior
	PKI       *pki.Etcd
	Artifacts artifacts.Source
	// Manager runs the phases of Apply; Manager.DryRun makes it a plan.
	// (New's phases run on whatever manager the caller gives them.)
	Manager       *phase.Manager
	Logger        *slog.Logger
	HealthTimeout time.Duration
	MaxClockSkew  time.Duration
	MinFreeDisk   int64
	// Dial, when set, opens the client connections to etcd (e.g. through
	// the jump hosts); default: direct TCP.
	Dial DialFunc
	// AcceptTransientRisk lets an apply run a membership plan that passes
	// through states where the loss of one center loses quorum
	// (Result.Risks); without it such an apply fails before any membership
	// change. A dry run always plans and shows the risk.
	AcceptTransientRisk bool
	// Restore rebuilds etcd from this snapshot on every planned member
	// (etcd/restore), after a loss of quorum only: while any member
	// serves a linearizable read the run refuses (ErrQuorumAnswers).
	Restore *RestoreSource
}

// Result says what Apply did (or, in a dry run, would do).
type Result struct {
	// Bootstrap is true when a new cluster is (or would be) created.
	Bootstrap bool `json:"bootstrap"`
	// Membership is the voting membership before the steps.
	Membership *Voting `json:"membership,omitempty"`
	// Steps are the membership changes, in order, each with the voting
	// membership after it.
	Steps []Step `json:"steps,omitempty"`
	// Risks are the windows of the steps during which the loss of one
	// center would lose quorum.
	Risks []Risk `json:"risks,omitempty"`
	// Restarts lists members restarted (one at a time) for a changed
	// binary, certificate or setting.
	Restarts []string `json:"restarts,omitempty"`
	// Retired lists servers whose etcd was stopped and wiped.
	Retired []string `json:"retired,omitempty"`
	// Restored lists the members whose data was rebuilt from the
	// snapshot Snapshot names (a restore).
	Restored []string `json:"restored,omitempty"`
	Snapshot string   `json:"snapshot,omitempty"`
	// Changes per host, from the engine's mutation gate.
	Changes map[string][]string `json:"changes,omitempty"`
	Health  *ClusterHealth      `json:"health,omitempty"`
	// LeaderMoved says the health gate moved leadership into the
	// production center: "from (center) → to (center)". It changes no
	// host's configuration: Converged does not count it.
	LeaderMoved string `json:"leaderMoved,omitempty"`
	// Leader is the member leading after the health gate, in
	// LeaderCenter.
	Leader       string `json:"leader,omitempty"`
	LeaderCenter string `json:"leaderCenter,omitempty"`
}

// Converged reports whether nothing had to change (moving the leader
// home is not a change).
func (r *Result) Converged() bool {
	return !r.Bootstrap && len(r.Restored) == 0 && len(r.Steps) == 0 && len(r.Restarts) == 0 && len(r.Retired) == 0 && len(r.Changes) == 0
}

// Facts is what preflight learns about a host.
type Facts struct {
	HasData   bool
	Active    bool
	Enabled   bool
	PortsBusy []string // listeners on 2379/2380 other than etcd
	FreeDisk  int64
	Skew      time.Duration
	HasDirs   bool
}

type run struct {
	o   Options
	log *slog.Logger
	// dry: the phases run in a plan (set by etcd/discover's Prepare).
	dry     bool
	set     Settings
	bins    map[string]string
	plan    []inventory.Member
	byName  map[string]inventory.Member
	cli     *Client
	mu      sync.Mutex
	facts   map[string]*Facts
	changed map[string]bool
	res     *Result
	members []Member
	healthy map[uint64]bool
	apiUp   bool
	sums    map[string]string // local path → sha256 from the artifact manifest
	ops     hostOps           // nil: sshOps
}

// Stable phase IDs of etcd, in the order Phases returns them (the
// engine's workflow lists them).
const (
	PhasePreflight  = "etcd/preflight"
	PhaseDiscover   = "etcd/discover"
	PhaseInstall    = "etcd/install"
	PhaseStart      = "etcd/start"
	PhaseMembership = "etcd/membership"
	PhaseRetire     = "etcd/retire"
	PhaseHealth     = "etcd/health"
)

// Run is one convergence of etcd: New prepares it (artifacts checked, a
// client of the members), Phases are run on the engine's manager, then
// Result says what happened; Close releases the client.
type Run struct{ r *run }

// New prepares an etcd run on the placement: preflight, upload,
// configuration, start, membership changes (one at a time, quorum-safe)
// and the health gate. Re-running it converges; when nothing differs it
// changes nothing.
func New(ctx context.Context, o Options) (*Run, error) {
	if o.Cluster == nil || o.Placement == nil || o.PKI == nil {
		return nil, errors.New("etcd needs Cluster, Placement and PKI")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.MinFreeDisk <= 0 {
		o.MinFreeDisk = DefaultMinFreeDisk
	}
	if len(o.Placement.Etcd.Members) == 0 {
		return nil, errors.New("the placement has no etcd members")
	}
	r := &run{o: o, log: o.Logger, plan: o.Placement.Etcd.Members, byName: map[string]inventory.Member{},
		facts: map[string]*Facts{}, changed: map[string]bool{}, res: &Result{}, healthy: map[uint64]bool{},
		sums: map[string]string{}}
	r.set = Settings{ClusterName: o.Cluster.Metadata.Name, Timers: o.Placement.Etcd.Timers, SharedPeerCA: o.PKI.SharedPeerCA,
		SplittingPeerCA: o.PKI.SplittingPeerCA}
	if o.PKI.SharedPeerCA {
		o.Logger.Warn("etcd peer CA shared with the client CA (a cluster created before the split): a client certificate of the etcd CA can open a peer connection until a CA rotation splits them")
	}
	for _, m := range r.plan {
		r.byName[m.Name] = m
	}
	names := []string{"etcd", "etcdctl"}
	if o.Restore != nil {
		if err := o.Restore.check(); err != nil {
			return nil, err
		}
		names = append(names, "etcdutl")
	}
	files, err := o.Artifacts.FilesVersion(ctx, o.Cluster.Spec.Etcd.Version, names...)
	if err != nil {
		return nil, err
	}
	// The manifest's digests, just checked, are what the uploads expect.
	r.bins = map[string]string{}
	for n, f := range files {
		r.bins[n] = f.Path
		r.sums[f.Path] = f.SHA256
	}
	tc, err := TLSConfig(o.PKI)
	if err != nil {
		return nil, err
	}
	var copts []ClientOption
	if o.Dial != nil {
		copts = append(copts, WithDialer(o.Dial))
	}
	if r.cli, err = NewClient(r.endpoints(), tc, r.log, copts...); err != nil {
		return nil, err
	}
	return &Run{r: r}, nil
}

// Phases are the run's phases, in order, with their IDs (PhaseIDs). The
// later ones need what etcd/preflight and etcd/discover learn.
func (x *Run) Phases() []phase.Phase {
	r := x.r
	return []phase.Phase{
		&phase.HostPhase{ID: PhasePreflight, Name: "etcd preflight", Select: r.selectHosts(true), Apply: r.preflight},
		&discover{r: r},
		&phase.HostPhase{ID: PhaseInstall, Name: "etcd upload and configuration", Select: r.selectHosts(false), Apply: r.install},
		r.restorePhase(),
		&startPhase{r: r},
		&membershipPhase{r: r},
		&retirePhase{r: r},
		&healthPhase{r: r},
	}
}

// Result is what the run did (or, in a dry run, would do) so far.
func (x *Run) Result() *Result { return x.r.res }

// Close releases the run's etcd client.
func (x *Run) Close() error { return x.r.cli.Close() }

// Apply runs every phase of New on o.Manager.
func Apply(ctx context.Context, o Options) (*Result, error) {
	if o.Manager == nil {
		return nil, errors.New("etcd.Apply needs a Manager")
	}
	x, err := New(ctx, o)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	err = o.Manager.Run(ctx, x.Phases()...)
	x.r.res.Changes = o.Manager.Changes()
	return x.r.res, err
}

// endpoints are the client URLs of every planned and previously recorded
// member.
func (r *run) endpoints() []string {
	seen := map[string]bool{}
	var out []string
	add := func(addr string) {
		u := ClientURL(addr)
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, m := range r.plan {
		add(m.Address)
	}
	for _, h := range r.priorHosts() {
		add(h.SSH.Address)
	}
	return out
}

// priorHosts are inventory servers recorded as members by the last apply
// that the plan no longer has.
func (r *run) priorHosts() []inventory.Host {
	if r.o.Prior == nil {
		return nil
	}
	var out []inventory.Host
	for _, n := range r.o.Prior.EtcdMembers {
		if _, planned := r.byName[n]; planned {
			continue
		}
		if h, ok := r.o.Cluster.Host(n); ok {
			out = append(out, h)
		}
	}
	return out
}

func (r *run) selectHosts(withRetired bool) inventory.Selector {
	var names []string
	for _, m := range r.plan {
		names = append(names, m.Name)
	}
	if withRetired {
		for _, h := range r.priorHosts() {
			names = append(names, h.Name)
		}
	}
	return inventory.Selector{Servers: names}
}

const factsCmd = `echo now=$(date +%s.%N)
[ -d ` + DataDir + `/member ] && echo data=1 || echo data=0
` + hostSetupFacts + `
echo active=$(systemctl is-active ` + Unit + ` 2>/dev/null)
echo enabled=$(systemctl is-enabled ` + Unit + ` 2>/dev/null)
echo listeners=$(ss -Hltnp '( sport = :2379 or sport = :2380 )' 2>/dev/null | grep -o 'users:(("[^"]*"' | sed 's/users:(("//; s/"//' | sort -u | tr '\n' ,)
echo avail=$(df --output=avail -B1 /var/lib | tail -1)`

// preflight checks a host can run etcd and records its facts.
func (r *run) preflight(ctx context.Context, h *phase.Host) error {
	before := time.Now()
	out, err := h.Query(ctx, factsCmd)
	after := time.Now()
	if err != nil {
		return fmt.Errorf("preflight on %s: %w", h.Name, err)
	}
	f := &Facts{}
	kv := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			kv[k] = v
		}
	}
	f.HasData, f.HasDirs = kv["data"] == "1", kv["hostsetup"] == "1"
	f.Active, f.Enabled = kv["active"] == "active", kv["enabled"] == "enabled"
	for _, p := range strings.Split(kv["listeners"], ",") {
		if p != "" && p != "etcd" {
			f.PortsBusy = append(f.PortsBusy, p)
		}
	}
	f.FreeDisk, _ = strconv.ParseInt(kv["avail"], 10, 64)
	f.Skew = phase.ClockSkew(before, after, kv["now"])
	r.mu.Lock()
	r.facts[h.Name] = f
	r.mu.Unlock()
	var errs []error
	if len(f.PortsBusy) > 0 {
		errs = append(errs, fmt.Errorf("ports %d/%d are in use by %s: stop it or choose another server", ClientPort, PeerPort, strings.Join(f.PortsBusy, ", ")))
	}
	if f.Skew > r.o.MaxClockSkew {
		errs = append(errs, fmt.Errorf("clock is %v off this machine's (at most %v): fix NTP on the server", f.Skew.Round(time.Millisecond), r.o.MaxClockSkew))
	}
	if _, planned := r.byName[h.Name]; planned && f.FreeDisk > 0 && f.FreeDisk < r.o.MinFreeDisk {
		errs = append(errs, fmt.Errorf("only %d MiB free under /var/lib, at least %d MiB needed", f.FreeDisk>>20, r.o.MinFreeDisk>>20))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("preflight on %s: %w", h.Name, err)
	}
	return nil
}

func (r *run) fact(name string) *Facts {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.facts[name]; f != nil {
		return f
	}
	return &Facts{}
}

// discover learns the current membership and decides between bootstrap
// and changes to a running cluster.
type discover struct{ r *run }

func (d *discover) Title() string { return "etcd membership plan" }

// Prepare learns whether the run is a plan (the phases run on the
// engine's manager, which Options need not carry).
func (d *discover) Prepare(_ context.Context, m *phase.Manager) error {
	d.r.dry = m.DryRun
	return nil
}

func (d *discover) PhaseID() string { return PhaseDiscover }

func (d *discover) Run(ctx context.Context) error {
	r := d.r
	if r.o.Restore != nil {
		if err := r.checkNoQuorum(ctx); err != nil {
			return err
		}
		r.res.Bootstrap, r.res.Snapshot = true, r.o.Restore.ID
		r.log.Info("etcd has no quorum: restoring from a snapshot", "snapshot", r.o.Restore.ID, "members", len(r.plan))
		return nil
	}
	anyData, anyActive := false, false
	for _, f := range r.facts {
		anyData = anyData || f.HasData
		anyActive = anyActive || f.Active
	}
	if !anyData && !anyActive {
		r.res.Bootstrap = true
		r.log.Info("No etcd data on any member: bootstrapping a new cluster", "members", len(r.plan))
		return nil
	}
	ms, err := r.cli.Members(ctx)
	if err != nil {
		return r.dataButNoAnswer(anyActive, err)
	}
	r.apiUp = true
	r.members = ms
	r.healthy = r.cli.healthOf(ctx, ms)
	return r.planMembership()
}

// ErrDataUnreachable is wrapped when servers hold etcd data but no member
// answers: tricenter does not touch an etcd it cannot see.
var ErrDataUnreachable = errors.New("etcd holds data but no member answers")

// dataButNoAnswer decides what a run does when members hold data and the
// member list cannot be read. After an apply of this state completed (its
// prior records members), the cluster lost its quorum or the state is not
// this cluster's: the run stops, naming the servers. Before any completed
// apply it is this state's own interrupted bootstrap: the start phase starts
// the members that are still stopped, then the list is read again.
func (r *run) dataButNoAnswer(anyActive bool, listErr error) error {
	var withData []string
	for _, m := range r.plan {
		f := r.fact(m.Name)
		if !f.HasData {
			continue
		}
		state := "stopped"
		if f.Active {
			state = "running"
		}
		withData = append(withData, m.Name+" ("+state+")")
	}
	for _, h := range r.priorHosts() {
		if f := r.fact(h.Name); f.HasData {
			withData = append(withData, h.Name+" (no longer planned)")
		}
	}
	if len(withData) == 0 {
		// Running but without data yet: a bootstrap just started.
		r.res.Bootstrap = true
		return nil
	}
	if r.o.Prior != nil && len(r.o.Prior.EtcdMembers) > 0 {
		return fmt.Errorf("%w: data on %s, member list: %w: bring the members back until they have a quorum "+
			"(power their servers on, systemctl start %s), or restore from a snapshot; nothing was changed",
			ErrDataUnreachable, strings.Join(withData, ", "), listErr, Unit)
	}
	r.log.Warn("etcd holds data but no member answers yet: continuing this state's interrupted bootstrap "+
		"(the stopped members are started, then the member list is read again)",
		"members", strings.Join(withData, ", "), "running", anyActive, "err", listErr)
	r.res.Bootstrap = false
	return nil
}

// memberOf returns the planned member a host is.
func (r *run) memberOf(h *phase.Host) (inventory.Member, bool) {
	m, ok := r.byName[h.Name]
	return m, ok
}

// install uploads the binaries, certificates and configuration through
// the host's install record (phase.Host.InstallFiles): one query learns
// which files already match, and only the others are uploaded or
// written. A changed binary (etcdctl aside), certificate, setting or unit
// marks the member for a restart.
func (r *run) install(ctx context.Context, h *phase.Host) error {
	m, ok := r.memberOf(h)
	if !ok {
		return nil
	}
	f := r.fact(h.Name)
	if !f.HasDirs {
		// The etcd user and group (before any file is given to them) and
		// the directories.
		if _, err := h.Sudo(ctx, hostSetupCmd); err != nil {
			return fmt.Errorf("creating the etcd user and directories on %s: %w", h.Name, err)
		}
	}
	pkiFiles, err := PKIFiles(r.o.PKI, m.Name)
	if err != nil {
		return err
	}
	etcdctl := BinDir + "/etcdctl"
	files := []phase.File{
		// The manifest's digests, just checked, are what the uploads expect.
		{Path: BinDir + "/etcd", Local: r.bins["etcd"], Mode: 0o755, SHA256: r.sums[r.bins["etcd"]]},
		{Path: etcdctl, Local: r.bins["etcdctl"], Mode: 0o755, SHA256: r.sums[r.bins["etcdctl"]]},
	}
	if p, ok := r.bins["etcdutl"]; ok {
		files = append(files, phase.File{Path: BinDir + "/etcdutl", Local: p, Mode: 0o755, SHA256: r.sums[p]})
	}
	files = append(files, pkiFiles...)
	files = append(files,
		phase.File{Path: EnvFile, Data: RenderEnv(r.set, m)},
		phase.File{Path: UnitFile, Data: RenderUnit()},
	)
	done, err := h.InstallFiles(ctx, BinariesRecord, files)
	if err != nil {
		return fmt.Errorf("installing etcd: %w", err)
	}
	changed := slices.ContainsFunc(done.Changed, func(p string) bool { return p != etcdctl && p != BinDir+"/etcdutl" })
	if done.Has(UnitFile) {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return fmt.Errorf("reloading units on %s: %w", h.Name, err)
		}
	}
	if r.res.Bootstrap && !f.HasData {
		var initial []InitialMember
		for _, p := range r.plan {
			initial = append(initial, InitialMember{p.Name, PeerURL(p.Address)})
		}
		if _, err := h.WriteFile(ctx, BootstrapFile, RenderBootstrap(r.set, initial, false), 0o644); err != nil {
			return fmt.Errorf("writing %s on %s: %w", BootstrapFile, h.Name, err)
		}
	}
	r.mu.Lock()
	r.changed[h.Name] = changed
	r.mu.Unlock()
	return nil
}

// BinariesRecord is the install record of the etcd binaries: "sha256 size
// mtime path" per binary as verified after upload, so a later run trusts
// the recorded sha256 while size and mtime still match (rsync's quick
// check) instead of hashing 45 MiB on every host each time.
const BinariesRecord = ConfDir + "/binaries.sha256"

// isMember reports whether the API lists a started member at m's peer URL.
func (r *run) apiMember(m inventory.Member) (Member, bool) {
	for _, x := range r.members {
		for _, u := range x.PeerURLs {
			if u == PeerURL(m.Address) {
				return x, true
			}
		}
	}
	return Member{}, false
}

// startPhase starts a new cluster's members all at once, or restarts
// changed members of a running cluster one at a time.
type startPhase struct {
	r *run
	m *phase.Manager
}

func (p *startPhase) Title() string { return "etcd start" }

func (p *startPhase) PhaseID() string { return PhaseStart }

func (p *startPhase) Prepare(_ context.Context, m *phase.Manager) error { p.m = m; return nil }

func (p *startPhase) Run(ctx context.Context) error {
	r := p.r
	hosts, err := p.m.Hosts(r.selectHosts(false))
	if err != nil {
		return err
	}
	if r.res.Bootstrap {
		// Every member must start before any can form a quorum.
		err := p.m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
			f := r.fact(h.Name)
			if !f.Enabled {
				if err := h.Systemctl(ctx, "enable", Unit); err != nil {
					return err
				}
			}
			if !f.Active {
				return h.Systemctl(ctx, "start", "--no-block", Unit)
			}
			if r.changed[h.Name] {
				return h.SystemctlRestart(ctx, Unit)
			}
			return nil
		})
		if err != nil || p.m.DryRun {
			return err
		}
		return r.refreshMembers(ctx)
	}
	if !r.apiUp {
		// Data but no answer: start whatever is stopped and look again.
		err := p.m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
			if f := r.fact(h.Name); f.HasData && !f.Active {
				return h.Systemctl(ctx, "start", "--no-block", Unit)
			}
			return nil
		})
		if err != nil || p.m.DryRun {
			return err
		}
		if err := r.refreshMembers(ctx); err != nil {
			return err
		}
		if err := r.planMembership(); err != nil {
			return err
		}
	}
	// Rolling restarts of members whose files changed, then start members
	// that are down, one at a time with the cluster healthy in between.
	for _, h := range hosts {
		m := r.byName[h.Name]
		am, isMember := r.apiMember(m)
		if !isMember || !am.Started() {
			continue // added by the membership phase
		}
		f := r.fact(h.Name)
		switch {
		case !f.Enabled:
			if err := h.Systemctl(ctx, "enable", Unit); err != nil {
				return err
			}
		}
		switch {
		case r.changed[h.Name] && f.Active:
			if err := r.checkHealthyBefore(ctx, am.ID); err != nil {
				return fmt.Errorf("restarting %s: %w", h.Name, err)
			}
			if err := h.SystemctlRestart(ctx, Unit); err != nil {
				return err
			}
			r.res.Restarts = append(r.res.Restarts, h.Name)
		case !f.Active:
			if err := h.Systemctl(ctx, "start", "--no-block", Unit); err != nil {
				return err
			}
		default:
			continue
		}
		if p.m.DryRun {
			continue
		}
		if err := r.waitStable(ctx); err != nil {
			return err
		}
	}
	return nil
}

// checkHealthyBefore refuses to take member id down when the others
// would not keep a quorum.
func (r *run) checkHealthyBefore(ctx context.Context, id uint64) error {
	if err := r.refreshMembers(ctx); err != nil {
		return err
	}
	return CheckRemove(r.members, r.healthy, id)
}

// refreshMembers reloads the member list and health, waiting (up to the
// health timeout) for the API to answer.
func (r *run) refreshMembers(ctx context.Context) error {
	deadline := time.Now().Add(r.o.HealthTimeout)
	for {
		ms, err := r.cli.Members(ctx)
		if err == nil {
			r.apiUp = true
			r.members = ms
			r.healthy = r.cli.healthOf(ctx, ms)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: member list unavailable after %v: %w", ErrUnhealthy, r.o.HealthTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitStable waits until every started voting member is healthy and they
// agree on a leader.
func (r *run) waitStable(ctx context.Context) error {
	deadline := time.Now().Add(r.o.HealthTimeout)
	for {
		err := r.refreshMembers(ctx)
		if err == nil {
			var bad []string
			for _, m := range r.members {
				if m.Started() && !r.healthy[m.ID] {
					bad = append(bad, m.Name)
				}
			}
			if len(bad) == 0 {
				return nil
			}
			err = fmt.Errorf("%w: unhealthy members %v", ErrUnhealthy, bad)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
