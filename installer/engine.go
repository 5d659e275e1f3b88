package installer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/addons"
	"github.com/tricenter/terraform-provider-tricenter/installer/artifacts"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/installer/progress"
	"github.com/tricenter/terraform-provider-tricenter/installer/ssh"
	"github.com/tricenter/terraform-provider-tricenter/internal/fsutil"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Component is a part of the cluster apply builds, in this order.
type Component string

// The components.
const (
	Etcd         Component = "etcd"
	BGP          Component = "bgp"
	ControlPlane Component = "control-plane"
	Nodes        Component = "nodes"
	Addons       Component = "addons"
	// Gates are the verifications after the others (each verifies one
	// component: PhaseInfo.Verifies).
	Gates Component = "gates"
)

// Components lists every component in apply order.
func Components() []Component { return []Component{Etcd, BGP, ControlPlane, Nodes, Addons, Gates} }

// ParseComponents reads names such as "etcd,control-plane" (as given to
// --only); the result is in apply order. Empty means every component.
func ParseComponents(names []string) ([]Component, error) {
	if len(names) == 0 {
		return Components(), nil
	}
	want := map[Component]bool{}
	for _, n := range names {
		for _, x := range strings.Split(n, ",") {
			x = strings.TrimSpace(x)
			if x == "" {
				continue
			}
			if !slices.Contains(Components(), Component(x)) {
				return nil, fmt.Errorf("unknown component %q: use %s", x, joinComponents(Components()))
			}
			want[Component(x)] = true
		}
	}
	var out []Component
	for _, c := range Components() {
		if want[c] {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return Components(), nil
	}
	return out, nil
}

func joinComponents(cs []Component) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// Defaults of Config.
const (
	DefaultHealthTimeout = 3 * time.Minute
	DefaultGateTimeout   = 5 * time.Minute
)

// Config configures an Engine. Cluster and Store are required.
type Config struct {
	// Cluster is the inventory (defaults set by inventory.Load/Parse).
	Cluster *inventory.Cluster
	// Lines maps field paths to YAML lines for error messages (optional).
	Lines *inventory.Lines
	// Source names the inventory in messages (a path, or "inline").
	Source string
	Store  Store
	// SSH configures the transport; jump hosts come from the inventory.
	// The plain fields below add to it; shells set those.
	SSH ssh.Options
	// Bastion is a first hop in front of every connection, in front of
	// the centers' jump hosts, written [USER@]HOST[:PORT] (the CLI's
	// --bastion); it replaces spec.ssh.bastion. BastionKeyFile is its
	// private key (default spec.ssh.keyFile), BastionHostKey its pinned
	// host key (SHA256:…) when known_hosts does not list it.
	Bastion        string
	BastionKeyFile string
	BastionHostKey string
	// KnownHosts are known_hosts files to check host keys against, besides
	// spec.ssh.knownHosts.
	KnownHosts []string
	// AcceptNewHostKeys trusts a host key seen for the first time and
	// appends it to the first known_hosts file (a changed key is still
	// refused); false keeps spec.ssh.hostKeyPolicy.
	AcceptNewHostKeys bool
	// SSHKeys are private keys held in memory (PEM), by the key file name
	// that stands for them in the inventory (the provider's inline
	// ssh.private_key): they are never written to disk.
	SSHKeys map[string][]byte
	// bastion is Bastion parsed by New.
	bastion *ssh.Endpoint
	// AgentBinary is the local tricenter-bgp to install (default: the
	// artifact directory's, else the one beside the running program).
	AgentBinary string
	Logger      *slog.Logger
	// Progress shows per-host work of real (not dry) runs.
	Progress progress.Reporter
	// Concurrency bounds hosts worked on at once (default
	// phase.DefaultConcurrency); PerCenter, when positive, per center.
	Concurrency int
	PerCenter   int
	// HealthTimeout bounds waits for health after changes (default
	// DefaultHealthTimeout); GateTimeout each verification gate.
	HealthTimeout time.Duration
	GateTimeout   time.Duration
	// FRU labels nodes with the hardware their BMC reports, by server
	// name (optional; the provider and `tricenter bmc` know it).
	FRU map[string]addons.FRU
	// Clock is the time source for measurements (default time.Now).
	Clock func() time.Time
	// Holder names this process's runs in the locks they take (default:
	// NewHolder("tricenter", "run")).
	Holder Holder
	// LockTimeout is how long a mutating run waits for another run's lock
	// when its Options do not say (default DefaultLockTimeout).
	LockTimeout time.Duration
	// SkipStoreLock leaves the Store's own lock alone: the provider's
	// store is a private copy of Terraform state, whose runs Terraform's
	// state lock serialises.
	SkipStoreLock bool
	// Leases shares the cluster's lock lease between the engines of one
	// process (the provider's resources); nil: each Lock takes its own.
	Leases *Leases
}

// Engine applies one inventory. It is safe to call its methods one after
// the other; calls are not meant to run concurrently.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	plan  *inventory.Plan
	prior *inventory.Prior
	// net holds the SSH connections API clients dial through (Close).
	netMu sync.Mutex
	net   *phase.Manager
}

