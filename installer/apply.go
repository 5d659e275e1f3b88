package installer

import (
	"context"
	"errors"
	"fmt"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/relay"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/gates"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
)

// Options select what a Plan, Apply or Reset covers.
type Options struct {
	// Only limits the run to these components or phases (names as for
	// --only: a component, or a phase ID of Workflow); empty means all of
	// them. Plan and Apply take components and phase IDs; Reset takes
	// components.
	Only []string
	// Skip leaves these components or phases out (--skip-phases).
	Skip []string
	// Servers limits host work of the per-node components (bgp, nodes)
	// to these servers — adding one worker touches only it. etcd and the
	// control plane always consider their whole placement.
	Servers []string
	// Except leaves these servers' per-node work to someone else (the
	// provider's tricenter_node resources): the run covers every other
	// server (within Servers when set). Plan and Apply only.
	Except []string
	// Verify runs every gate, the pod gate included, even when nothing
	// changed.
	Verify bool
	// WaitReachable, when positive, first waits up to this long for every
	// server of the run to accept SSH (servers just powered on are still
	// booting); otherwise an unreachable server fails its component.
	WaitReachable time.Duration
	// AcceptTransientRisk lets an apply run an etcd membership plan that
	// passes through states where the loss of one center loses quorum
	// (Result.Etcd.Risks); without it that apply fails before any
	// membership change. A plan shows the risk either way.
	AcceptTransientRisk bool
	// LockTimeout is how long a mutating run waits for another run's lock
	// (DefaultLockTimeout; negative: not at all). Dry runs take no lock.
	LockTimeout time.Duration
	// locked: the caller (Upgrade, PlanApply) holds the locks already.
	locked bool
	// reuse are the components this run's own plan, moments before under
	// the same lock, found converged: the apply does not walk their hosts
	// again (PlanApply).
	reuse []Component
	// restore rebuilds etcd from this snapshot (Engine.Restore).
	restore *etcd.RestoreSource
	// pool is the SSH pool of the whole PlanApply (nil: one of the run's
	// own).
	pool *ssh.Pool
}

// Timing is how long one component took.
type Timing struct {
	Component Component     `json:"component"`
	Took      time.Duration `json:"took"`
}

// PhaseRun is what one phase of a run did.
type PhaseRun struct {
	ID string `json:"id"`
	// Ran is false when the phase had nothing to do.
	Ran   bool          `json:"ran"`
	Hosts int           `json:"hosts,omitempty"`
	Took  time.Duration `json:"took"`
	Error string        `json:"error,omitempty"`
}

// Result is what a Plan or an Apply did (or, for a plan, would do).
type Result struct {
	DryRun     bool        `json:"dryRun"`
	Components []Component `json:"components"`
	// Phases are the workflow's phases the run reached, in order.
	Phases []PhaseRun `json:"phases"`
	// Etcd is etcd's own result (membership steps, restarts, health).
	Etcd *etcd.Result `json:"etcd,omitempty"`
	// JumpHosts are the artifact bytes sent through each center's jump
	// host, against the artifact set the center needed (the relay sends
	// each file through once per center).
	JumpHosts []relay.JumpBytes `json:"jumpHosts,omitempty"`
	// Changes lists per host what changed (or would change).
	Changes map[string][]string `json:"changes"`
	// APIChanges lists what the add-ons created or updated through the
	// Kubernetes API (not known in a dry run).
	APIChanges []string `json:"apiChanges,omitempty"`
	// Gates are the verification gates of an apply, in order.
	Gates   []Gate   `json:"gates,omitempty"`
	Timings []Timing `json:"timings"`
	// Warnings are things the user should know that did not fail the run.
	Warnings []string `json:"warnings,omitempty"`
	// Lock says which locks the run held (Engine.Lock); empty for a dry run.
	Lock string `json:"lock,omitempty"`
	// APIHeld are the servers the API VIP was held away from while their
	// kube-apiserver (or stacked etcd member) restarted, in order.
	APIHeld []string `json:"apiHeld,omitempty"`
	// Pending (a plan) are the components an apply has to walk: those
	// whose plan found something to change, every one after the first
	// such (what they do may follow from what it changes), and the add-ons
	// (what they change through the API is not known in a plan).
	Pending []Component `json:"pending,omitempty"`
	// Reused (an apply of PlanApply) are the components the apply did not
	// walk again: the plan of the same run, under the same lock, found
	// them converged moments before. Their gates still ran.
	Reused []Component `json:"reused,omitempty"`
	// SSH is what the run did with each server over SSH: connections made
	// and sessions opened (each at least one round trip).
	SSH map[string]ssh.Usage `json:"ssh,omitempty"`
}

