// Package phase is tricenter's install engine: phases run in order, each
// on the hosts it selects, with bounded fan-out, retries of transient
// network errors, per-host errors that keep their type, and one mutation
// gate through which every remote change passes — so a dry run prints the
// per-host plan from the very code that applies it.
//
// A phase has a title and Run; optional behaviours are small interfaces:
// Preparer (select hosts, read state), ShouldRunner (skip when nothing to
// do), DryRunner (custom dry run; by default Run itself runs with the gate
// recording instead of changing) and CleanUpper (always called at the end,
// even after a failure or Ctrl-C).
//
// Host wraps an inventory.Host with its SSH connection. Its methods check
// before they change: Upload and WriteFile compare sha256, mode and owner
// and skip identical files; Query runs read-only commands (also in a dry
// run); Exec, Sudo, SystemctlRestart and Mutate go through the gate.
//
// A phase that installs a unit file and restarts it when it changed:
//
//	type installAgent struct{ phase.HostPhase }
//
//	func newInstallAgent(artifacts string) phase.Phase {
//		return &phase.HostPhase{
//			Name:   "Install the BGP agent",
//			Select: inventory.Selector{Roles: []inventory.Role{inventory.RoleWorker}},
//			Apply: func(ctx context.Context, h *phase.Host) error {
//				bin, err := h.Upload(ctx, filepath.Join(artifacts, "tricenter-bgp"), "/usr/local/bin/tricenter-bgp", 0o755)
//				if err != nil {
//					return err
//				}
//				unit, err := h.WriteFile(ctx, "/etc/systemd/system/tricenter-bgp.service", renderUnit(h), 0o644)
//				if err != nil {
//					return err
//				}
//				if bin.Changed || unit.Changed {
//					return h.SystemctlRestart(ctx, "tricenter-bgp.service")
//				}
//				return nil
//			},
//		}
//	}
//
//	m := &phase.Manager{Cluster: cluster, Concurrency: 30, PerCenter: 10, DryRun: dryRun,
//		Logger: logger, Progress: progress.NewPrinter(os.Stderr, isTTY)}
//	defer m.Close()
//	err := m.Run(ctx, newInstallAgent(dir))
//	for host, changes := range m.Changes() { … } // "would upload …", "would restart …"
//
// In a dry run the example prints, per host, "would upload
// /usr/local/bin/tricenter-bgp (12.1 MiB, sha256:3b1f…)", "would write
// /etc/systemd/system/tricenter-bgp.service" and "would restart
// tricenter-bgp.service"; on a host where both files are already right it
// prints nothing and restarts nothing.
package phase

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Phase is one install step.
type Phase interface {
	Title() string
	Run(ctx context.Context) error
}

// Identified is a phase with a stable ID ("component/step"): the ID the
// engine's workflow lists and --only/--skip-phases select by.
type Identified interface {
	PhaseID() string
}

// IDOf is p's stable ID, or "" when it has none.
func IDOf(p Phase) string {
	if i, ok := p.(Identified); ok {
		return i.PhaseID()
	}
	return ""
}

// Preparer is called before ShouldRun and Run: select hosts, read state.
type Preparer interface {
	Prepare(ctx context.Context, m *Manager) error
}

// ShouldRunner lets a phase skip itself.
type ShouldRunner interface {
	ShouldRun() bool
}

// DryRunner replaces Run in a dry run. Phases without it run Run with the
// gate recording changes instead of making them.
type DryRunner interface {
	DryRun(ctx context.Context) error
}

// CleanUpper is called once the run ends, for every phase that was
// prepared, in reverse order, even after a failure or cancellation.
type CleanUpper interface {
	CleanUp(ctx context.Context)
}

// Defaults for Manager.
const (
	DefaultConcurrency    = 30
	DefaultUploadsPerHost = 2
	DefaultRetryAttempts  = 4
	DefaultRetryBase      = 500 * time.Millisecond
	DefaultRetryMax       = 8 * time.Second
	cleanUpTimeout        = 30 * time.Second
)

// Retry is the backoff for transient network errors (ssh.IsTransient):
// Attempts tries in all, waiting Base, 2×Base, … up to Max between them.
type Retry struct {
	Attempts int
	Base     time.Duration
	Max      time.Duration
}