// Close closes the connections the engine's API clients used.
func (e *Engine) Close() error {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	if e.net == nil {
		return nil
	}
	err := e.net.Close()
	e.net = nil
	return err
}

// Dial opens a TCP connection to a cluster address (etcd, the API, the
// VIP) the way the installer reaches the servers: directly, or through
// the jump host in front of them.
func (e *Engine) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	e.netMu.Lock()
	if e.net == nil {
		e.net = e.Manager(true)
	}
	d := e.dialer(e.net)
	e.netMu.Unlock()
	return d.DialContext(ctx, network, addr)
}

// ErrNoPKI is returned by operations that need the PKI an apply creates.
var ErrNoPKI = errors.New("no PKI recorded for this cluster: run apply first (or point at the right state)")

// New validates the inventory against what the last apply recorded and
// computes placement and IPAM. It touches no host.
func New(cfg Config) (*Engine, error) {
	if cfg.Cluster == nil {
		return nil, errors.New("installer: no inventory")
	}
	if cfg.Store == nil {
		return nil, errors.New("installer: no state store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = progress.Discard
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = phase.DefaultConcurrency
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.GateTimeout <= 0 {
		cfg.GateTimeout = DefaultGateTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Source == "" {
		cfg.Source = "inventory"
	}
	if err := cfg.resolveSSH(); err != nil {
		return nil, err
	}
	prior, err := cfg.Store.Prior()
	if err != nil {
		return nil, fmt.Errorf("reading the last apply's allocations: %w", err)
	}
	plan, err := inventory.BuildPlan(cfg.Cluster, cfg.Lines, prior)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Source, err)
	}
	return &Engine{cfg: cfg, log: cfg.Logger, plan: plan, prior: prior}, nil
}

// Cluster is the inventory.
func (e *Engine) Cluster() *inventory.Cluster { return e.cfg.Cluster }

// InventoryPlan is the derived plan (placement, IPAM, per-node facts).
func (e *Engine) InventoryPlan() *inventory.Plan { return e.plan }

// Placement is where etcd and the control plane run.
func (e *Engine) Placement() *inventory.Placement { return e.plan.Placement() }

// IPs is the IP plan.
func (e *Engine) IPs() *inventory.IPPlan { return e.plan.IPs() }

// Prior is what the last apply recorded (nil on a first run).
func (e *Engine) Prior() *inventory.Prior { return e.prior }

// Warnings are the inventory's validation warnings.
func (e *Engine) Warnings() []string {
	out := make([]string, 0, len(e.plan.Warnings))
	for _, w := range e.plan.Warnings {
		out = append(out, w.String())
	}
	return out
}

// Logger is the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Manager returns a phase manager for one run (close it when done). A
// dry run records "would …" instead of changing anything and reports no
// progress.
func (e *Engine) Manager(dryRun bool) *phase.Manager {
	rep := e.cfg.Progress
	if dryRun {
		rep = progress.Discard
	}
	return &phase.Manager{Cluster: e.cfg.Cluster, Concurrency: e.cfg.Concurrency, PerCenter: e.cfg.PerCenter,
		DryRun: dryRun, Logger: e.log, Progress: rep, SSH: e.cfg.SSH, Bastion: e.cfg.bastion, SnapshotDirs: managedDirs}
}

// managedDirs are the directories the components write their
// configuration, certificates and units to: a dry run lists them once per
// server instead of asking for each file (phase.Manager.SnapshotDirs).
var managedDirs = []string{"/etc/kubernetes", "/etc/etcd", "/etc/tricenter", "/etc/containerd", "/etc/cni/net.d",
	"/etc/systemd/system", "/etc/sysctl.d", "/etc/modules-load.d"}

// Observation's SSH limits: a status asks each server once, briefly.
const (
	observeDialTimeout      = 3 * time.Second
	observeHandshakeTimeout = 10 * time.Second
)

// ObserveManager returns a dry-run manager for observing servers now
// (status, health, refresh): new connections, one attempt each, short
// connect limits, so a server that is down is reported at once instead of
// retried. Close it when done.
func (e *Engine) ObserveManager() *phase.Manager {
	m := e.Manager(true)
	m.Retry = phase.Retry{Attempts: 1}
	if m.SSH.DialTimeout <= 0 || m.SSH.DialTimeout > observeDialTimeout {
		m.SSH.DialTimeout = observeDialTimeout
	}
	if m.SSH.HandshakeTimeout <= 0 || m.SSH.HandshakeTimeout > observeHandshakeTimeout {
		m.SSH.HandshakeTimeout = observeHandshakeTimeout
	}
	return m
}

// EtcdPKI returns the etcd certificates, creating what is missing when
// create is set; without create a cluster that was never applied gives
// ErrNoPKI.
func (e *Engine) EtcdPKI(create bool) (*pki.Etcd, error) {
	store := e.PKIStore()
	if !create {
		if ok, err := store.HasCA(pki.EtcdCA); err != nil {
			return nil, fmt.Errorf("etcd PKI: %w", err)
		} else if !ok {
			return nil, ErrNoPKI
		}
	}
	var members []pki.EtcdMember
	for _, m := range e.Placement().Etcd.Members {
		members = append(members, pki.EtcdMember{Name: m.Name, Address: m.Address})
	}
	p, err := store.EnsureEtcd(members)
	if err != nil {
		return nil, fmt.Errorf("etcd PKI: %w", err)
	}
	if _, _, err := store.EnsureClusterCAs(); err != nil {
		return nil, fmt.Errorf("cluster PKI: %w", err)
	}
	return p, nil
}

// EtcdClient connects to every planned etcd member with the client
// certificate.
func (e *Engine) EtcdClient(p *pki.Etcd) (*etcd.Client, error) {
	tc, err := etcd.TLSConfig(p)
	if err != nil {
		return nil, err
	}
	var eps []string
	for _, m := range e.Placement().Etcd.Members {
		eps = append(eps, etcd.ClientURL(m.Address))
	}
	return etcd.NewClient(eps, tc, e.log, etcd.WithDialer(e.Dial))
}

// Artifacts says where the binaries come from (etcd's and the
// Kubernetes components').
func (e *Engine) Artifacts() artifacts.Source {
	s := artifacts.FromInventory(e.cfg.Cluster.Spec.Kubernetes, e.cfg.Store.ArtifactCache())
	s.Logger = e.log
	// A relative artifactDir is relative to where tricenter runs; the
	// phases get absolute paths.
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		if abs, err := filepath.Abs(s.Dir); err == nil {
			s.Dir = abs
		}
	}
	if s.CacheDir != "" && !filepath.IsAbs(s.CacheDir) {
		if abs, err := filepath.Abs(s.CacheDir); err == nil {
			s.CacheDir = abs
		}
	}
	return s
}

