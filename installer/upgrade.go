package installer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/installer/bgpagent"
	"github.com/tricenter/terraform-provider-tricenter/installer/controlplane"
	"github.com/tricenter/terraform-provider-tricenter/installer/drain"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/node"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/installer/upgrade"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// UpgradeFile is the record of an upgrade in progress in a state
// directory (DIR/<cluster>/upgrade.json), written atomically after every
// change and removed when the upgrade is done.
const UpgradeFile = "upgrade.json"

// UpgradeOptions configure PlanUpgrade and Upgrade.
type UpgradeOptions struct {
	// Kubernetes and Etcd are the target releases (default: the
	// inventory's spec.kubernetes.version and spec.etcd.version).
	Kubernetes string
	Etcd       string
	// MaxUnavailablePerRack bounds the workers of one rack drained at once
	// (default upgrade.DefaultMaxUnavailablePerRack).
	MaxUnavailablePerRack int
	// DrainTimeout bounds each node's drain (default drain.DefaultTimeout).
	DrainTimeout time.Duration
	// AllowPatchDowngrade lets a component go back to an older patch of
	// its minor.
	AllowPatchDowngrade bool
	// Replan drops the record of an upgrade in progress and plans from
	// what is observed now.
	Replan bool
	// LockTimeout is as Options.LockTimeout (Upgrade only).
	LockTimeout time.Duration
	// Digest, when set, is the plan the caller showed and had confirmed:
	// Upgrade refuses to run another (the cluster changed in between).
	Digest string
	// Apply are the options of the apply that ends every upgrade (it
	// converges what the steps do not touch and runs the gates).
	Apply Options
}

// UpgradeResult is what PlanUpgrade found or Upgrade did.
type UpgradeResult struct {
	DryRun bool          `json:"dryRun"`
	Plan   *upgrade.Plan `json:"plan"`
	Digest string        `json:"digest"`
	// Status is each step's, by ID: "done" or "pending" (PlanUpgrade: as
	// observed before; Upgrade: as observed after the run).
	Status map[string]string `json:"status"`
	// Resumed says the plan is the one recorded by an upgrade in progress,
	// started at Started.
	Resumed bool      `json:"resumed"`
	Started time.Time `json:"started,omitzero"`
	// Outcome is what the run executed (Upgrade only).
	Outcome *upgrade.Outcome `json:"outcome,omitempty"`
	// Paused is why the upgrade stopped (this run's, or, in a plan, the
	// recorded one).
	Paused   *upgrade.Pause       `json:"paused,omitempty"`
	Observed *upgrade.Observation `json:"observed,omitempty"`
	Warnings []string             `json:"warnings,omitempty"`
	// Record is where the progress is kept ("" when the store is no state
	// directory: then it lasts as long as the run).
	Record string        `json:"record,omitempty"`
	Lock   string        `json:"lock,omitempty"`
	Took   time.Duration `json:"took"`
	// Apply is the apply that ended the upgrade: its changes and gates.
	Apply *Result `json:"apply,omitempty"`
}

// Remaining are the steps not done, in order.
func (r *UpgradeResult) Remaining() []upgrade.Step {
	if r == nil || r.Plan == nil {
		return nil
	}
	var out []upgrade.Step
	for _, s := range r.Plan.Steps {
		if r.Status[s.ID] != "done" {
			out = append(out, s)
		}
	}
	return out
}

// PlanUpgrade observes the cluster (etcd members, every kube-apiserver,
// the Nodes, and each server's binaries and units), checks the targets
// against it and returns the plan: the upgrade in progress when the state
// records one (each step's status observed again), else a new plan. It
// changes nothing and takes no lock.
func (e *Engine) PlanUpgrade(ctx context.Context, o UpgradeOptions) (*UpgradeResult, error) {
	start := time.Now()
	u, err := e.prepareUpgrade(ctx, o)
	if u != nil {
		u.res.DryRun = true
		u.res.Took = time.Since(start)
		return u.res, err
	}
	return nil, err
}

// Upgrade takes the cluster to the target releases by the plan
// PlanUpgrade shows, one step after the other, recording its progress in
// the state directory after every step: a run that stops (a failed step, a
// gate that did not hold, Ctrl-C, kill -9) is resumed by running Upgrade
// again, which observes what is done and goes on from the first step that
// is not. A failed step pauses the upgrade (UpgradeResult.Paused names
// the server and the reason; the error is an *upgrade.PausedError). It
// holds the engine's locks like Apply.
func (e *Engine) Upgrade(ctx context.Context, o UpgradeOptions) (*UpgradeResult, error) {
	start := time.Now()
	lockRes := &Result{}
	ctx, unlock, err := e.lockRun(ctx, Options{LockTimeout: o.LockTimeout}, lockRes)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// One relay for the steps and the apply after them: each artifact
	// crosses a center's jump host once.
	ctx, stopRelay := phase.StartRelay(ctx, phase.RelayOptions{Logger: e.log})
	defer stopRelay()
	u, err := e.prepareUpgrade(ctx, o)
	if err != nil {
		if u != nil {
			u.res.Took = time.Since(start)
			return u.res, err
		}
		return nil, err
	}
	res := u.res
	res.Lock = lockRes.Lock
	defer func() { res.Took = time.Since(start) }()
	if o.Digest != "" && o.Digest != res.Digest {
		return res, fmt.Errorf("the plan is now %s, not the %s that was shown (the cluster or the record changed in between): look at the new plan and confirm it",
			res.Digest, o.Digest)
	}
	if len(res.Plan.Steps) == 0 {
		if err := e.record(false, res.Plan.Kubernetes, res.Plan.Etcd); err != nil {
			return res, err
		}
		if err := e.removeUpgradeRecord(); err != nil {
			return res, err
		}
		return res, e.applyAfterUpgrade(ctx, o, res)
	}
	rec := u.rec
	if rec == nil {
		rec = upgrade.NewRecord(res.Plan, e.cfg.Clock())
		b, err := rec.Encode()
		if err == nil {
			err = e.saveUpgradeRecord(b)
		}
		if err != nil {
			return res, fmt.Errorf("recording the upgrade before its first step: %w", err)
		}
		res.Started = rec.Started
	}
	e.log.Info("Upgrading", "plan", res.Digest, "steps", len(res.Plan.Steps), "remaining", len(res.Remaining()),
		"kubernetes", res.Plan.Kubernetes, "etcd", res.Plan.Etcd, "resumed", res.Resumed)
	j := upgrade.NewJournal(rec, e.saveUpgradeRecord, e.cfg.Clock)
	x := &upgradeRun{e: e, o: o, m: e.Manager(false), plan: res.Plan}
	defer x.m.Close()
	out, err := upgrade.Execute(ctx, res.Plan, j, x)
	res.Outcome = out
	var pe *upgrade.PausedError
	if errors.As(err, &pe) {
		p := pe.Pause
		res.Paused = &p
	}
	if err != nil {
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*upgradeObserveTimeout)
		defer cancel()
		if obs, oerr := e.observeUpgrade(octx, nil); oerr == nil {
			res.Observed, res.Status = obs, upgrade.Statuses(res.Plan, obs, j.CordonedByUpgrade)
		}
		return res, err
	}
	// Every step was observed done after it ran; one last look at the
	// whole cluster, then the record goes.
	obs, err := e.observeUpgrade(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("observing the cluster after the upgrade: %w", err)
	}
	res.Observed, res.Status = obs, upgrade.Statuses(res.Plan, obs, j.CordonedByUpgrade)
	if left := res.Remaining(); len(left) > 0 {
		_, why := left[0].Done(obs, j.CordonedByUpgrade(left[0].Host))
		return res, fmt.Errorf("after the last step, step %d (%s) is no longer done: %s: run tricenter upgrade again", left[0].Number, left[0].ID, why)
	}
	e.log.Info("Upgrade done", "plan", res.Digest, "kubernetes", res.Plan.Kubernetes, "etcd", res.Plan.Etcd)
	if err := e.record(false, res.Plan.Kubernetes, res.Plan.Etcd); err != nil {
		return res, err
	}
	if err := e.removeUpgradeRecord(); err != nil {
		return res, err
	}
	return res, e.applyAfterUpgrade(ctx, o, res)
}

