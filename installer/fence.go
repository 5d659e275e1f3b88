package installer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// OutOfServiceTaint is the taint a fence puts on the Nodes of a dead
// center (node.kubernetes.io/out-of-service=nodeshutdown:NoExecute, GA
// since Kubernetes 1.28): on a NotReady Node that carries it,
// kube-controller-manager force-deletes the pods and detaches their
// volumes, so StatefulSet pods start elsewhere at once instead of waiting
// for someone to confirm the old ones are dead.
var OutOfServiceTaint = corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}

// Fence bounds.
const (
	// FencePowerQueryTimeout bounds asking one BMC for the power state: a
	// BMC that does not answer within it leaves its server unconfirmed.
	FencePowerQueryTimeout = 20 * time.Second
	// DefaultFenceOffTimeout bounds powering one server off and its BMC
	// reporting it off.
	DefaultFenceOffTimeout = 2 * time.Minute
	// fenceAPITimeout bounds each read of the Nodes.
	fenceAPITimeout = 30 * time.Second
)

// Power column of a fence report (FencedServer.Power); the ones with a
// reason are written "prefix (reason)".
const (
	FencePowerOff       = "off (BMC)"
	FencePowerOffNow    = "powered off now (BMC)"
	FencePowerOn        = "on (BMC)"
	FencePowerWouldOff  = "on (BMC): would power off"
	FencePowerAssumed   = "assumed dead"
	FencePowerUnchecked = "not confirmed"
)

// Node column of a fence report (FencedServer.Node).
const (
	FenceNodeTainted        = "tainted"
	FenceNodeAlreadyTainted = "already tainted"
	FenceNodeNotRegistered  = "not registered"
	FenceNodeWouldTaint     = "would taint"
	FenceNodeNotTainted     = "not tainted"
)

// ErrFenceRefused is returned when a fence could not confirm that every
// server of the center is off (a BMC did not answer and AssumeDead is not
// set, or a power-off failed): no Node was tainted.
var ErrFenceRefused = errors.New("fence refused")

// ErrFenceNotConfirmed is returned when servers of the center are powered
// on and the power-off was not confirmed: nothing was changed.
var ErrFenceNotConfirmed = errors.New("not confirmed: no server was powered off and no Node was tainted")

// PowerControl reads and cuts servers' power. Errors name the server (the
// BMC client's do).
type PowerControl interface {
	// State says whether the server is powered on now.
	State(ctx context.Context, h inventory.Host) (on bool, err error)
	// Off powers the server off; when it returns nil the server reports
	// off.
	Off(ctx context.Context, h inventory.Host) error
}

// BMCPowerControl reads and cuts servers' power through their BMCs (IPMI
// chassis status and control), one pooled session per BMC.
type BMCPowerControl struct {
	Pool *bmc.Pool
	// OffTimeout bounds the wait until a server powered off reports off
	// (DefaultFenceOffTimeout).
	OffTimeout time.Duration
}

func (p *BMCPowerControl) client(h inventory.Host) (*bmc.Client, error) {
	t, err := bmc.TargetFromHost(h)
	if err != nil {
		return nil, err
	}
	return p.Pool.Client(t)
}

// State reads the chassis power state.
func (p *BMCPowerControl) State(ctx context.Context, h inventory.Host) (bool, error) {
	c, err := p.client(h)
	if err != nil {
		return false, err
	}
	st, err := c.PowerState(ctx)
	return st == bmc.PowerOn, err
}

// Off is a hard power off, then a wait until the BMC reports off.
func (p *BMCPowerControl) Off(ctx context.Context, h inventory.Host) error {
	c, err := p.client(h)
	if err != nil {
		return err
	}
	if _, err := c.SetPower(ctx, bmc.ActionOff); err != nil {
		return err
	}
	timeout := p.OffTimeout
	if timeout <= 0 {
		timeout = DefaultFenceOffTimeout
	}
	return c.WaitPower(ctx, bmc.PowerOff, timeout)
}