// agentBinary finds tricenter-bgp (root on every node) and proves it.
// The candidates, in order: Config.AgentBinary; else the artifact
// directory's; else the one beside the running program.
//
// A binary in an artifact set — the inventory's artifact directory, or
// any directory that holds a SHA256SUMS (the provider and the acceptance
// tests pass <artifactDir>/tricenter-bgp as AgentBinary) — must have the
// sha256 its manifest lists: another digest, or a manifest that does not
// list it, is an error naming the file and the manifest (run make
// artifacts). Any other file (a development build beside tricenter, a
// test's stand-in) is used as it is, logged with its sha256. Either way
// the upload hashes the file it sends and the host verifies its copy
// against that digest before installing it.
func (e *Engine) agentBinary() (string, error) {
	cands := []string{}
	if e.cfg.AgentBinary != "" {
		cands = append(cands, e.cfg.AgentBinary)
	} else {
		if d := e.cfg.Cluster.Spec.Kubernetes.ArtifactDir; d != "" {
			cands = append(cands, filepath.Join(d, "tricenter-bgp"))
		}
		if exe, err := os.Executable(); err == nil {
			cands = append(cands, filepath.Join(filepath.Dir(exe), "tricenter-bgp"))
		}
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err != nil || !st.Mode().IsRegular() {
			continue
		}
		p, err := filepath.Abs(c)
		if err != nil {
			return "", fmt.Errorf("tricenter-bgp %s: %w", c, err)
		}
		if err := e.checkAgentBinary(p); err != nil {
			return "", err
		}
		return p, nil
	}
	return "", fmt.Errorf("tricenter-bgp not found (looked at %s): run make build, or set the agent binary", strings.Join(cands, ", "))
}