// Converged reports whether nothing changed (or would change).
func (r *Result) Converged() bool {
	if r == nil {
		return false
	}
	if r.Etcd != nil && !r.Etcd.Converged() {
		return false
	}
	return len(r.Changes) == 0 && len(r.APIChanges) == 0
}

// Hosts lists the hosts with changes, sorted.
func (r *Result) Hosts() []string { return phase.HostNames(r.Changes) }

// Plan is a dry run of Apply: every phase runs with the mutation gate
// recording "would …" instead of changing, so the plan is what the next
// Apply does.
func (e *Engine) Plan(ctx context.Context, o Options) (*Result, error) {
	return e.run(ctx, o, true)
}

// Apply converges the selected components in order, then runs the
// verification gates, and records the allocations. When nothing differs
// it changes nothing.
func (e *Engine) Apply(ctx context.Context, o Options) (*Result, error) {
	return e.run(ctx, o, false)
}

// PlanReuseAge bounds how old the plan's observations may be for the
// apply of the same PlanApply to rely on them. An operator who takes
// longer to confirm gets an apply that walks every host again.
const PlanReuseAge = 2 * time.Minute

// PlanApply is one apply as an operator runs it: under one lock, a plan,
// then proceed (nil: go ahead) with the plan in hand — it prints it, asks
// for confirmation, and returns false to stop there — then the apply.
// The apply relies on what the plan observed: a component whose plan
// found nothing to change on any host, with no component before it
// pending (Result.Pending), is not walked again, and its gate still runs.
// Every component the apply does walk is observed afresh on every host
// before anything on it changes, so a change made between the plan and
// the apply is caught there. Nothing carries over to another run: the
// plan lives in this call only, and an apply that starts more than
// PlanReuseAge after the plan began walks everything again. applied is
// nil when the apply did not start (a failed plan, proceed said no).
func (e *Engine) PlanApply(ctx context.Context, o Options, proceed func(plan *Result) (bool, error)) (plan, applied *Result, err error) {
	lock := &Result{}
	if !o.locked {
		var unlock func()
		if ctx, unlock, err = e.lockRun(ctx, o, lock); err != nil {
			return nil, nil, err // refused: nothing ran
		}
		defer unlock()
		o.locked = true
	}
	// One SSH pool for the plan and the apply: the apply's sessions go
	// over the connections the plan opened. Every observation is still a
	// new session.
	holder := e.Manager(true)
	defer holder.Close()
	if o.pool, err = holder.SSHPool(); err != nil {
		return nil, nil, err
	}
	start := time.Now()
	if plan, err = e.run(ctx, o, true); err != nil {
		return plan, nil, err
	}
	if proceed != nil {
		if ok, err := proceed(plan); err != nil || !ok {
			return plan, nil, err
		}
	}
	if age := time.Since(start); age > PlanReuseAge {
		e.log.Info("The plan is too old to rely on: the apply walks every host again", "age", age.Round(time.Second), "limit", PlanReuseAge)
	} else {
		o.reuse = plan.reusable()
	}
	applied, err = e.run(ctx, o, false)
	if applied != nil && lock.Lock != "" {
		applied.Lock = lock.Lock
	}
	return plan, applied, err
}

// reusable lists the components of a plan that an apply need not walk
// (not pending, gates aside). Not to be confused with Converged: a plan
// with only the add-ons pending is not converged, yet every host
// component in it is reusable.
func (r *Result) reusable() []Component {
	var out []Component
	for _, c := range r.Components {
		if c != Gates && !slices.Contains(r.Pending, c) {
			out = append(out, c)
		}
	}
	return out
}

// changeCount is how many changes m recorded on every host so far.
func changeCount(m *phase.Manager) int {
	n := 0
	for _, cs := range m.Changes() {
		n += len(cs)
	}
	return n
}