// FenceOptions configure Engine.Fence.
type FenceOptions struct {
	// Center is the center whose servers are fenced.
	Center string
	// AssumeDead fences servers whose BMC does not answer (or errs) as if
	// they were off. Only for servers the operator knows are dead: a
	// running server tainted out-of-service runs a second copy of its
	// StatefulSet pods.
	AssumeDead bool
	// Yes powers off the servers that are on without asking.
	Yes bool
	// Confirm is asked, listing them, before servers that are on are
	// powered off (unless Yes); false or nil: ErrFenceNotConfirmed.
	Confirm func(ctx context.Context, question string) (bool, error)
	// DryRun asks the BMCs and reads the Nodes but changes nothing.
	DryRun bool
	// Power replaces the BMCs (tests: a fake); nil: the BMCs.
	Power PowerControl
}

// FenceReport is what a fence found and did, per server.
type FenceReport struct {
	Center  string         `json:"center"`
	DryRun  bool           `json:"dryRun,omitempty"`
	Servers []FencedServer `json:"servers"`
	// Fenced is true when every server is confirmed off (or assumed dead)
	// and every registered Node carries the taint (in a dry run: would).
	Fenced bool `json:"fenced"`
	// Refused says why nothing was tainted ("" when not refused).
	Refused string `json:"refused,omitempty"`
}

// FencedServer is one server of a fence.
type FencedServer struct {
	Name string `json:"name"`
	// Power is what its BMC said or what was done: "off (BMC)", "powered
	// off now (BMC)", "on (BMC)", "on (BMC): would power off", "on (BMC):
	// power-off failed", "assumed dead (BMC did not answer: …)" or "not
	// confirmed (BMC did not answer: …)" ("BMC not usable: …" when the
	// inventory gives it no usable bmc block).
	Power string `json:"power"`
	// Node is "tainted", "already tainted", "not registered", "would
	// taint" or "not tainted" (refused, or the taint failed: Error).
	Node string `json:"node"`
	// Error is what failed on this server ("" when nothing did).
	Error string `json:"error,omitempty"`
}

// Fence fences a dead center so its pods move at once: it asks every
// server's BMC for its power state, powers off (after confirmation) the
// servers that are still on and waits until they report off, then taints
// every server's Node with OutOfServiceTaint. A server whose BMC does not
// answer is not confirmed off: unless o.AssumeDead the whole fence is
// refused (ErrFenceRefused) and no Node is tainted. The Nodes are read
// before any power changes: a fence that cannot reach the API powers
// nothing off. The report comes with ErrFenceRefused and
// ErrFenceNotConfirmed too.
func (e *Engine) Fence(ctx context.Context, o FenceOptions) (*FenceReport, error) {
	hosts, err := e.centerHosts(o.Center)
	if err != nil {
		return nil, err
	}
	cs, err := e.appliedClientset()
	if err != nil {
		return nil, err
	}
	if o.Power == nil {
		pool := bmc.NewPool(bmc.Options{Logger: e.log, Concurrency: e.cfg.Concurrency})
		defer pool.Close(context.WithoutCancel(ctx))
		o.Power = &BMCPowerControl{Pool: pool}
	}
	return e.fence(ctx, o, hosts, cs)
}

// appliedClientset is Clientset for a cluster an apply created: without
// the Kubernetes CA in the state there is nothing to fence (ErrNoPKI), and
// no credential is minted for an API that would not trust it.
func (e *Engine) appliedClientset() (kubernetes.Interface, error) {
	if ok, err := e.PKIStore().HasCA(pki.KubernetesCA); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: the Kubernetes CA is not in the state", ErrNoPKI)
	}
	return e.Clientset()
}

