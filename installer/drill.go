package installer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tricenter/terraform-provider-tricenter/bmc"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/health"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/state"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// How a drill takes servers down (DrillOptions.Power).
const (
	// DrillPowerBMC powers every server of the center off and on through
	// its BMC: a real power cut.
	DrillPowerBMC = etcd.MethodBMC
	// DrillPowerSSH kills etcd with SIGKILL over SSH on the center's etcd
	// members and holds it stopped: the servers stay up.
	DrillPowerSSH = etcd.MethodSSH
)

// Kubernetes probes of a drill (DrillOptions.Kubernetes).
const (
	// DrillKubernetesAuto probes when the API answers before the drill.
	DrillKubernetesAuto = "auto"
	DrillKubernetesOn   = "on"
	DrillKubernetesOff  = "off"
)

// ErrDrillNotConfirmed is returned when DrillOptions.Confirm declined:
// nothing was touched.
var ErrDrillNotConfirmed = errors.New("not confirmed: the drill did not start")

// DrillOptions configure a center-loss drill (Engine.Drill).
type DrillOptions struct {
	// Center is the center to lose.
	Center string
	// Power is how the servers go down: DrillPowerBMC, DrillPowerSSH, or
	// "" for BMC when every server of the center has one, else SSH.
	Power string
	// Hold, Writers, RestoreTimeout and HealthTimeout are etcd.DrillOptions'.
	Hold           time.Duration
	Writers        int
	RestoreTimeout time.Duration
	HealthTimeout  time.Duration
	// Kubernetes says whether the API and the surviving Nodes are probed
	// during the outage: DrillKubernetesAuto (also ""), On or Off.
	Kubernetes string
	// Confirm, when set, is shown what the drill takes down before
	// anything is touched; the drill goes on only when it returns true
	// (false: ErrDrillNotConfirmed).
	Confirm func(ctx context.Context, t *DrillTargets) (bool, error)
	// Notice receives what the operator should know before the drill
	// starts (the SSH method is no power cut, the API is not probed); nil
	// logs it as a warning.
	Notice func(msg string)
	// Started is called with what goes dark once the drill is about to
	// take the center down (after the confirmation, the lock and the
	// probes): from then on a cancelled ctx restores the center before
	// Drill returns.
	Started func(t *DrillTargets)
	// Abandon, once closed, gives up the restore (the CLI's second
	// Ctrl-C); the report then lists what may still be off.
	Abandon <-chan struct{}
	// PowerFor replaces how the servers are taken down and brought back
	// for a method (tests: a fake); nil: the BMCs, or SSH.
	PowerFor func(method string) (etcd.Power, error)
}

// DrillTargets is what a drill takes down, shown before it starts.
type DrillTargets struct {
	Center string
	// Method is DrillPowerBMC or DrillPowerSSH; Power describes it.
	Method string
	Power  string
	// Servers go dark: every server of the center for a power cut, its
	// etcd members for SSH.
	Servers []inventory.Host
	// Placement says which of them are etcd members and control-plane
	// servers, and how many remain.
	Placement *inventory.Placement
}

// Drill runs a center-loss drill of o.Center: it takes the center down
// while writers keep writing to etcd through the other centers, measures
// how long until writes succeed again, restores the center, waits for the
// cluster to be healthy and reads every acknowledged write back (see
// etcd.Drill). It holds the cluster's lock from the confirmation on and
// keeps a journal in the state directory so ResumeDrill can bring back
// what a killed drill left down.
func (e *Engine) Drill(ctx context.Context, o DrillOptions) (*etcd.DrillReport, error) {
	if err := checkDrillKubernetes(o.Kubernetes); err != nil {
		return nil, err
	}
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	method, err := chooseDrillPower(e.cfg.Cluster, o.Power, o.Center)
	if err != nil {
		return nil, err
	}
	journal, err := e.drillJournal()
	if err != nil {
		return nil, err
	}
	if err := etcd.CheckDrillJournal(journal); err != nil {
		return nil, err
	}
	notice := o.Notice
	if notice == nil {
		notice = func(msg string) { e.log.Warn(msg, "center", o.Center) }
	}
	if method == DrillPowerSSH {
		notice(fmt.Sprintf("Power ssh only stops etcd on the members of center %s: the servers stay up, so this is not a power cut", o.Center))
	}
	m := e.Manager(false)
	m.Progress = progress.Discard
	defer m.Close()
	pw, err := e.drillPower(o.PowerFor, method, m)
	if err != nil {
		return nil, err
	}
	targets, err := etcd.DrillServers(etcd.DrillOptions{Cluster: e.cfg.Cluster, Placement: e.Placement(), Center: o.Center, Power: pw})
	if err != nil {
		return nil, err
	}
	shown := &DrillTargets{Center: o.Center, Method: method, Power: pw.Describe(), Servers: targets, Placement: e.Placement()}
	if o.Confirm != nil {
		ok, err := o.Confirm(ctx, shown)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrDrillNotConfirmed
		}
	}
	// One writer at a time: no apply may run while a center is dark.
	lock, err := e.Lock(ctx, LockOptions{})
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	cli, err := e.EtcdClient(p)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	probes, err := e.drillProbes(ctx, o.Center, o.Kubernetes, notice)
	if err != nil {
		return nil, err
	}
	if o.Started != nil {
		o.Started(shown)
	}
	return etcd.Drill(ctx, etcd.DrillOptions{Cluster: e.cfg.Cluster, Placement: e.Placement(),
		Center: o.Center, Client: cli, Power: pw, Logger: e.log, Hold: o.Hold, Writers: o.Writers,
		RestoreTimeout: o.RestoreTimeout, HealthTimeout: o.HealthTimeout, Abandon: o.Abandon, Probes: probes,
		Journal: journal, Method: method})
}