// applyAfterUpgrade is the apply that ends an upgrade, under the
// upgrade's locks: the cluster now runs the inventory's releases, so the
// apply converges the rest (configuration, add-ons) and its gates check
// the whole cluster.
func (e *Engine) applyAfterUpgrade(ctx context.Context, o UpgradeOptions, res *UpgradeResult) error {
	ao := o.Apply
	ao.locked = true
	// The steps changed every server: every gate runs, the pod gate
	// included, even though this apply itself may change nothing.
	ao.Verify = true
	e.log.Info("Applying after the upgrade: configuration, add-ons and the gates")
	x := e
	if spec := e.cfg.Cluster.Spec; spec.Kubernetes.Version != res.Plan.Kubernetes || spec.Etcd.Version != res.Plan.Etcd {
		// --to another release than the inventory's: the apply keeps
		// the releases just installed.
		x = e.at(res.Plan.Kubernetes, res.Plan.Etcd)
	}
	ares, err := x.run(ctx, ao, false)
	res.Apply = ares
	if err != nil {
		return fmt.Errorf("the upgrade is done; the apply after it failed: %w", err)
	}
	return nil
}

// prepared is an upgrade observed and planned.
type prepared struct {
	res *UpgradeResult
	// rec is the record of the upgrade in progress (nil: a new plan).
	rec *upgrade.Record
}

func (e *Engine) upgradeTargets(o UpgradeOptions) (upgrade.Options, []string, error) {
	spec := e.cfg.Cluster.Spec
	kube, etcdV := o.Kubernetes, o.Etcd
	if kube == "" {
		kube = spec.Kubernetes.Version
	}
	if etcdV == "" {
		etcdV = spec.Etcd.Version
	}
	if kube == "" {
		kube = inventory.DefaultKubernetesVersion
	}
	if etcdV == "" {
		etcdV = inventory.DefaultEtcdVersion
	}
	kv, err := inventory.ParseVersion(kube)
	if err != nil {
		return upgrade.Options{}, nil, fmt.Errorf("target Kubernetes release: %w", err)
	}
	ev, err := inventory.ParseVersion(etcdV)
	if err != nil {
		return upgrade.Options{}, nil, fmt.Errorf("target etcd release: %w", err)
	}
	var warns []string
	if spec.Kubernetes.Version != "" && spec.Kubernetes.Version != kube {
		warns = append(warns, fmt.Sprintf("the target Kubernetes %s is not the inventory's spec.kubernetes.version %s: set it to %s there: until then apply refuses, since the inventory asks for %s",
			kube, spec.Kubernetes.Version, kube, spec.Kubernetes.Version))
	}
	if spec.Etcd.Version != "" && spec.Etcd.Version != etcdV {
		warns = append(warns, fmt.Sprintf("the target etcd %s is not the inventory's spec.etcd.version %s: set it to %s there: until then apply refuses, since the inventory asks for %s",
			etcdV, spec.Etcd.Version, etcdV, spec.Etcd.Version))
	}
	return upgrade.Options{Kubernetes: kv, Etcd: ev, MaxUnavailablePerRack: o.MaxUnavailablePerRack,
		AllowPatchDowngrade: o.AllowPatchDowngrade}, warns, nil
}

// prepareUpgrade observes, validates and plans (or checks the recorded
// plan against what is observed). The result is returned with what was
// learned even when the upgrade is refused.
func (e *Engine) prepareUpgrade(ctx context.Context, o UpgradeOptions) (*prepared, error) {
	if o.MaxUnavailablePerRack < 0 {
		return nil, fmt.Errorf("max unavailable per rack %d: use 1 or more", o.MaxUnavailablePerRack)
	}
	opts, warns, err := e.upgradeTargets(o)
	if err != nil {
		return nil, err
	}
	res := &UpgradeResult{Warnings: warns, Record: e.upgradeRecordPath()}
	if res.Record == "" {
		res.Warnings = append(res.Warnings, "this engine's store is no state directory: the upgrade's progress lasts as long as the run (a stopped run is planned anew)")
	}
	u := &prepared{res: res}
	rec, err := e.readUpgradeRecord()
	if err != nil {
		return u, err
	}
	if rec != nil && o.Replan {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the upgrade in progress (plan %s, started %s, %d of %d steps seen done) is planned anew from what is observed",
			rec.Digest, rec.Started.Format(time.RFC3339), len(rec.Completed), len(rec.Plan.Steps)))
		rec = nil
	}
	obs, err := e.observeUpgrade(ctx, nil)
	if err != nil {
		return u, err
	}
	res.Observed = obs
	var plan *upgrade.Plan
	cordoned := func(string) bool { return false }
	if rec != nil {
		if err := e.checkRecordedPlan(rec, opts); err != nil {
			return u, err
		}
		w, err := upgrade.Validate(obs, opts)
		res.Warnings = append(append(res.Warnings, w...), obs.Problems...)
		if err != nil {
			return u, err
		}
		if err := upgrade.CheckProgress(&rec.Plan, obs); err != nil {
			return u, err
		}
		if o.MaxUnavailablePerRack > 0 && o.MaxUnavailablePerRack != rec.Plan.MaxUnavailablePerRack {
			res.Warnings = append(res.Warnings, fmt.Sprintf("the upgrade in progress keeps its %d per rack (--replan plans anew with %d)",
				rec.Plan.MaxUnavailablePerRack, o.MaxUnavailablePerRack))
		}
		plan, u.rec = &rec.Plan, rec
		res.Resumed, res.Started, res.Paused = true, rec.Started, rec.Paused
		cordoned = func(n string) bool { return slices.Contains(rec.Cordoned, n) }
	} else {
		p, w, err := upgrade.BuildPlan(e.cfg.Cluster, e.Placement(), obs, opts)
		res.Warnings = append(res.Warnings, w...)
		if err != nil {
			return u, err
		}
		plan = p
	}
	res.Plan, res.Digest = plan, plan.Digest()
	res.Status = upgrade.Statuses(plan, obs, cordoned)
	for _, s := range plan.Steps {
		if n, ok := obs.Nodes[s.Host]; ok && s.Component == upgrade.CompNode && !n.Ready && res.Status[s.ID] != "done" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("Node %s is not Ready (%s): its step waits for it to be Ready after the upgrade", s.Host, n.Reason))
		}
	}
	return u, e.checkUpgradeArtifacts(ctx, res.Remaining())
}