func (e *Engine) run(ctx context.Context, o Options, dry bool) (*Result, error) {
	if dry || !e.mayRestartAPI(o) {
		return e.runPhases(ctx, o, dry)
	}
	// A restart of kube-apiserver (or of the etcd member a stacked one
	// uses) happens with the API VIP held away from that server: clients
	// of the VIP never meet a server that is going down (apiHolds).
	holds := e.newAPIHolds(ctx)
	if !holds.on {
		holds.m.Close()
		return e.runPhases(ctx, o, dry)
	}
	prev := e.cfg.Progress
	e.cfg.Progress = holds
	res, err := e.runPhases(ctx, o, dry)
	e.cfg.Progress = prev
	held, warns, herr := holds.finish(ctx)
	if res != nil {
		res.APIHeld = held
		res.Warnings = append(res.Warnings, warns...)
	}
	return res, errors.Join(err, herr)
}

// mayRestartAPI says whether a run of o may restart kube-apiserver or an
// etcd member.
func (e *Engine) mayRestartAPI(o Options) bool {
	sel, err := Select(o.Only, o.Skip)
	if err != nil {
		return false // runPhases reports it
	}
	for _, c := range sel.Components() {
		if (c == ControlPlane || c == Etcd) && !slices.Contains(o.reuse, c) {
			return true
		}
	}
	return false
}

func (e *Engine) runPhases(ctx context.Context, o Options, dry bool) (*Result, error) {
	sel, err := Select(o.Only, o.Skip)
	if err != nil {
		return nil, err
	}
	if err := e.checkServers(append(slices.Clone(o.Servers), o.Except...)); err != nil {
		return nil, err
	}
	if o.Servers = e.covered(o.Servers, o.Except); o.Servers != nil && len(o.Servers) == 0 {
		return nil, errors.New("every server of the run is excepted: nothing left to apply")
	}
	comps := sel.Components()
	if err := e.checkReleases(sel); err != nil {
		return nil, err
	}
	res := &Result{DryRun: dry, Components: comps, Changes: map[string][]string{}}
	if !dry && !o.locked {
		var unlock func()
		if ctx, unlock, err = e.lockRun(ctx, o, res); err != nil {
			return nil, err // refused: nothing ran
		}
		defer unlock()
	}
	m := e.Manager(dry)
	m.Pool = o.pool
	defer m.Close()
	defer func() { res.SSH = m.Usage() }()
	if !dry && phase.RelayFrom(ctx) == nil {
		// Artifacts cross each center's jump host once; the other
		// servers of the center copy them from the first.
		var stopRelay func() []relay.JumpBytes
		ctx, stopRelay = phase.StartRelay(ctx, phase.RelayOptions{Logger: e.log})
		defer func() { res.JumpHosts = stopRelay() }()
	}
	r := &applyRun{e: e, o: o, m: m, res: res, dry: dry, sel: sel}
	m.OnPhase = r.observe
	err = m.Run(ctx,
		&funcPhase{id: PhaseReachable, title: "wait for SSH", run: func(ctx context.Context) error { return e.waitReachable(ctx, m, o) },
			should: func() bool { return o.WaitReachable > 0 }},
		// Before any certificate is made or written: the servers must
		// trust the state's authorities (or none yet).
		&funcPhase{id: PhaseAuthorities, title: "certificate authorities the servers trust", run: func(ctx context.Context) error {
			warns, err := e.checkHostCAs(ctx, m, caComponents(comps, o.reuse), o)
			res.Warnings = append(res.Warnings, warns...)
			return err
		}},
		&funcPhase{id: PhaseCertificates, title: "certificates in the state", run: func(context.Context) error {
			p, err := e.EtcdPKI(true)
			r.etcdPKI = p
			return err
		}},
	)
	if err != nil {
		return res, unwrapPhase(err)
	}
	for _, c := range comps {
		if c == Gates {
			continue
		}
		if slices.Contains(o.reuse, c) {
			e.log.Info("Component converged in this run's plan: not walked again", "component", c)
			res.Reused = append(res.Reused, c)
			if c == Etcd && sel.Has(etcd.PhaseHealth) {
				if err := r.etcdLeaderHome(ctx); err != nil {
					res.Changes = m.Changes()
					return res, fmt.Errorf("%s: %w", c, err)
				}
			}
			continue
		}
		start, before := time.Now(), changeCount(m)
		e.log.Info("Applying component", "component", c, "dry_run", dry)
		err := r.component(ctx, c)
		res.Timings = append(res.Timings, Timing{Component: c, Took: time.Since(start)})
		if err != nil {
			res.Changes = m.Changes()
			return res, fmt.Errorf("%s: %w", c, err)
		}
		if dry && (len(res.Pending) > 0 || c == Addons || changeCount(m) > before ||
			(c == Etcd && res.Etcd != nil && !res.Etcd.Converged())) {
			res.Pending = append(res.Pending, c)
		}
	}
	res.Changes = m.Changes()
	if !dry {
		kube, etcdRelease := e.installedReleases(sel)
		if err := e.record(sel.Has(etcd.PhaseMembership), kube, etcdRelease); err != nil {
			return res, err
		}
	}
	// In a dry run the gates are listed, not checked. A gate that did not
	// hold says more than the deadline that stopped the ones after it.
	err = m.Run(ctx, r.gatePhases()...)
	if ferr := gates.Failed(res.Gates); ferr != nil {
		return res, ferr
	}
	return res, err
}