// ResumeDrillOptions configure ResumeDrill.
type ResumeDrillOptions struct {
	// RestoreTimeout and HealthTimeout bound powering the servers back on
	// and the wait for health, as in the drill's restore.
	RestoreTimeout time.Duration
	HealthTimeout  time.Duration
	// Abandon, once closed, gives up (the CLI's second Ctrl-C); the
	// journal is then kept.
	Abandon <-chan struct{}
	// PowerFor is DrillOptions.PowerFor.
	PowerFor func(method string) (etcd.Power, error)
}

// ResumeDrill brings back what a drill left down when it ended before its
// restore (see etcd.ResumeDrill), the way it went down, under the
// cluster's lock. With no journal in the state directory there is nothing
// to resume: the report's Journal is nil, and no PKI is needed.
func (e *Engine) ResumeDrill(ctx context.Context, o ResumeDrillOptions) (*etcd.ResumeReport, error) {
	journal, err := e.drillJournal()
	if err != nil {
		return nil, err
	}
	if j, err := journal.DrillJournal(); err != nil {
		return nil, err
	} else if j == nil {
		return &etcd.ResumeReport{Path: journal.DrillJournalPath()}, nil
	}
	p, err := e.EtcdPKI(false)
	if err != nil {
		return nil, err
	}
	lock, err := e.Lock(ctx, LockOptions{})
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	m := e.Manager(false)
	m.Progress = progress.Discard
	defer m.Close()
	cli, err := e.EtcdClient(p)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return etcd.ResumeDrill(ctx, etcd.ResumeOptions{Cluster: e.cfg.Cluster, Placement: e.Placement(), Journal: journal,
		PowerFor: func(method string) (etcd.Power, error) { return e.drillPower(o.PowerFor, method, m) },
		Client:   cli, Logger: e.log, RestoreTimeout: o.RestoreTimeout, HealthTimeout: o.HealthTimeout, Abandon: o.Abandon})
}

// drillJournal is the state directory a drill keeps its journal in: it
// must outlive the process, so only a directory store has one.
func (e *Engine) drillJournal() (*state.Dir, error) {
	d, ok := e.cfg.Store.(*state.Dir)
	if !ok {
		return nil, errors.New("a drill keeps its journal in a state directory, and this engine's store is none: run it from the CLI with --state-dir")
	}
	return d, nil
}

// chooseDrillPower picks the drill's method: BMC when every server of the
// center has one, else SSH; BMC asked for checks that a power cut reaches
// every server of the center.
func chooseDrillPower(c *inventory.Cluster, method, center string) (string, error) {
	switch method {
	case "", DrillPowerBMC, DrillPowerSSH:
	default:
		return "", fmt.Errorf("power %q (--power): use %s or %s", method, DrillPowerBMC, DrillPowerSSH)
	}
	hosts, err := c.Select(inventory.Selector{Centers: []string{center}})
	if err != nil {
		return "", fmt.Errorf("center (--center): %w", err)
	}
	var noBMC []string
	for _, h := range hosts {
		if h.BMC == nil {
			noBMC = append(noBMC, h.Name)
		}
	}
	switch {
	case method == "" && len(noBMC) == 0:
		return DrillPowerBMC, nil
	case method == "":
		return DrillPowerSSH, nil
	case method == DrillPowerBMC && len(noBMC) > 0:
		return "", fmt.Errorf("power bmc (--power): servers of center %s without a bmc block: %s: add their BMCs or use --power ssh (stops etcd only)",
			center, strings.Join(noBMC, ", "))
	}
	return method, nil
}

// drillPower is how a drill takes servers down for method: override's
// when set, else the BMCs (a real power cut) or etcd stopped over SSH
// through m.
func (e *Engine) drillPower(override func(string) (etcd.Power, error), method string, m *phase.Manager) (etcd.Power, error) {
	if override != nil {
		return override(method)
	}
	switch method {
	case DrillPowerBMC:
		return &etcd.BMCPower{Options: bmc.Options{Logger: e.log}}, nil
	case DrillPowerSSH:
		return &etcd.SSHPower{Manager: m}, nil
	}
	return nil, fmt.Errorf("drill power %q: use %s or %s", method, DrillPowerBMC, DrillPowerSSH)
}