// checkRecordedPlan refuses a recorded upgrade to other targets or over
// servers that left their roles.
func (e *Engine) checkRecordedPlan(rec *upgrade.Record, opts upgrade.Options) error {
	if rec.Plan.Kubernetes != opts.Kubernetes.String() || rec.Plan.Etcd != opts.Etcd.String() {
		return fmt.Errorf("an upgrade to Kubernetes %s and etcd %s is in progress (plan %s, started %s, %d of %d steps seen done): "+
			"resume it with --to %s --etcd-to %s, or plan anew from what is observed with --replan",
			rec.Plan.Kubernetes, rec.Plan.Etcd, rec.Digest, rec.Started.Format(time.RFC3339), len(rec.Completed), len(rec.Plan.Steps),
			rec.Plan.Kubernetes, rec.Plan.Etcd)
	}
	pl := e.Placement()
	var errs []error
	for _, s := range rec.Plan.Steps {
		_, ok := e.cfg.Cluster.Host(s.Host)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s is no longer in the inventory", s.Host))
		case s.Component == upgrade.CompEtcd && !pl.IsEtcdMember(s.Host):
			errs = append(errs, fmt.Errorf("%s is no longer an etcd member", s.Host))
		case s.Component == upgrade.CompControlPlane && !pl.IsControlPlane(s.Host):
			errs = append(errs, fmt.Errorf("%s is no longer a control-plane server", s.Host))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("the upgrade in progress (plan %s) no longer fits the inventory: %w: plan anew with --replan", rec.Digest, err)
	}
	return nil
}

// checkUpgradeArtifacts resolves the binaries of every release the steps
// install, before anything changes.
func (e *Engine) checkUpgradeArtifacts(ctx context.Context, steps []upgrade.Step) error {
	seen := map[string]bool{}
	var errs []error
	for _, s := range steps {
		var names []string
		switch s.Component {
		case upgrade.CompEtcd:
			names = []string{"etcd", "etcdctl"}
		case upgrade.CompControlPlane:
			names = controlplane.Binaries()
		case upgrade.CompNode:
			names = []string{node.BinKubelet, node.BinKubeProxy}
		}
		k := s.Component + "@" + s.To
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, err := e.Artifacts().FilesVersion(ctx, s.To, names...); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", s.Component, s.To, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("artifacts of the upgrade: %w", err)
	}
	return nil
}

// The upgrade record in the state directory. Only a state directory
// (state.Dir) keeps one: the provider's store holds no upgrade.

func (e *Engine) upgradeRecordPath() string {
	if d, ok := e.cfg.Store.(*state.Dir); ok {
		return filepath.Join(d.Path, UpgradeFile)
	}
	return ""
}

// UpgradeInProgress returns the record of an upgrade in progress (nil
// when there is none). While one is, an apply would install the
// inventory's releases on every server at once: callers refuse to run
// one (tricenter upgrade finishes it).
func (e *Engine) UpgradeInProgress() (*upgrade.Record, error) { return e.readUpgradeRecord() }

func (e *Engine) readUpgradeRecord() (*upgrade.Record, error) {
	p := e.upgradeRecordPath()
	if p == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the upgrade record: %w", err)
	}
	rec, err := upgrade.DecodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: move it away to plan anew from what is observed", p, err)
	}
	return rec, nil
}

func (e *Engine) saveUpgradeRecord(b []byte) error {
	p := e.upgradeRecordPath()
	if p == "" {
		return nil
	}
	return fsutil.WriteFileAtomic(p, b, 0o600)
}

func (e *Engine) removeUpgradeRecord() error {
	p := e.upgradeRecordPath()
	if p == "" {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the upgrade record: %w", err)
	}
	return nil
}

// Observation.

// upgradeObserveTimeout bounds each question an observation asks.
const upgradeObserveTimeout = 15 * time.Second

// upgradeProbeTargets are the binaries each server is asked about.
func upgradeProbeTargets() []upgrade.ProbeTarget {
	out := []upgrade.ProbeTarget{{Name: upgrade.BinEtcd, Path: etcd.BinDir + "/etcd", Unit: etcd.Unit}}
	for _, c := range controlplane.Components() {
		out = append(out, upgrade.ProbeTarget{Name: c, Path: controlplane.BinDir + "/" + c, Unit: controlplane.UnitName(c)})
	}
	return append(out,
		upgrade.ProbeTarget{Name: upgrade.BinKubelet, Path: node.BinDir + "/kubelet", Unit: node.KubeletUnit},
		upgrade.ProbeTarget{Name: upgrade.BinKubeProxy, Path: node.BinDir + "/kube-proxy", Unit: node.KubeProxyUnit})
}

// observeUpgrade observes the versions the components report (etcd's
// status, each kube-apiserver's /version, the Nodes) and asks the servers
// named by probe (nil: every server) which binaries they have and run.
func (e *Engine) observeUpgrade(ctx context.Context, probe []string) (*upgrade.Observation, error) {
	obs := upgrade.NewObservation()
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	members := e.Placement().Etcd.Members
	hctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
	h := cli.Health(hctx, members)
	cancel()
	for i, m := range members {
		if i >= len(h.Endpoints) {
			obs.Unobservable(upgrade.BinEtcd, m.Name, strings.Join(h.Problems, "; "))
			continue
		}
		st := h.Endpoints[i]
		v, ok := upgrade.VersionIn(st.Version)
		if !ok {
			why := st.Error
			if why == "" {
				why = "no version in its status"
			}
			obs.Unobservable(upgrade.BinEtcd, m.Name, why)
			continue
		}
		obs.Etcd[m.Name] = v
		if h.Leader != 0 && st.MemberID == h.Leader {
			obs.EtcdLeader = m.Name
		}
	}
	for _, pr := range h.Problems {
		obs.Problems = append(obs.Problems, "etcd: "+pr)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range e.Placement().ControlPlane {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := e.apiServerVersion(ctx, apiURL(m.Address))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				obs.Unobservable(upgrade.BinAPIServer, m.Name, err.Error())
				return
			}
			obs.APIServer[m.Name] = v
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.observeNodes(ctx, obs, &mu)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.probeServers(ctx, obs, &mu, probe)
	}()
	wg.Wait()
	return obs, nil
}