// caComponents are the components whose servers the CA check covers: in
// an apply that relies on its plan, the plan of the same run checked them
// all under the same lock, and only the components walked again write
// certificates.
func caComponents(comps, reuse []Component) []Component {
	if len(reuse) == 0 {
		return comps
	}
	var out []Component
	for _, c := range comps {
		if c != Addons && c != Gates && !slices.Contains(reuse, c) {
			out = append(out, c)
		}
	}
	return out
}

// checkReleases refuses an apply that would change the releases the
// cluster runs: an apply converges every server at once, an upgrade takes
// them one at a time (etcd members, then control-plane servers behind the
// VIP, then drained nodes). An upgrade in progress is finished by
// tricenter upgrade first.
func (e *Engine) checkReleases(sel Selection) error {
	rec, err := e.UpgradeInProgress()
	if err != nil {
		return err
	}
	if rec != nil {
		return fmt.Errorf("an upgrade to Kubernetes %s and etcd %s is in progress (started %s): finish it with tricenter upgrade, then apply",
			rec.Plan.Kubernetes, rec.Plan.Etcd, rec.Started.Format(time.RFC3339))
	}
	p := e.prior
	if p == nil {
		return nil
	}
	spec := e.cfg.Cluster.Spec
	kubeRun := sel.Has(controlplane.PhaseBinaries) || sel.Has(node.IDKubelet) || sel.Has(node.IDKubeProxy)
	if p.Kubernetes != "" && p.Kubernetes != spec.Kubernetes.Version && kubeRun {
		return fmt.Errorf("the cluster runs Kubernetes %s and spec.kubernetes.version is %s: an apply would replace it on every server at once; "+
			"run tricenter upgrade (one server at a time, nodes drained), then apply", p.Kubernetes, spec.Kubernetes.Version)
	}
	if p.Etcd != "" && p.Etcd != spec.Etcd.Version && sel.Has(etcd.PhaseInstall) {
		return fmt.Errorf("the cluster runs etcd %s and spec.etcd.version is %s: an apply would replace it on every member at once; "+
			"run tricenter upgrade (one member at a time, the leader last), then apply", p.Etcd, spec.Etcd.Version)
	}
	return nil
}

// installedReleases are the releases a successful run installed, by what
// it selected ("": the run did not install that one).
func (e *Engine) installedReleases(sel Selection) (kube, etcdRelease string) {
	spec := e.cfg.Cluster.Spec
	if sel.Has(controlplane.PhaseBinaries) || sel.Has(node.IDKubelet) {
		kube = spec.Kubernetes.Version
	}
	if sel.Has(etcd.PhaseInstall) {
		etcdRelease = spec.Etcd.Version
	}
	return kube, etcdRelease
}

// unwrapPhase drops the manager's `phase "…": ` prefix from a preflight
// error, which names its hosts itself.
func unwrapPhase(err error) error {
	if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "phase ") {
		return u
	}
	return err
}