// centerHosts are the servers of center; an unknown center is an error
// naming the inventory's centers.
func (e *Engine) centerHosts(center string) ([]inventory.Host, error) {
	if e.cfg.Cluster.Center(center) == nil {
		var names []string
		for _, c := range e.cfg.Cluster.Spec.Centers {
			names = append(names, c.Name)
		}
		return nil, fmt.Errorf("center %q (--center) is not in the inventory: use %s", center, strings.Join(names, ", "))
	}
	var out []inventory.Host
	// A lost center is what gets fenced: its servers count here.
	for _, h := range e.cfg.Cluster.AllHosts() {
		if h.Center.Name == center {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("center %s has no server in the inventory", center)
	}
	return out, nil
}

// powerAnswer is one server's power state as its BMC told it.
type powerAnswer struct {
	on  bool
	err error
}

// fence is Fence with the servers, the API client and o.Power given.
func (e *Engine) fence(ctx context.Context, o FenceOptions, hosts []inventory.Host, cs kubernetes.Interface) (*FenceReport, error) {
	rep := &FenceReport{Center: o.Center, DryRun: o.DryRun, Servers: make([]FencedServer, len(hosts))}
	e.log.Info("Reading the Nodes before fencing", "center", o.Center)
	tainted, err := outOfServiceNodes(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("fencing center %s: %w", o.Center, err)
	}

	e.log.Info("Asking the BMCs for the power state", "center", o.Center, "servers", len(hosts))
	answers := make([]powerAnswer, len(hosts))
	e.eachHost(ctx, hosts, func(ctx context.Context, i int, h inventory.Host) {
		qctx, cancel := context.WithTimeout(ctx, FencePowerQueryTimeout)
		defer cancel()
		on, err := o.Power.State(qctx, h)
		answers[i] = powerAnswer{on: on, err: err}
	})
	var on, unconfirmed []int
	for i, h := range hosts {
		s := &rep.Servers[i]
		s.Name = h.Name
		a := answers[i]
		switch {
		case a.err != nil:
			unconfirmed = append(unconfirmed, i)
			s.Error = a.err.Error()
			why := "BMC did not answer: "
			if errors.Is(a.err, bmc.ErrConfig) {
				why = "BMC not usable: "
			}
			if o.AssumeDead {
				s.Power = FencePowerAssumed + " (" + why + s.Error + ")"
				e.log.Warn("Assuming the server is dead: its power state is unknown", "server", h.Name, "err", a.err)
			} else {
				s.Power = FencePowerUnchecked + " (" + why + s.Error + ")"
			}
		case a.on:
			on = append(on, i)
			s.Power = FencePowerOn
		default:
			s.Power = FencePowerOff
		}
		if reg, ok := tainted[h.Name]; !ok {
			s.Node = FenceNodeNotRegistered
		} else if reg {
			s.Node = FenceNodeAlreadyTainted
		}
	}
	notTainted := func() {
		for i := range rep.Servers {
			if rep.Servers[i].Node == "" {
				rep.Servers[i].Node = FenceNodeNotTainted
			}
		}
	}

	if len(unconfirmed) > 0 && !o.AssumeDead {
		rep.Refused = fmt.Sprintf("the BMCs of %s did not confirm they are off, so no Node was tainted: "+
			"pass --assume-dead (FenceOptions.AssumeDead) only if you know these servers are dead "+
			"(a running server tainted out-of-service runs a second copy of its StatefulSet pods)",
			strings.Join(namesAt(hosts, unconfirmed), ", "))
		notTainted()
		return rep, fmt.Errorf("%w: %s", ErrFenceRefused, rep.Refused)
	}

	if o.DryRun {
		for _, i := range on {
			rep.Servers[i].Power = FencePowerWouldOff
		}
		for i := range rep.Servers {
			if rep.Servers[i].Node == "" {
				rep.Servers[i].Node = FenceNodeWouldTaint
			}
		}
		rep.Fenced = true
		return rep, nil
	}

	if len(on) > 0 {
		if !o.Yes {
			them := "them"
			if len(on) == 1 {
				them = "it"
			}
			q := fmt.Sprintf("The BMCs report %s of center %s powered on: %s. Power %s off now, then taint the center's Nodes out-of-service?",
				countOf(len(on), "server", "servers"), o.Center, strings.Join(namesAt(hosts, on), ", "), them)
			ok := false
			if o.Confirm != nil {
				ok, err = o.Confirm(ctx, q)
				if err != nil {
					notTainted()
					return rep, err
				}
			}
			if !ok {
				notTainted()
				rep.Refused = "the power-off of the servers that are on was not confirmed"
				return rep, ErrFenceNotConfirmed
			}
		}
		e.log.Info("Powering off the servers that are on", "center", o.Center, "servers", strings.Join(namesAt(hosts, on), ","))
		var failed []int
		var mu sync.Mutex
		e.eachHost(ctx, pick(hosts, on), func(ctx context.Context, j int, h inventory.Host) {
			i := on[j]
			err := powerOff(ctx, o.Power, h)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Servers[i].Error = err.Error()
				rep.Servers[i].Power = FencePowerOn + ": power-off failed"
				failed = append(failed, i)
				return
			}
			rep.Servers[i].Power = FencePowerOffNow
		})
		if len(failed) > 0 {
			slices.Sort(failed)
			rep.Refused = fmt.Sprintf("%s could not be confirmed off, so no Node was tainted",
				strings.Join(namesAt(hosts, failed), ", "))
			notTainted()
			return rep, fmt.Errorf("%w: %s", ErrFenceRefused, rep.Refused)
		}
	}

	var errs []error
	for i, h := range hosts {
		s := &rep.Servers[i]
		if s.Node == FenceNodeNotRegistered || s.Node == FenceNodeAlreadyTainted {
			// Read just before: a fence run twice changes nothing.
			continue
		}
		e.log.Info("Tainting the Node out-of-service", "server", h.Name, "taint", OutOfServiceTaint.ToString())
		res, err := taintOutOfService(ctx, cs, h.Name)
		if err != nil {
			s.Node, s.Error = FenceNodeNotTainted, err.Error()
			errs = append(errs, err)
			continue
		}
		s.Node = res
	}
	rep.Fenced = len(errs) == 0
	return rep, errors.Join(errs...)
}