func apiURL(addr string) string { return "https://" + net.JoinHostPort(addr, fmt.Sprint(APIPort)) }

// apiServerVersion asks one kube-apiserver for its /version.
func (e *Engine) apiServerVersion(ctx context.Context, server string) (inventory.Version, error) {
	hc, err := e.apiHTTPClient(server)
	if err != nil {
		return inventory.Version{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/version", nil)
	if err != nil {
		return inventory.Version{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return inventory.Version{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return inventory.Version{}, fmt.Errorf("/version: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var info struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return inventory.Version{}, fmt.Errorf("/version: %w", err)
	}
	v, ok := upgrade.VersionIn(info.GitVersion)
	if !ok {
		return inventory.Version{}, fmt.Errorf("/version says gitVersion %q", info.GitVersion)
	}
	return v, nil
}

// observeNodes reads every server's Node: the kubelet's version, readiness
// by the one health rule, and cordon.
func (e *Engine) observeNodes(ctx context.Context, obs *upgrade.Observation, mu *sync.Mutex) {
	names := hostNames(e.cfg.Cluster.Hosts())
	fail := func(why string) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range names {
			obs.Unobservable(upgrade.BinKubelet, n, why)
		}
	}
	cs, err := e.Clientset()
	if err != nil {
		fail(err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
	defer cancel()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		fail("listing Nodes: " + err.Error())
		return
	}
	leases, err := cs.CoordinationV1().Leases(health.LeaseNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		fail("listing node Leases: " + err.Error())
		return
	}
	now := e.cfg.Clock()
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		i := slices.IndexFunc(nodes.Items, func(x corev1.Node) bool { return x.Name == n })
		if i < 0 {
			obs.Unobservable(upgrade.BinKubelet, n, "no Node registered")
			continue
		}
		nd := &nodes.Items[i]
		li := slices.IndexFunc(leases.Items, func(x coordinationv1.Lease) bool { return x.Name == n })
		var lease *coordinationv1.Lease
		if li >= 0 {
			lease = &leases.Items[li]
		}
		j := health.Judge(n, nd, lease, nil, now)
		v, ok := upgrade.VersionIn(j.Version)
		if !ok {
			obs.Unobservable(upgrade.BinKubelet, n, fmt.Sprintf("its Node reports kubelet version %q", j.Version))
			continue
		}
		obs.Kubelet[n] = v
		obs.Nodes[n] = upgrade.NodeState{Ready: j.Ready, Unschedulable: nd.Spec.Unschedulable, Reason: j.Reason}
	}
}

// probeServers asks the servers named (nil: all) about their binaries and
// units, over new SSH connections (one attempt each: a server that does
// not answer is reported at once).
func (e *Engine) probeServers(ctx context.Context, obs *upgrade.Observation, mu *sync.Mutex, names []string) {
	m := e.ObserveManager()
	defer m.Close()
	hosts, err := m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		mu.Lock()
		obs.Problems = append(obs.Problems, "servers: "+err.Error())
		mu.Unlock()
		return
	}
	cmd := upgrade.ProbeCommand(upgradeProbeTargets())
	_ = m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		qctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
		defer cancel()
		out, err := h.Query(qctx, cmd)
		var hp upgrade.HostProbe
		if err == nil {
			hp, err = upgrade.ParseProbe(out)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			obs.Unobservable("server", h.Name, unreachableReason(err))
			return nil
		}
		obs.Hosts[h.Name] = hp
		return nil
	})
}

// at is a view of the engine whose inventory names these releases: the
// component phases read the release to install from the inventory.
func (e *Engine) at(kubernetes, etcdVersion string) *Engine {
	c := *e.cfg.Cluster
	c.Spec.Kubernetes.Version, c.Spec.Etcd.Version = kubernetes, etcdVersion
	cfg := e.cfg
	cfg.Cluster = &c
	return &Engine{cfg: cfg, log: e.log, plan: e.plan, prior: e.prior}
}

// upgradeRun executes the steps (upgrade.Executor).
type upgradeRun struct {
	e    *Engine
	o    UpgradeOptions
	m    *phase.Manager
	plan *upgrade.Plan
}

var _ upgrade.Executor = (*upgradeRun)(nil)

func (x *upgradeRun) Observe(ctx context.Context, hosts []string) (*upgrade.Observation, error) {
	return x.e.observeUpgrade(ctx, hosts)
}

func (x *upgradeRun) Run(ctx context.Context, steps []upgrade.Step, j *upgrade.Journal) error {
	first := steps[0]
	title := fmt.Sprintf("upgrade step %d of %d: %s %s on %s, %s → %s", first.Number, len(x.plan.Steps), first.Component, first.Action,
		first.Host, first.From, first.To)
	if len(steps) > 1 {
		title = fmt.Sprintf("upgrade steps %d–%d of %d: batch %d of %d nodes in %s, → %s", first.Number, steps[len(steps)-1].Number,
			len(x.plan.Steps), first.Batch, len(steps), first.Center, first.To)
	}
	x.e.log.Info("Upgrading", "step", first.Number, "batch", first.Batch, "component", first.Component, "hosts", len(steps), "to", first.To)
	x.e.cfg.Progress.PhaseStart(title, len(steps))
	start := time.Now()
	var err error
	switch first.Component {
	case upgrade.CompEtcd:
		err = stepError(first, x.etcdStep(ctx, first))
	case upgrade.CompControlPlane:
		err = stepError(first, x.controlPlaneStep(ctx, first))
	case upgrade.CompNode:
		err = x.nodeSteps(ctx, steps, j)
	default:
		err = stepError(first, fmt.Errorf("unknown component %q", first.Component))
	}
	x.e.cfg.Progress.PhaseDone(title, err, time.Since(start))
	return err
}

func stepError(s upgrade.Step, err error) error {
	if err == nil {
		return nil
	}
	return &upgrade.StepError{Step: s, Err: err}
}

// host is the run's (wet) host of a server.
func (x *upgradeRun) host(name string) (*phase.Host, error) {
	hs, err := x.m.Hosts(inventory.Selector{Servers: []string{name}})
	if err != nil {
		return nil, err
	}
	return hs[0], nil
}

// probe asks one server about its binaries and units.
func (x *upgradeRun) probe(ctx context.Context, h *phase.Host) (upgrade.HostProbe, error) {
	out, err := h.Query(ctx, upgrade.ProbeCommand(upgradeProbeTargets()))
	if err != nil {
		return nil, fmt.Errorf("asking %s about its binaries: %w", h.Name, err)
	}
	return upgrade.ParseProbe(out)
}

// restartIfStale restarts unit when the probe says its process runs a
// replaced binary, or not to's: the component phases restart a unit only
// when they changed a file, so a binary replaced by a run that stopped
// before its restart is caught here.
func (x *upgradeRun) restartIfStale(ctx context.Context, h *phase.Host, p upgrade.HostProbe, bin, unit string, to inventory.Version) (bool, error) {
	if v, ok := p[bin].Runs(); ok && v == to {
		return false, nil
	}
	x.e.log.Info("Restarting a unit that does not run the installed release", "host", h.Name, "unit", unit, "release", to)
	return true, h.SystemctlRestart(ctx, unit)
}

// etcdStep upgrades one etcd member: it checks the others keep a quorum
// without it, moves leadership away when it leads (to an upgraded member
// if there is one), then runs etcd's phases with the step's release,
// install limited to the member (etcd/start restarts it, checking the
// quorum first, and waits until every member is healthy; etcd/health
// checks the cluster as planned). Membership changes and retirements are
// apply's: they are not run.
func (x *upgradeRun) etcdStep(ctx context.Context, s upgrade.Step) (err error) {
	e := x.e
	to, err := inventory.ParseVersion(s.To)
	if err != nil {
		return err
	}
	members := e.Placement().Etcd.Members
	i := slices.IndexFunc(members, func(m inventory.Member) bool { return m.Name == s.Host })
	if i < 0 {
		return fmt.Errorf("%s is not an etcd member of the placement", s.Host)
	}
	self := members[i]
	p, err := e.EtcdPKI(false)
	if err != nil {
		return err
	}
	cli, err := e.EtcdClient(p)
	if err != nil {
		return err
	}
	defer cli.Close()
	h, err := x.etcdReady(ctx, cli, members, self)
	if err != nil {
		return err
	}
	hs, err := x.host(s.Host)
	if err != nil {
		return err
	}
	if err := x.moveLeadership(ctx, cli, members, h, self, hs, to); err != nil {
		return err
	}
	release, err := x.holdStackedAPI(ctx, hs, s.Host, s.To)
	if err != nil {
		return err
	}
	if release != nil {
		defer func() {
			if err == nil {
				err = release(ctx)
			}
		}()
	}
	run, err := etcd.New(ctx, etcd.Options{Cluster: e.at(e.cfg.Cluster.Spec.Kubernetes.Version, s.To).cfg.Cluster,
		Placement: e.Placement(), Prior: e.prior, PKI: p, Artifacts: e.Artifacts(), Logger: e.log,
		HealthTimeout: e.cfg.HealthTimeout, Dial: e.Dial})
	if err != nil {
		return err
	}
	defer run.Close()
	var phases []phase.Phase
	for _, ph := range run.Phases() {
		switch phase.IDOf(ph) {
		case etcd.PhaseMembership, etcd.PhaseRetire:
			continue
		case etcd.PhaseInstall:
			hp, ok := ph.(*phase.HostPhase)
			if !ok {
				return fmt.Errorf("%s is no longer a host phase: it cannot be limited to %s", etcd.PhaseInstall, s.Host)
			}
			hp.Select = inventory.Selector{Servers: []string{s.Host}}
		}
		phases = append(phases, ph)
	}
	if err := x.m.Run(ctx, phases...); err != nil {
		return unwrapPhase(err)
	}
	st := cli.Status(ctx, etcd.ClientURL(self.Address))
	v, ok := upgrade.VersionIn(st.Version)
	if !ok {
		return fmt.Errorf("etcd on %s does not say its version after the step (%s)", s.Host, st.Error)
	}
	if v == to {
		return nil
	}
	// The binary was installed by a run that stopped before the restart
	// (etcd/start restarts a member only when this run changed a file):
	// restart it now.
	e.log.Info("Restarting etcd: it still runs its old release", "host", s.Host, "runs", v, "release", to)
	if _, err := x.etcdReady(ctx, cli, members, self); err != nil {
		return err
	}
	if err := hs.SystemctlRestart(ctx, etcd.Unit); err != nil {
		return err
	}
	_, err = cli.WaitHealthy(ctx, members, e.cfg.HealthTimeout)
	return err
}

// etcdReady checks the cluster may lose self for a while: its other
// members keep a quorum, and nothing but self differs from the plan.
func (x *upgradeRun) etcdReady(ctx context.Context, cli *etcd.Client, members []inventory.Member, self inventory.Member) (*etcd.ClusterHealth, error) {
	hctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
	h := cli.Health(hctx, members)
	cancel()
	var others []string
	for _, pr := range h.Problems {
		if !strings.HasPrefix(pr, self.Name+" ") {
			others = append(others, pr)
		}
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("etcd is not as planned (%s): repair it first (tricenter status, tricenter apply --only etcd)", strings.Join(others, "; "))
	}
	healthy := map[uint64]bool{}
	var id uint64
	for i, st := range h.Endpoints {
		if st.MemberID != 0 {
			healthy[st.MemberID] = st.Healthy
		}
		if members[i].Name == self.Name {
			id = st.MemberID
		}
	}
	if id == 0 {
		for _, m := range h.Members {
			if slices.Contains(m.PeerURLs, etcd.PeerURL(self.Address)) {
				id = m.ID
			}
		}
	}
	if err := etcd.CheckRemove(h.Members, healthy, id); err != nil {
		return nil, fmt.Errorf("restarting etcd on %s now would lose quorum: %w", self.Name, err)
	}
	return h, nil
}

// moveLeadership moves etcd's leadership away from self when it leads:
// to an upgraded healthy member (production first, then local-dr, then
// remote-dr), else to any healthy member, and waits for the new leader.
func (x *upgradeRun) moveLeadership(ctx context.Context, cli *etcd.Client, members []inventory.Member, h *etcd.ClusterHealth,
	self inventory.Member, hs *phase.Host, to inventory.Version) error {
	if len(h.Endpoints) != len(members) {
		return fmt.Errorf("etcd's members could not be asked who leads (%s)", strings.Join(h.Problems, "; "))
	}
	var selfID uint64
	ids := map[string]uint64{}
	var upgraded, rest []string
	for i, m := range members {
		st := h.Endpoints[i]
		if m.Name == self.Name {
			selfID = st.MemberID
			continue
		}
		if !st.Healthy || st.MemberID == 0 {
			continue
		}
		ids[m.Name] = st.MemberID
		if v, ok := upgrade.VersionIn(st.Version); ok && v.Compare(to) >= 0 {
			upgraded = append(upgraded, m.Name)
		} else {
			rest = append(rest, m.Name)
		}
	}
	if selfID == 0 || h.Leader != selfID {
		return nil
	}
	cands := append(upgrade.LeaderPreference(x.e.cfg.Cluster, upgraded), upgrade.LeaderPreference(x.e.cfg.Cluster, rest)...)
	if len(cands) == 0 {
		return nil // a single member leads alone
	}
	target := cands[0]
	err := hs.Mutate(ctx, fmt.Sprintf("move etcd leadership from %s to %s", self.Name, target), func(ctx context.Context) error {
		return cli.MoveLeader(ctx, etcd.ClientURL(self.Address), ids[target])
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(x.e.cfg.HealthTimeout)
	for {
		hctx, cancel := context.WithTimeout(ctx, upgradeObserveTimeout)
		nh := cli.Health(hctx, members)
		cancel()
		if nh.OK() && nh.Leader != 0 && nh.Leader != selfID {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd leadership did not leave %s within %v (%s)", self.Name, x.e.cfg.HealthTimeout, strings.Join(nh.Problems, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// controlPlaneStep upgrades one control-plane server behind a held API
// VIP: another server must answer /readyz first; the VIP is withdrawn
// (bgpagent.Hold) before anything stops; kube-apiserver,
// kube-controller-manager and kube-scheduler are replaced where they
// differ (the control plane's install record, as control-plane/binaries
// does) and restarted in that order; once /readyz answers with the new
// release and the units run it, the VIP is released. A server that does
// not come back keeps its VIP held: the step is paused and resumed there.
//
// control-plane/start cannot be limited to one server (its phases always
// cover the whole placement), so this step replaces and restarts in its
// own code, with the control plane's paths, units and record. The
// configuration (certificates, kubeconfigs, units) does not depend on
// the release today; apply keeps it converged.
func (x *upgradeRun) controlPlaneStep(ctx context.Context, s upgrade.Step) error {
	e := x.e
	to, err := inventory.ParseVersion(s.To)
	if err != nil {
		return err
	}
	var self inventory.Member
	var others []inventory.Member
	for _, m := range e.Placement().ControlPlane {
		if m.Name == s.Host {
			self = m
		} else {
			others = append(others, m)
		}
	}
	if self.Name == "" {
		return fmt.Errorf("%s is not a control-plane server of the placement", s.Host)
	}
	if err := x.othersServeTheAPI(ctx, s.Host, others); err != nil {
		return err
	}
	bins, err := e.Artifacts().ResolveVersion(ctx, s.To, controlplane.Binaries()...)
	if err != nil {
		return err
	}
	h, err := x.host(s.Host)
	if err != nil {
		return err
	}
	vip := e.IPs().APIVIP.IsValid()
	if vip {
		if err := bgpagent.Hold(ctx, h, bgpagent.APIServerService, "tricenter upgrade to "+s.To); err != nil {
			return err
		}
	}
	files := make([]phase.File, 0, len(controlplane.Binaries()))
	for _, b := range controlplane.Binaries() {
		files = append(files, phase.File{Path: controlplane.BinDir + "/" + b, Local: bins[b], Mode: 0o755})
	}
	done, err := h.InstallFiles(ctx, controlplane.BinariesRecord, files)
	if err != nil {
		return fmt.Errorf("installing the control-plane binaries: %w", err)
	}
	p, err := x.probe(ctx, h)
	if err != nil {
		return err
	}
	for _, c := range controlplane.Components() {
		unit := controlplane.UnitName(c)
		if done.Has(controlplane.BinDir + "/" + c) {
			e.log.Info("Restarting control-plane component on its new release", "host", h.Name, "unit", unit, "release", s.To)
			if err := h.SystemctlRestart(ctx, unit); err != nil {
				return err
			}
			continue
		}
		if _, err := x.restartIfStale(ctx, h, p, c, unit, to); err != nil {
			return err
		}
	}
	if h.DryRun() {
		return nil
	}
	if err := x.waitControlPlane(ctx, h, self, to); err != nil {
		if vip {
			return fmt.Errorf("%w (the API VIP stays held on %s until this step succeeds: tricenter upgrade resumes it)", err, s.Host)
		}
		return err
	}
	if vip {
		return bgpagent.Release(ctx, h, bgpagent.APIServerService)
	}
	return nil
}

// othersServeTheAPI checks that another control-plane server answers
// /readyz before host's is taken out of the VIP.
func (x *upgradeRun) othersServeTheAPI(ctx context.Context, host string, others []inventory.Member) error {
	if len(others) == 0 {
		return nil
	}
	var why []string
	for _, m := range others {
		_, err := x.e.readyz(ctx, apiURL(m.Address))
		if err == nil {
			return nil
		}
		why = append(why, m.Name+": "+err.Error())
	}
	return fmt.Errorf("no other control-plane server answers /readyz (%s): taking %s out would leave the API without a server",
		strings.Join(why, "; "), host)
}

// holdStackedAPI withdraws the API VIP from a control-plane server whose
// kube-apiserver uses the etcd member about to restart (a stacked member:
// its apiserver talks to its local member only, controlplane.EtcdServersFor),
// before etcd stops: that apiserver is not ready until its member is back.
// It returns the release to call once the member is healthy again and the
// apiserver answers /readyz (nil when the server runs no control plane).
func (x *upgradeRun) holdStackedAPI(ctx context.Context, h *phase.Host, host, to string) (func(context.Context) error, error) {
	e := x.e
	if !e.IPs().APIVIP.IsValid() {
		return nil, nil
	}
	var self inventory.Member
	var others []inventory.Member
	for _, m := range e.Placement().ControlPlane {
		if m.Name == host {
			self = m
		} else {
			others = append(others, m)
		}
	}
	if self.Name == "" {
		return nil, nil
	}
	if err := x.othersServeTheAPI(ctx, host, others); err != nil {
		return nil, err
	}
	if err := bgpagent.Hold(ctx, h, bgpagent.APIServerService, "tricenter upgrade: etcd to "+to); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if h.DryRun() {
			return nil
		}
		deadline := time.Now().Add(e.cfg.HealthTimeout)
		for {
			_, err := e.readyz(ctx, apiURL(self.Address))
			if err == nil {
				return bgpagent.Release(ctx, h, bgpagent.APIServerService)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("kube-apiserver on %s not ready %v after its etcd member's upgrade (%w); the API VIP stays held there until tricenter upgrade resumes",
					host, e.cfg.HealthTimeout, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}, nil
}

// waitControlPlane waits until the server's kube-apiserver answers /readyz
// with the new release, its units are active, the controller-manager's
// and scheduler's /healthz answer, and each unit runs the new binary.
func (x *upgradeRun) waitControlPlane(ctx context.Context, h *phase.Host, self inventory.Member, to inventory.Version) error {
	e := x.e
	url := apiURL(self.Address)
	kubectl := shell.Quote(controlplane.BinDir + "/" + controlplane.Kubectl)
	conf := shell.Quote(controlplane.SchedulerConf)
	var units []string
	for _, c := range controlplane.Components() {
		units = append(units, shell.Quote(controlplane.UnitName(c)))
	}
	hostChecks := []struct{ name, cmd string }{
		{"units active", "systemctl is-active " + strings.Join(units, " ") + " 2>&1"},
	}
	for _, c := range []struct {
		name string
		port int
	}{{controlplane.ControllerManager, controlplane.ControllerManagerPort}, {controlplane.Scheduler, controlplane.SchedulerPort}} {
		hostChecks = append(hostChecks, struct{ name, cmd string }{c.name + " /healthz",
			fmt.Sprintf("%s --kubeconfig=%s --request-timeout=5s --server=https://127.0.0.1:%d --insecure-skip-tls-verify=true get --raw=/healthz 2>&1",
				kubectl, conf, c.port)})
	}
	deadline := time.Now().Add(e.cfg.HealthTimeout)
	e.log.Info("Waiting for the control plane to be ready on its new release", "host", h.Name, "release", to, "timeout", e.cfg.HealthTimeout)
	for {
		why := ""
		if _, err := e.readyz(ctx, url); err != nil {
			why = "kube-apiserver /readyz: " + err.Error()
		} else if v, err := e.apiServerVersion(ctx, url); err != nil {
			why = "kube-apiserver " + err.Error()
		} else if v != to {
			why = fmt.Sprintf("kube-apiserver reports %s, not %s", v, to)
		}
		for _, c := range hostChecks {
			if why != "" {
				break
			}
			if out, err := h.Query(ctx, c.cmd); err != nil {
				why = c.name + ": " + lastLine(out, err)
			}
		}
		if why == "" {
			p, err := x.probe(ctx, h)
			if err != nil {
				why = err.Error()
			}
			for _, c := range []string{controlplane.ControllerManager, controlplane.Scheduler} {
				if v, ok := p[c].Runs(); why == "" && (!ok || v != to) {
					why = c + " does not run " + to.String()
				}
			}
		}
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control plane on %s not ready on %s after %v (%s): see journalctl -u kube-apiserver -u kube-controller-manager -u kube-scheduler there",
				h.Name, to, e.cfg.HealthTimeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func lastLine(out string, err error) string {
	s := strings.TrimSpace(out)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		s = err.Error()
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// nodeSteps upgrades a batch of nodes: each is cordoned (recorded first,
// so that only the upgrade's own cordons are lifted) and drained; then
// node/kubelet and node/kube-proxy run with the new release on the
// drained ones at once (they replace the binaries and restart what
// changed); a unit still on its old binary is restarted; each Node must
// be Ready with the new kubelet version; then it is uncordoned.
func (x *upgradeRun) nodeSteps(ctx context.Context, steps []upgrade.Step, j *upgrade.Journal) error {
	e := x.e
	to, err := inventory.ParseVersion(steps[0].To)
	if err != nil {
		return err
	}
	cs, err := e.Clientset()
	if err != nil {
		return err
	}
	failed := map[string]error{}
	var mu sync.Mutex
	fail := func(host string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if failed[host] == nil {
			failed[host] = err
		}
	}
	byHost := map[string]upgrade.Step{}
	var names []string
	for _, s := range steps {
		byHost[s.Host], names = s, append(names, s.Host)
	}
	hosts, err := x.m.Hosts(inventory.Selector{Servers: names})
	if err != nil {
		return err
	}
	if len(hosts) > 0 && !hosts[0].DryRun() {
		if err := x.proxiesFollow(ctx, cs); err != nil {
			return &upgrade.StepError{Step: steps[0], Err: err}
		}
	}
	// Cordon and drain, every node of the batch at once. The node keeps
	// its load-balancer VIPs: kube-proxy's rules stay in place while it
	// restarts, and a withdrawal would move the routers' ECMP hash buckets
	// (RFC 2992 hash-threshold), resetting connections in flight through
	// the other nodes too.
	_ = x.m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
		if err := x.cordonAndDrain(ctx, cs, h.Name, j); err != nil {
			fail(h.Name, err)
		}
		return nil
	})
	var drained []string
	for _, n := range names {
		if failed[n] == nil {
			drained = append(drained, n)
		}
	}
	if len(drained) > 0 {
		r := &applyRun{e: e.at(steps[0].To, e.cfg.Cluster.Spec.Etcd.Version), o: Options{Servers: drained}, m: x.m,
			res: &Result{Changes: map[string][]string{}}}
		phases, err := r.nodePhases(ctx)
		if err != nil {
			return err
		}
		// node/kubelet, then node/kube-proxy on the servers where the
		// kubelet went through: a server that failed is not held back by
		// the others, nor they by it.
		for _, id := range []string{node.IDKubelet, node.IDKubeProxy} {
			i := slices.IndexFunc(phases, func(ph phase.Phase) bool { return phase.IDOf(ph) == id })
			if i < 0 {
				return fmt.Errorf("the node phases have no %s", id)
			}
			var left []string
			for _, n := range drained {
				if failed[n] == nil {
					left = append(left, n)
				}
			}
			if len(left) == 0 {
				break
			}
			if hp, ok := phases[i].(*phase.HostPhase); ok {
				hp.Select = inventory.Selector{Servers: left}
			}
			if err := x.m.Run(ctx, phases[i]); err != nil {
				byHostErr := hostErrorsOf(err)
				for _, n := range left {
					switch {
					case byHostErr[n] != nil:
						fail(n, fmt.Errorf("%s: %w", id, byHostErr[n]))
					case len(byHostErr) == 0:
						fail(n, unwrapPhase(err))
					}
				}
			}
		}
	}
	var ready []*phase.Host
	for _, h := range hosts {
		if failed[h.Name] == nil {
			ready = append(ready, h)
		}
	}
	_ = x.m.Each(ctx, ready, func(ctx context.Context, h *phase.Host) error {
		if err := x.finishNode(ctx, cs, h, to, j); err != nil {
			fail(h.Name, err)
		}
		return nil
	})
	var errs []error
	for _, n := range names {
		if failed[n] != nil {
			errs = append(errs, &upgrade.StepError{Step: byHost[n], Err: failed[n]})
		}
	}
	return errors.Join(errs...)
}

// ProxySyncService is the Service without endpoints (kube-system) whose
// port an upgrade changes before each batch of node steps to see every
// kube-proxy apply it; it is deleted once they have.
const ProxySyncService = "tricenter-proxy-sync"

// proxyFollowTimeout bounds the wait for every kube-proxy to apply a
// change: client-go's reflectors wait at most 30 s, with as much jitter,
// before they watch again.
const proxyFollowTimeout = 2 * time.Minute

// proxiesFollow changes ProxySyncService's port and waits until every
// node's kube-proxy has written the new port into its rules, which shows
// that its watch of the API is alive now. A control-plane step breaks
// watches (its API server stops, and the routers move the VIP's flows when
// a server leaves and comes back), and client-go waits up to 30 s,
// doubling from 0.8 s with jitter, before it watches again. A node drained
// while a kube-proxy elsewhere still has the old view would keep getting
// that kube-proxy's connections after its pods are gone.
func (x *upgradeRun) proxiesFollow(ctx context.Context, cs kubernetes.Interface) error {
	start := time.Now()
	svcs := cs.CoreV1().Services(metav1.NamespaceSystem)
	port := int32(20000 + rand.IntN(20000))
	cur, err := svcs.Get(ctx, ProxySyncService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = svcs.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: ProxySyncService, Labels: map[string]string{"app.kubernetes.io/managed-by": "tricenter"}},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "p", Port: port, Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
	case err == nil:
		if len(cur.Spec.Ports) == 1 && cur.Spec.Ports[0].Port == port {
			port++
		}
		cur.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: port, Protocol: corev1.ProtocolTCP}}
		_, err = svcs.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("changing Service %s/%s to see every kube-proxy follow: %w", metav1.NamespaceSystem, ProxySyncService, err)
	}
	defer func() {
		_ = svcs.Delete(context.WithoutCancel(ctx), ProxySyncService, metav1.DeleteOptions{})
	}()
	hosts, err := x.m.Hosts(inventory.Selector{Servers: hostNames(x.e.cfg.Cluster.Hosts())})
	if err != nil {
		return err
	}
	cmd := fmt.Sprintf(`iptables-save -t filter | grep -F %s | grep -cE -- '--dport %d( |$)' || true`,
		shell.Quote(metav1.NamespaceSystem+"/"+ProxySyncService+":p has no endpoints"), port)
	deadline := time.Now().Add(proxyFollowTimeout)
	for {
		var behind []string
		var mu sync.Mutex
		_ = x.m.Each(ctx, hosts, func(ctx context.Context, h *phase.Host) error {
			qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			out, err := h.Query(qctx, cmd)
			if err != nil || strings.TrimSpace(out) == "0" {
				mu.Lock()
				behind = append(behind, h.Name)
				mu.Unlock()
			}
			return nil
		})
		if len(behind) == 0 {
			x.e.log.Info("Every kube-proxy follows the API", "nodes", len(hosts), "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) {
			slices.Sort(behind)
			return fmt.Errorf("kube-proxy on %s has not applied a Service change within %v: its watch of the API is down (see journalctl -u kube-proxy there); no node is drained until every kube-proxy follows",
				strings.Join(behind, ", "), proxyFollowTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// cordonAndDrain cordons a node (recording the cordon first when the
// upgrade is the one making it) and drains it.
func (x *upgradeRun) cordonAndDrain(ctx context.Context, cs kubernetes.Interface, name string, j *upgrade.Journal) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Node %s: %w", name, err)
	}
	if !n.Spec.Unschedulable {
		if err := j.Cordoning(name); err != nil {
			return err
		}
	}
	x.e.cfg.Progress.Host(name, "cordon and drain")
	if err := drain.Cordon(ctx, cs, name); err != nil {
		return fmt.Errorf("cordoning: %w", err)
	}
	timeout := x.o.DrainTimeout
	if timeout <= 0 {
		timeout = drain.DefaultTimeout
	}
	err = drain.Drain(ctx, cs, name, drain.Options{Timeout: timeout, Logger: x.e.log})
	var be *drain.BlockedError
	if errors.As(err, &be) {
		return fmt.Errorf("%s: %s (the node stays cordoned; move or delete those pods, or raise --drain-timeout, then run the upgrade again)",
			be.Error(), strings.Join(be.Pods, ", "))
	}
	return err
}

// finishNode restarts a unit still on its old binary, waits until the
// Node is Ready with the new kubelet, and lifts the upgrade's cordon.
func (x *upgradeRun) finishNode(ctx context.Context, cs kubernetes.Interface, h *phase.Host, to inventory.Version, j *upgrade.Journal) error {
	e := x.e
	p, err := x.probe(ctx, h)
	if err != nil {
		return err
	}
	for _, u := range []struct{ bin, unit string }{{upgrade.BinKubelet, node.KubeletUnit}, {upgrade.BinKubeProxy, node.KubeProxyUnit}} {
		if _, err := x.restartIfStale(ctx, h, p, u.bin, u.unit, to); err != nil {
			return err
		}
	}
	if h.DryRun() {
		return nil
	}
	limit := e.cfg.GateTimeout
	deadline := time.Now().Add(limit)
	for {
		n, err := health.ObserveOne(ctx, cs, h.Name, nil, e.cfg.Clock)
		why := ""
		switch v, ok := upgrade.VersionIn(n.Version); {
		case err != nil:
			why = err.Error()
		case !n.Ready:
			why = "not Ready: " + n.Reason
		case !ok || v != to:
			why = fmt.Sprintf("its kubelet reports %q, not %s", n.Version, to)
		}
		if why == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s not Ready on %s after %v (%s): see journalctl -u kubelet there; it stays cordoned", h.Name, to, limit, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if !j.CordonedByUpgrade(h.Name) {
		return nil
	}
	if err := drain.Uncordon(ctx, cs, h.Name); err != nil {
		return fmt.Errorf("uncordoning: %w", err)
	}
	return j.Uncordoned(h.Name)
}

// hostErrorsOf finds the per-host errors in err (through wrapping and
// errors.Join).
func hostErrorsOf(err error) map[string]error {
	out := map[string]error{}
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) { //nolint:errorlint // walks the wrap tree itself, joins included
		case nil:
		case *phase.HostError:
			out[x.Host] = x.Err
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// UpgradeNeeded says whether the releases the cluster runs (as recorded
// by the last apply or upgrade) differ from the inventory's, or an
// upgrade is in progress: Apply refuses then, Upgrade is the way.
func (e *Engine) UpgradeNeeded() (bool, error) {
	if rec, err := e.UpgradeInProgress(); err != nil || rec != nil {
		return rec != nil, err
	}
	p, spec := e.prior, e.cfg.Cluster.Spec
	if p == nil {
		return false, nil
	}
	return (p.Kubernetes != "" && p.Kubernetes != spec.Kubernetes.Version) || (p.Etcd != "" && p.Etcd != spec.Etcd.Version), nil
}

// CheckRecordedReleases checks the inventory's releases against the ones
// the cluster runs as recorded, before anything is observed (a Terraform
// plan): one Kubernetes minor at a time, no minor downgrade of Kubernetes
// or etcd. Upgrade checks again against what it observes.
func (e *Engine) CheckRecordedReleases() error {
	p, spec := e.prior, e.cfg.Cluster.Spec
	if p == nil {
		return nil
	}
	check := func(what, from, to string) error {
		if from == "" || from == to {
			return nil
		}
		f, err := inventory.ParseVersion(from)
		if err != nil {
			return fmt.Errorf("the recorded %s release: %w", what, err)
		}
		t, err := inventory.ParseVersion(to)
		if err != nil {
			return fmt.Errorf("the %s release: %w", what, err)
		}
		switch {
		case t.Major != f.Major || t.Minor > f.Minor+1:
			return fmt.Errorf("%s %s → %s skips a minor: upgrade to v%d.%d.x first", what, f, t, f.Major, f.Minor+1)
		case t.Minor < f.Minor:
			return fmt.Errorf("%s %s → %s is a minor downgrade: not supported (restore from a snapshot instead)", what, f, t)
		}
		return nil
	}
	return errors.Join(check("Kubernetes", p.Kubernetes, spec.Kubernetes.Version), check("etcd", p.Etcd, spec.Etcd.Version))
}
