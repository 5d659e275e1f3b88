package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
)

// Options select what a Plan, Apply or Reset covers.
type Options struct {
	// Only limits the run to these components (names as for --only);
	// empty means all of them.
	Only []string
	// Servers limits host work of the per-node components (bgp, nodes)
	// to these servers — adding one worker touches only it. etcd and the
	// control plane always consider their whole placement.
	Servers []string
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
}

// Timing is how long one component took.
type Timing struct {
	Component Component     `json:"component"`
	Took      time.Duration `json:"took"`
}

// Result is what a Plan or an Apply did (or, for a plan, would do).
type Result struct {
	DryRun     bool        `json:"dryRun"`
	Components []Component `json:"components"`
	// Etcd is etcd's own result (membership steps, restarts, health).
	Etcd *etcd.Result `json:"etcd,omitempty"`
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

func (e *Engine) run(ctx context.Context, o Options, dry bool) (*Result, error) {
	comps, err := ParseComponents(o.Only)
	if err != nil {
		return nil, err
	}
	if err := e.checkServers(o.Servers); err != nil {
		return nil, err
	}
	res := &Result{DryRun: dry, Components: comps, Changes: map[string][]string{}}
	if !dry {
		var unlock func()
		if ctx, unlock, err = e.lockRun(ctx, o, res); err != nil {
			return nil, err // refused: nothing ran
		}
		defer unlock()
	}
	m := e.Manager(dry)
	defer m.Close()
	r := &applyRun{e: e, o: o, m: m, res: res, dry: dry}
	if err := e.waitReachable(ctx, m, o); err != nil {
		return res, err
	}
	// Before any certificate is made or written: the servers must trust
	// the state's authorities (or none yet).
	warns, err := e.checkHostCAs(ctx, m, comps, o)
	res.Warnings = append(res.Warnings, warns...)
	if err != nil {
		return res, err
	}
	if r.etcdPKI, err = e.EtcdPKI(true); err != nil {
		return res, err
	}
	for _, c := range comps {
		start := time.Now()
		e.log.Info("Applying component", "component", c, "dry_run", dry)
		err := r.component(ctx, c)
		res.Timings = append(res.Timings, Timing{Component: c, Took: time.Since(start)})
		if err != nil {
			res.Changes = m.Changes()
			return res, fmt.Errorf("%s: %w", c, err)
		}
	}
	res.Changes = m.Changes()
	if dry {
		return res, nil
	}
	etcdDone := slices.Contains(comps, Etcd)
	if err := e.record(etcdDone); err != nil {
		return res, err
	}
	if err := r.gates(ctx); err != nil {
		return res, err
	}
	return res, nil
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
	etcdPKI *pki.Etcd
}

func (r *applyRun) component(ctx context.Context, c Component) error {
	switch c {
	case Etcd:
		return r.etcd(ctx)
	case BGP:
		return r.bgp(ctx)
	default:
		return r.kubernetes(ctx, c)
	}
}

func (r *applyRun) etcd(ctx context.Context) error {
	e := r.e
	res, err := etcd.Apply(ctx, etcd.Options{Cluster: e.cfg.Cluster, Placement: e.Placement(), Prior: e.prior,
		PKI: r.etcdPKI, Artifacts: e.Artifacts(), Logger: e.log, Manager: r.m,
		HealthTimeout: e.cfg.HealthTimeout, Dial: e.Dial, AcceptTransientRisk: r.o.AcceptTransientRisk})
	r.res.Etcd = res
	return err
}

// limit keeps the names Options.Servers allows (all without it).
func (r *applyRun) limit(names []string) []string {
	if len(r.o.Servers) == 0 {
		return names
	}
	keep := map[string]bool{}
	for _, s := range r.o.Servers {
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