// powerOff powers h off through p, bounded by DefaultFenceOffTimeout, and
// asks again: only a server that reports off counts.
func powerOff(ctx context.Context, p PowerControl, h inventory.Host) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultFenceOffTimeout)
	defer cancel()
	if err := p.Off(ctx, h); err != nil {
		return err
	}
	on, err := p.State(ctx, h)
	if err != nil {
		return err
	}
	if on {
		return fmt.Errorf("%s: the BMC still reports power on after the power-off", h.Name)
	}
	return nil
}

// outOfServiceNodes lists the Nodes: registered name → whether it carries
// OutOfServiceTaint.
func outOfServiceNodes(ctx context.Context, cs kubernetes.Interface) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, fenceAPITimeout)
	defer cancel()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	out := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		out[n.Name] = hasOutOfService(&n)
	}
	return out, nil
}

func hasOutOfService(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&OutOfServiceTaint) })
}

// taintOutOfService adds OutOfServiceTaint to a Node (Update with conflict
// retry) and says what it did: tainted, already tainted, not registered.
func taintOutOfService(ctx context.Context, cs kubernetes.Interface, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, fenceAPITimeout)
	defer cancel()
	nodes := cs.CoreV1().Nodes()
	res := FenceNodeTainted
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			res = FenceNodeNotRegistered
			return nil
		}
		if err != nil {
			return err
		}
		if hasOutOfService(n) {
			res = FenceNodeAlreadyTainted
			return nil
		}
		t := OutOfServiceTaint
		t.TimeAdded = &metav1.Time{Time: time.Now()}
		n.Spec.Taints = append(n.Spec.Taints, t)
		res = FenceNodeTainted
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{FieldManager: addons.FieldManager})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("tainting Node %s out-of-service: %w", name, err)
	}
	return res, nil
}

// untaintOutOfService removes OutOfServiceTaint from a Node (Update with
// conflict retry); it reports whether the Node carried it.
func untaintOutOfService(ctx context.Context, cs kubernetes.Interface, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, fenceAPITimeout)
	defer cancel()
	nodes := cs.CoreV1().Nodes()
	removed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		removed = hasOutOfService(n)
		if !removed {
			return nil
		}
		n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.MatchTaint(&OutOfServiceTaint) })
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{FieldManager: addons.FieldManager})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("removing the out-of-service taint from Node %s: %w", name, err)
	}
	return removed, nil
}

// eachHost runs fn on every host, at most the engine's concurrency at
// once; once ctx ends, fn runs on the hosts left one by one with the ended
// context (so each records why it was not done).
func (e *Engine) eachHost(ctx context.Context, hosts []inventory.Host, fn func(ctx context.Context, i int, h inventory.Host)) {
	sem := make(chan struct{}, max(e.cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, h := range hosts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			// Not started: fn sees the ended context and records it.
			fn(ctx, i, h)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(ctx, i, h)
		}()
	}
	wg.Wait()
}

func namesAt(hosts []inventory.Host, idx []int) []string {
	out := make([]string, 0, len(idx))
	for _, i := range idx {
		out = append(out, hosts[i].Name)
	}
	return out
}

func pick(hosts []inventory.Host, idx []int) []inventory.Host {
	out := make([]inventory.Host, 0, len(idx))
	for _, i := range idx {
		out = append(out, hosts[i])
	}
	return out
}