// checkAgentBinary proves p against the manifest of the artifact set it
// lies in, or logs it with its digest when it lies in none (see
// agentBinary).
func (e *Engine) checkAgentBinary(p string) error {
	dir := filepath.Dir(p)
	mf := filepath.Join(dir, artifacts.ManifestName)
	inSet := false
	if ad := e.Artifacts().Dir; ad != "" {
		a, aerr := os.Stat(ad)
		d, derr := os.Stat(dir)
		inSet = aerr == nil && derr == nil && os.SameFile(a, d)
	}
	if _, err := os.Stat(mf); err == nil {
		inSet = true
	}
	if inSet {
		f, err := artifacts.VerifyLocal(p)
		if err != nil {
			return fmt.Errorf("checking the BGP agent %s against %s: %w", p, mf, err)
		}
		e.log.Debug("Using the BGP agent of the artifact set", "path", p, "sha256", f.SHA256, "manifest", mf)
		return nil
	}
	sum, err := fsutil.FileSHA256(p)
	if err != nil {
		return fmt.Errorf("tricenter-bgp %s: %w", p, err)
	}
	e.log.Info("Using a BGP agent outside the artifact set (no manifest proves it)", "path", p, "sha256", sum)
	return nil
}

// record saves the allocations of a successful apply so the next run
// keeps them, with the releases it installed (kube, etcdRelease; ""
// keeps the recorded one).
func (e *Engine) record(etcdMembers bool, kube, etcdRelease string) error {
	p := &inventory.Prior{PodCIDRs: map[string]string{}, Kubernetes: kube, Etcd: etcdRelease}
	if e.prior != nil {
		p.EtcdMembers = append(p.EtcdMembers, e.prior.EtcdMembers...)
		if kube == "" {
			p.Kubernetes = e.prior.Kubernetes
		}
		if etcdRelease == "" {
			p.Etcd = e.prior.Etcd
		}
	}
	for name, cidr := range e.IPs().PodCIDRs {
		p.PodCIDRs[name] = cidr.String()
	}
	if etcdMembers {
		p.EtcdMembers = p.EtcdMembers[:0]
		for _, m := range e.Placement().Etcd.Members {
			p.EtcdMembers = append(p.EtcdMembers, m.Name)
		}
	}
	if err := e.cfg.Store.SavePrior(p); err != nil {
		return fmt.Errorf("recording allocations: %w", err)
	}
	e.prior = p
	return nil
}