func checkDrillKubernetes(k string) error {
	switch k {
	case "", DrillKubernetesAuto, DrillKubernetesOn, DrillKubernetesOff:
		return nil
	}
	return fmt.Errorf("kubernetes %q (--kubernetes): use %s, %s or %s", k, DrillKubernetesAuto, DrillKubernetesOn, DrillKubernetesOff)
}

// drillProbes are the Kubernetes checks of a drill of center: none when
// mode is off; with auto, none (and a notice) when the API does not
// answer before the drill; with on, that is an error.
func (e *Engine) drillProbes(ctx context.Context, center, mode string, notice func(string)) ([]etcd.Probe, error) {
	if mode == DrillKubernetesOff {
		return nil, nil
	}
	if err := e.APIReady(ctx); err != nil {
		if mode == DrillKubernetesOn {
			return nil, fmt.Errorf("kubernetes on (--kubernetes): the API does not answer before the drill: %w", err)
		}
		notice(fmt.Sprintf("Kubernetes not checked during the drill (the API does not answer: %v)", err))
		return nil, nil
	}
	return e.DrillProbes(center)
}

// DrillProbes are the Kubernetes checks of a center-loss drill, run while
// the center is down: the API answers /readyz through the VIP (the routers
// move it to a surviving center once the lost servers' BGP sessions time
// out), and every Node outside the lost center stays Ready (asked through a
// surviving control-plane server, so the check does not depend on the VIP).
// Without a control plane in the placement there is nothing to probe.
func (e *Engine) DrillProbes(center string) ([]etcd.Probe, error) {
	if e.cfg.Cluster.Center(center) == nil {
		return nil, fmt.Errorf("center %q is not in the inventory", center)
	}
	var survivor string
	for _, m := range e.Placement().ControlPlane {
		if m.Center != center {
			survivor = m.Address
			break
		}
	}
	if survivor == "" {
		return nil, nil
	}
	var probes []etcd.Probe
	if e.IPs().APIVIP.IsValid() {
		probes = append(probes, &readyzProbe{e: e, url: e.APIServerURL()})
	}
	rc, err := e.restConfig("https://" + net.JoinHostPort(survivor, fmt.Sprint(APIPort)))
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	var watch []string
	for _, h := range e.cfg.Cluster.Hosts() {
		if h.Center.Name != center {
			watch = append(watch, h.Name)
		}
	}
	probes = append(probes, &NodesProbe{cs: cs, names: watch, via: survivor, notReady: map[string]bool{}})
	return probes, nil
}

type readyzProbe struct {
	e   *Engine
	url string
}

func (p *readyzProbe) Name() string { return "API /readyz through the VIP" }

func (p *readyzProbe) Check(ctx context.Context) error {
	_, err := p.e.readyz(ctx, p.url)
	return err
}

// NodesProbe checks that the Nodes outside the lost center stay Ready by
// the one health rule (condition and a fresh heartbeat).
// A failed List (the API briefly unavailable) counts as a failed check;
// NotReady lists the Nodes that were seen NotReady, which a drill must
// never show.
type NodesProbe struct {
	cs    kubernetes.Interface
	names []string
	via   string

	mu       sync.Mutex
	notReady map[string]bool
}

// Name says what is checked and through which server.
func (p *NodesProbe) Name() string {
	return fmt.Sprintf("nodes of the surviving centers Ready (asked through %s)", p.via)
}

// Check lists the Nodes once.
func (p *NodesProbe) Check(ctx context.Context) error {
	// Condition and heartbeat; the servers are not asked for their boot
	// ids every probe.
	nodes, err := health.Observe(ctx, p.cs, p.names, nil, nil)
	if err != nil {
		return fmt.Errorf("asking the API: %w", err)
	}
	var bad []string
	for _, n := range nodes {
		if !n.Ready {
			bad = append(bad, n.Name+" ("+n.Reason+")")
		}
	}
	if len(bad) > 0 {
		p.mu.Lock()
		for _, n := range nodes {
			if !n.Ready {
				p.notReady[n.Name] = true
			}
		}
		p.mu.Unlock()
		return errors.New("not Ready: " + strings.Join(bad, ", "))
	}
	return nil
}

// NotReady lists the surviving centers' Nodes seen NotReady, sorted.
func (p *NodesProbe) NotReady() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.notReady))
	for n := range p.notReady {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// APIReady asks the API for /readyz through the VIP (or the first
// control-plane server without one).
func (e *Engine) APIReady(ctx context.Context) error {
	if e.APIServerURL() == "" {
		return errors.New("no control-plane server in the placement")
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := e.readyz(rctx, e.APIServerURL())
	return err
}