// countOf is "1 server" or "3 servers".
func countOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// Node column of an unfence report (UnfencedServer.Node).
const (
	UnfenceNodeUntainted     = "untainted"
	UnfenceNodeWouldUntaint  = "would untaint"
	UnfenceNodeKept          = "kept tainted"
	UnfenceNodeNotTainted    = "not tainted"
	UnfenceNodeNotRegistered = "not registered"
)

// UnfenceReport is what an unfence found and did, per server.
type UnfenceReport struct {
	Center  string           `json:"center"`
	DryRun  bool             `json:"dryRun,omitempty"`
	Servers []UnfencedServer `json:"servers"`
	// Unfenced is true when no Node of the center keeps the taint (in a
	// dry run: would keep).
	Unfenced bool `json:"unfenced"`
}

// UnfencedServer is one server of an unfence.
type UnfencedServer struct {
	Name string `json:"name"`
	// Ready is the health rule's verdict now; Reason says why not.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Boot is the rule's boot id check ("matches", "not verified (why)"…).
	Boot string `json:"boot,omitempty"`
	// Node is "untainted", "would untaint", "kept tainted" (not Ready:
	// Reason), "not tainted" or "not registered".
	Node string `json:"node"`
	// Error is what failed on this server ("" when nothing did).
	Error string `json:"error,omitempty"`
}

// Unfence takes OutOfServiceTaint off the Nodes of center that are Ready
// now by the one health rule (Ready condition, a fresh kubelet heartbeat,
// and the server's own boot id over a new SSH connection): a Node that is
// not Ready keeps it, and the report says why. The report's Unfenced is
// false while any Node keeps the taint.
func (e *Engine) Unfence(ctx context.Context, center string, dryRun bool) (*UnfenceReport, error) {
	hosts, err := e.centerHosts(center)
	if err != nil {
		return nil, err
	}
	cs, err := e.appliedClientset()
	if err != nil {
		return nil, err
	}
	m := e.ObserveManager()
	defer m.Close()
	return e.unfence(ctx, center, hosts, dryRun, cs, bootIDs(m))
}

// unfence is Unfence with the servers, the API client and the boot id
// reader given.
func (e *Engine) unfence(ctx context.Context, center string, hosts []inventory.Host, dryRun bool, cs kubernetes.Interface, boots health.BootReader) (*UnfenceReport, error) {
	rep := &UnfenceReport{Center: center, DryRun: dryRun}
	tainted, err := outOfServiceNodes(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("unfencing center %s: %w", center, err)
	}
	e.log.Info("Judging the Nodes of the center by the health rule", "center", center, "servers", len(hosts))
	octx, cancel := context.WithTimeout(ctx, fenceAPITimeout)
	observed, err := health.Observe(octx, cs, hostNames(hosts), boots, e.cfg.Clock)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("unfencing center %s: %w", center, err)
	}
	byName := make(map[string]health.Node, len(observed))
	for _, n := range observed {
		byName[n.Name] = n
	}
	var errs []error
	kept := false
	for _, h := range hosts {
		n := byName[h.Name]
		s := UnfencedServer{Name: h.Name, Ready: n.Ready, Reason: n.Reason, Boot: n.Boot}
		has, registered := tainted[h.Name]
		switch {
		case !registered || !n.Registered:
			s.Node = UnfenceNodeNotRegistered
		case !has:
			s.Node = UnfenceNodeNotTainted
		case !n.Ready:
			s.Node = UnfenceNodeKept
			kept = true
			e.log.Info("Keeping the out-of-service taint: the Node is not Ready", "server", h.Name, "reason", n.Reason)
		case dryRun:
			s.Node = UnfenceNodeWouldUntaint
		default:
			e.log.Info("Removing the out-of-service taint", "server", h.Name)
			removed, err := untaintOutOfService(ctx, cs, h.Name)
			switch {
			case err != nil:
				s.Node, s.Error = UnfenceNodeKept, err.Error()
				kept = true
				errs = append(errs, err)
			case removed:
				s.Node = UnfenceNodeUntainted
			default:
				s.Node = UnfenceNodeNotTainted
			}
		}
		rep.Servers = append(rep.Servers, s)
	}
	rep.Unfenced = !kept
	return rep, errors.Join(errs...)
}