// Manager runs phases. Set the fields, then call Run; the zero value of
// each field has a sensible default. A Manager is used for one run.
type Manager struct {
	// Cluster is the inventory hosts are selected from.
	Cluster *inventory.Cluster
	// Concurrency bounds the hosts worked on at once (default 30).
	Concurrency int
	// PerCenter, when positive, bounds the hosts worked on at once in each
	// center (e.g. to spare a thin link to the remote center).
	PerCenter int
	// DryRun records changes ("would …") instead of making them.
	DryRun bool
	Logger *slog.Logger
	// Progress receives per-host lines and upload bytes (default: none).
	Progress progress.Reporter
	// OnPhase, when set, is called after each phase (run or skipped).
	OnPhase func(Event)
	// SSH configures the transport. KnownHosts adds to the inventory's
	// spec.ssh.knownHosts; an empty HostKeyPolicy takes the inventory's.
	SSH ssh.Options
	// Bastion, when set, is the first hop for every host: in front of the
	// center jump hosts, or alone for centers without one.
	Bastion *ssh.Endpoint
	Retry   Retry
	// UploadsPerHost bounds concurrent uploads to one host (default 2);
	// UploadsTotal bounds them across hosts (default: Concurrency).
	UploadsPerHost int
	UploadsTotal   int
	// SnapshotDirs are directories a dry run lists on each host in one
	// session, the first time it checks a file under them, to judge the
	// files it would write there without a session each (snapshot.go).
	SnapshotDirs []string
	// Pool, when set, is the SSH pool to work through instead of one of
	// the manager's own: the managers of one run (a plan and the apply
	// that follows it) share their connections. Close leaves it open.
	Pool *ssh.Pool

	once      sync.Once
	ownPool   bool
	usageBase map[string]ssh.Usage
	initErr   error
	pool      *ssh.Pool
	sums      *checksums
	uploads   chan struct{}
	centers   map[string]chan struct{}
	mu        sync.Mutex
	hosts     map[string]*Host
	prepared  []Phase
}

func (m *Manager) init() error {
	m.once.Do(func() {
		if m.Concurrency <= 0 {
			m.Concurrency = DefaultConcurrency
		}
		if m.Logger == nil {
			m.Logger = slog.New(slog.DiscardHandler)
		}
		if m.Progress == nil {
			m.Progress = progress.Discard
		}
		if m.UploadsPerHost <= 0 {
			m.UploadsPerHost = DefaultUploadsPerHost
		}
		if m.UploadsTotal <= 0 {
			m.UploadsTotal = m.Concurrency
		}
		if m.Retry.Attempts <= 0 {
			m.Retry.Attempts = DefaultRetryAttempts
		}
		if m.Retry.Base <= 0 {
			m.Retry.Base = DefaultRetryBase
		}
		if m.Retry.Max <= 0 {
			m.Retry.Max = DefaultRetryMax
		}
		o := m.SSH
		o.Logger = m.Logger
		if m.Cluster != nil {
			o.KnownHosts = append(append([]string(nil), m.Cluster.Spec.SSH.KnownHosts...), o.KnownHosts...)
			if o.HostKeyPolicy == "" {
				p, err := ssh.ParseHostKeyPolicy(m.Cluster.Spec.SSH.HostKeyPolicy)
				if err != nil {
					m.initErr = fmt.Errorf("spec.ssh.hostKeyPolicy: %w", err)
					return
				}
				o.HostKeyPolicy = p
			}
		}
		if m.Pool != nil {
			m.pool, m.usageBase = m.Pool, m.Pool.Usage()
		} else {
			m.pool, m.initErr = ssh.NewPool(o)
			m.ownPool = true
		}
		m.sums = newChecksums()
		m.uploads = make(chan struct{}, m.UploadsTotal)
		m.centers = map[string]chan struct{}{}
		m.hosts = map[string]*Host{}
	})
	return m.initErr
}

// Close closes every connection (of a pool of its own).
func (m *Manager) Close() error {
	if m.pool == nil || !m.ownPool {
		return nil
	}
	return m.pool.Close()
}

// SSHPool is the pool the manager works through, for another manager of
// the same run to share (Manager.Pool).
func (m *Manager) SSHPool() (*ssh.Pool, error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	return m.pool, nil
}

// Usage is what this manager did with each host over SSH: connections made
// and sessions opened (a shared pool's earlier use is not counted).
func (m *Manager) Usage() map[string]ssh.Usage {
	if m.pool == nil {
		return nil
	}
	out := m.pool.Usage()
	for name, u := range out {
		b := m.usageBase[name]
		u.Connections -= b.Connections
		u.Sessions -= b.Sessions
		if u.Connections == 0 && u.Sessions == 0 {
			delete(out, name)
			continue
		}
		out[name] = u
	}
	return out
}