// observe records each phase's outcome in the result.
func (r *applyRun) observe(ev phase.Event) {
	if ev.ID == "" {
		return
	}
	pr := PhaseRun{ID: ev.ID, Ran: ev.Ran, Hosts: ev.Hosts, Took: ev.Took}
	if ev.Err != nil {
		pr.Error = ev.Err.Error()
	}
	r.res.Phases = append(r.res.Phases, pr)
}

// funcPhase is a phase of the engine's own.
type funcPhase struct {
	id, title string
	run       func(ctx context.Context) error
	should    func() bool
}

func (p *funcPhase) Title() string   { return p.title }
func (p *funcPhase) PhaseID() string { return p.id }
func (p *funcPhase) ShouldRun() bool { return p.should == nil || p.should() }
func (p *funcPhase) Run(ctx context.Context) error {
	return p.run(ctx)
}

// selected keeps the phases the run's selection covers.
func (r *applyRun) selected(ps []phase.Phase) []phase.Phase {
	var out []phase.Phase
	for _, p := range ps {
		if r.sel.Has(phase.IDOf(p)) {
			out = append(out, p)
		}
	}
	return out
}

// covered is Options.Servers without the Except servers: the servers
// whose per-node work a run does (nil: every server).
func (e *Engine) covered(servers, except []string) []string {
	if len(except) == 0 {
		return servers
	}
	if len(servers) == 0 {
		servers = hostNames(e.cfg.Cluster.Hosts())
	}
	out := []string{}
	for _, s := range servers {
		if !slices.Contains(except, s) {
			out = append(out, s)
		}
	}
	return out
}

// checkServers refuses unknown names in Options.Servers.
func (e *Engine) checkServers(names []string) error {
	var errs []error
	for _, n := range names {
		if _, ok := e.cfg.Cluster.Host(n); !ok {
			errs = append(errs, fmt.Errorf("server %q is not in the inventory", n))
		}
	}
	return errors.Join(errs...)
}

// applyRun is one Plan or Apply.
type applyRun struct {
	e       *Engine
	o       Options
	m       *phase.Manager
	res     *Result
	dry     bool
	sel     Selection
	etcdPKI *pki.Etcd
}

// component builds c's phases when the run reaches it (they depend on
// what the earlier components did) and runs the selected ones.
func (r *applyRun) component(ctx context.Context, c Component) error {
	var (
		phases []phase.Phase
		err    error
	)
	switch c {
	case Etcd:
		return r.etcd(ctx)
	case BGP:
		var warns []string
		phases, warns, err = r.e.bgpPhases(r.o.Servers)
		r.res.Warnings = append(r.res.Warnings, warns...)
	case ControlPlane:
		phases, err = r.controlPlanePhases(ctx)
	case Nodes:
		phases, err = r.nodePhases(ctx)
	case Addons:
		phases = r.addonPhases()
	default:
		return fmt.Errorf("unknown component %s", c)
	}
	if err != nil {
		return err
	}
	return r.m.Run(ctx, r.selected(phases)...)
}

func (r *applyRun) etcd(ctx context.Context) error {
	e := r.e
	x, err := etcd.New(ctx, etcd.Options{Cluster: e.cfg.Cluster, Placement: e.Placement(), Prior: e.prior,
		PKI: r.etcdPKI, Artifacts: e.Artifacts(), Logger: e.log,
		HealthTimeout: e.cfg.HealthTimeout, Dial: e.Dial, AcceptTransientRisk: r.o.AcceptTransientRisk, Restore: r.o.restore})
	if err != nil {
		return err
	}
	defer x.Close()
	snap, err := r.snapshotPhases()
	if err != nil {
		return err
	}
	err = r.m.Run(ctx, r.selected(append(x.Phases(), snap...))...)
	r.res.Etcd = x.Result()
	r.res.Etcd.Changes = r.m.Changes()
	return err
}

// limit keeps the names Options.Servers allows (all without it).
func (r *applyRun) limit(names []string) []string { return limitTo(names, r.o.Servers) }

// limitTo keeps the names in servers, sorted (all of names when servers
// is empty).
func limitTo(names, servers []string) []string {
	if len(servers) == 0 {
		return names
	}
	keep := map[string]bool{}
	for _, s := range servers {
		keep[s] = true
	}
	out := []string{}
	for _, s := range names {
		if keep[s] {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