// Run prepares and runs the phases in order. A phase that fails stops the
// run (later phases do not start); its error joins the per-host errors.
// CleanUp runs for every prepared phase at the end.
func (m *Manager) Run(ctx context.Context, phases ...Phase) (err error) {
	if err := m.init(); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanUpTimeout)
		defer cancel()
		for i := len(m.prepared) - 1; i >= 0; i-- {
			if c, ok := m.prepared[i].(CleanUpper); ok {
				c.CleanUp(cctx)
			}
		}
		m.prepared = nil
	}()
	for _, p := range phases {
		if err := ctx.Err(); err != nil {
			return err
		}
		title := p.Title()
		if pr, ok := p.(Preparer); ok {
			if err := pr.Prepare(ctx, m); err != nil {
				return fmt.Errorf("preparing %q: %w", title, err)
			}
		}
		m.prepared = append(m.prepared, p)
		if sr, ok := p.(ShouldRunner); ok && !sr.ShouldRun() {
			m.Logger.Info("Skipping phase", "phase", title)
			m.observe(Event{ID: IDOf(p), Title: title})
			continue
		}
		n := 0
		if hp, ok := p.(interface{ Selected() []*Host }); ok {
			n = len(hp.Selected())
		}
		m.Logger.Info("Running phase", "phase", title, "dry_run", m.DryRun)
		m.Progress.PhaseStart(title, n)
		start := time.Now()
		if dr, ok := p.(DryRunner); ok && m.DryRun {
			err = dr.DryRun(ctx)
		} else {
			err = p.Run(ctx)
		}
		m.Progress.PhaseDone(title, err, time.Since(start))
		m.observe(Event{ID: IDOf(p), Title: title, Ran: true, Hosts: n, Took: time.Since(start), Err: err})
		if err != nil {
			return fmt.Errorf("phase %q: %w", title, err)
		}
	}
	return nil
}

// Event is what Manager.OnPhase hears after each phase.
type Event struct {
	ID, Title string
	// Ran is false when the phase had nothing to do (ShouldRun).
	Ran   bool
	Hosts int
	Took  time.Duration
	Err   error
}

func (m *Manager) observe(ev Event) {
	if m.OnPhase != nil {
		m.OnPhase(ev)
	}
}

// Hosts returns the Host of every inventory server sel matches, in
// inventory order. The same server always gets the same *Host.
func (m *Manager) Hosts(sel inventory.Selector) ([]*Host, error) {
	if err := m.init(); err != nil {
		return nil, err
	}
	if m.Cluster == nil {
		return nil, errors.New("phase.Manager has no Cluster to select hosts from")
	}
	hs, err := m.Cluster.Select(sel)
	if err != nil {
		return nil, err
	}
	out := make([]*Host, 0, len(hs))
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range hs {
		x := m.hosts[h.Name]
		if x == nil {
			x = m.newHost(h)
			m.hosts[h.Name] = x
		}
		out = append(out, x)
	}
	return out, nil
}

// Changes lists, per host, the changes made (or, in a dry run, the ones
// that would be made), in order.
func (m *Manager) Changes() map[string][]string {
	m.mu.Lock()
	hosts := make([]*Host, 0, len(m.hosts))
	for _, h := range m.hosts {
		hosts = append(hosts, h)
	}
	m.mu.Unlock()
	out := map[string][]string{}
	for _, h := range hosts {
		if c := h.Changes(); len(c) > 0 {
			out[h.Name] = c
		}
	}
	return out
}

// HostNames sorts the keys of a Changes map.
func HostNames(changes map[string][]string) []string {
	names := make([]string, 0, len(changes))
	for n := range changes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HostPhase is a phase that runs Apply on every host Select matches, with
// the manager's fan-out. Embed it or use it directly.
type HostPhase struct {
	// ID is the phase's stable ID ("component/step", e.g. "bgp/agent"),
	// by which a run selects or skips it.
	ID     string
	Name   string
	Select inventory.Selector
	Apply  func(ctx context.Context, h *Host) error

	m     *Manager
	hosts []*Host
}

// Title is Name.
func (p *HostPhase) Title() string { return p.Name }

// PhaseID is ID.
func (p *HostPhase) PhaseID() string { return p.ID }

// Prepare selects the hosts.
func (p *HostPhase) Prepare(_ context.Context, m *Manager) error {
	p.m = m
	var err error
	p.hosts, err = m.Hosts(p.Select)
	return err
}

// ShouldRun is false when no host is selected.
func (p *HostPhase) ShouldRun() bool { return len(p.hosts) > 0 }

// Selected are the hosts chosen in Prepare.
func (p *HostPhase) Selected() []*Host { return p.hosts }

// Run applies the phase on every selected host.
func (p *HostPhase) Run(ctx context.Context) error {
	if p.m == nil {
		return fmt.Errorf("phase %q was not prepared", p.Name)
	}
	return p.m.Each(ctx, p.hosts, p.Apply)
}
