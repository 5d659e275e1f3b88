// Package controlplane installs the Kubernetes control plane on every
// control-plane server of the placement: kube-apiserver,
// kube-controller-manager and kube-scheduler as systemd units, their
// certificates (installer/pki) and kubeconfigs (installer/kubeconfig), and
// kubectl.
//
// The phases, in order (the engine's workflow lists them):
//
//	control-plane/preflight      ports 6443/10257/10259 free or ours, clock, disk, etcd client certificate,
//	                             the encryption keys the server already has
//	control-plane/certificates   the control-plane PKI and the encryption keyring in the store (kept when they still match)
//	control-plane/binaries       kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
//	control-plane/configuration  /etc/kubernetes/pki, /etc/kubernetes/*.conf, the audit, authentication,
//	                             admission and encryption configurations, the audit log directory, the systemd units
//	control-plane/start          one server at a time: start or restart what changed, wait for /readyz
//
// Remove (control-plane/remove) stops the control plane and deletes its
// files on a reset.
//
// Every remote change goes through the phase engine's mutation gate, so a
// dry run (the plan) is the same code recording "would …". A unit restarts
// only when its binary, unit (flags included) or a file it reads changed:
// re-applying an unchanged cluster uploads, writes and restarts nothing.
//
// The API VIP: the node BGP agent announces it from control-plane servers
// while the local /readyz answers, and the agent (or the engine) adds the
// VIP to the loopback interface lo of each control-plane server so packets
// routed to it terminate there. kube-apiserver listens on every address
// (--bind-address=0.0.0.0), so it accepts connections to the VIP without
// knowing about it; its serving certificate names the VIP.
//
// Security defaults (render.go, security.go; CIS Kubernetes Benchmark
// section 1): no profiling; TLS 1.2+ with ECDHE and AEAD cipher suites on
// all three components; anonymous requests only to /livez, /readyz and
// /healthz; an audit log under /var/log/kubernetes/audit (0700); Secrets
// encrypted in etcd with a key from the engine state (installer/encryption;
// Secrets written before stay readable and are encrypted when next
// written); Pod Security admission with the inventory's default levels
// (spec.kubernetes.podSecurity: enforce baseline, warn and audit
// restricted, kube-system exempt); service-account tokens not extended.
//
// The Kubernetes CA key is on every control-plane server
// (/etc/kubernetes/pki/ca.key, 0600): kube-controller-manager signs
// kubelet certificate requests with it (--cluster-signing-*), as kubeadm
// does, and its certificate alone (ca-signer.crt), since ca.crt holds both
// CAs while one is rotated.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"sync"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/encryption"
	"github.com/tricenter/terraform-provider-tricenter/installer/etcd"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/installer/pki"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Stable phase IDs.
const (
	PhasePreflight     = "control-plane/preflight"
	PhaseCertificates  = "control-plane/certificates"
	PhaseBinaries      = "control-plane/binaries"
	PhaseConfiguration = "control-plane/configuration"
	PhaseStart         = "control-plane/start"
)

// Binary names, as keys of Options.Binaries and under BinDir.
const (
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	Kubectl           = "kubectl"
)

// Binaries lists every binary the control plane needs.
func Binaries() []string { return []string{APIServer, ControllerManager, Scheduler, Kubectl} }

// Components are the control-plane daemons, in the order they start.
func Components() []string { return []string{APIServer, ControllerManager, Scheduler} }

// UnitName is the systemd unit of a component.
func UnitName(component string) string { return component + ".service" }

// Paths on the hosts, and ports.
const (
	BinDir  = "/usr/local/bin"
	ConfDir = "/etc/kubernetes"
	PKIDir  = "/etc/kubernetes/pki"
	UnitDir = "/etc/systemd/system"
	// BinariesRecord is the install record of the binaries (see
	// phase.Host.InstallFiles): "sha256 size mtime path" per uploaded
	// binary as verified after upload, so a later run trusts the sha256
	// while size and mtime match instead of hashing ~300 MB on every
	// server.
	BinariesRecord = ConfDir + "/binaries.sha256"

	APIServerPort         = 6443
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
)

// Defaults for Options.
const (
	DefaultReadyTimeout = 5 * time.Minute
	DefaultMaxClockSkew = 2 * time.Second
	DefaultMinFreeDisk  = 1 << 30
	readyPoll           = time.Second
)

// Options configure the control-plane phases.
type Options struct {
	Cluster   *inventory.Cluster
	Placement *inventory.Placement
	IPs       *inventory.IPPlan
	PKI       *pki.Store
	// Binaries are the local paths of "kube-apiserver",
	// "kube-controller-manager", "kube-scheduler" and "kubectl" (resolved
	// and checked by the engine).
	Binaries map[string]string
	Logger   *slog.Logger
	// ReadyTimeout bounds the wait for a started server's /readyz
	// (default 5 minutes: a cold kube-apiserver on a small machine takes a
	// while).
	ReadyTimeout time.Duration
	// MaxClockSkew is the largest clock difference accepted between this
	// machine and a server (default 2s).
	MaxClockSkew time.Duration
	// MinFreeDisk is the free space needed under /usr/local/bin on a
	// server that has no binaries yet (default 1 GiB).
	MinFreeDisk int64
	// Root prefixes every path written on the hosts (empty in
	// production). Tests stage hosts under a directory with it; rendered
	// files keep their absolute paths.
	Root string
}

// Phases returns the control-plane phases in order, to run on the
// engine's phase.Manager (dry run included). Each has an ID method
// returning its stable ID.
func Phases(o Options) ([]phase.Phase, error) {
	r, err := newRun(o)
	if err != nil {
		return nil, err
	}
	return []phase.Phase{
		r.hostStep(PhasePreflight, "control-plane preflight", r.preflight).first(func() error { return checkEtcdClient(o.PKI) }),
		r.clusterStep(PhaseCertificates, "control-plane certificates", r.certificates),
		r.hostStep(PhaseBinaries, "control-plane binaries", r.binaries),
		r.hostStep(PhaseConfiguration, "control-plane configuration", r.configure),
		r.clusterStep(PhaseStart, "control-plane start", r.start),
	}, nil
}

// run is the state the phases of one apply share.
type run struct {
	o        Options
	log      *slog.Logger
	settings Settings
	servers  []inventory.Member
	byName   map[string]inventory.Member

	mu    sync.Mutex
	m     *phase.Manager
	pki   *pki.ControlPlane
	ring  *encryption.Keyring
	hosts map[string]*hostState
}

// hostState is what the phases learn and change on one server.
type hostState struct {
	facts *Facts
	// encryption is the server's encryption configuration as preflight
	// found it (nil: none). It holds keys: never print it whole.
	encryption *encryption.HostConfig
	// changed are the components whose binary, unit or inputs changed.
	changed map[string]bool
}

func newRun(o Options) (*run, error) {
	switch {
	case o.Cluster == nil || o.Placement == nil || o.IPs == nil || o.PKI == nil:
		return nil, errors.New("controlplane.Phases needs Cluster, Placement, IPs and PKI")
	case len(o.Placement.ControlPlane) == 0:
		return nil, errors.New("the placement has no control-plane server: give servers the control-plane or etcd role")
	case len(o.Placement.Etcd.Members) == 0:
		return nil, errors.New("the placement has no etcd member for kube-apiserver to use")
	}
	for _, b := range Binaries() {
		if o.Binaries[b] == "" {
			return nil, fmt.Errorf("no local path for %s: run make artifacts or set the artifact directory", b)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = DefaultMaxClockSkew
	}
	if o.MinFreeDisk <= 0 {
		o.MinFreeDisk = DefaultMinFreeDisk
	}
	s, err := settingsFor(o.Cluster, o.Placement)
	if err != nil {
		return nil, err
	}
	r := &run{o: o, log: o.Logger, settings: s, servers: o.Placement.ControlPlane,
		byName: map[string]inventory.Member{}, hosts: map[string]*hostState{}}
	for _, m := range r.servers {
		if _, err := netip.ParseAddr(m.Address); err != nil {
			return nil, fmt.Errorf("control-plane server %s: address %q: %w", m.Name, m.Address, err)
		}
		r.byName[m.Name] = m
	}
	return r, nil
}

// settingsFor derives the cluster-wide settings from the inventory.
func settingsFor(c *inventory.Cluster, p *inventory.Placement) (Settings, error) {
	n := c.Spec.Network
	if _, err := netip.ParsePrefix(n.ServiceCIDR); err != nil {
		return Settings{}, fmt.Errorf("spec.network.serviceCIDR %q: %w", n.ServiceCIDR, err)
	}
	if n.ClusterDomain == "" {
		return Settings{}, errors.New("spec.network.clusterDomain is empty: apply the inventory defaults first")
	}
	s := Settings{ClusterName: c.Metadata.Name, ServiceCIDR: n.ServiceCIDR, ClusterDomain: n.ClusterDomain,
		PodSecurity: PodSecurityFor(c), EncryptConfigMaps: c.Spec.Kubernetes.Encryption.ConfigMaps}
	for _, m := range p.Etcd.Members {
		s.EtcdServers = append(s.EtcdServers, etcd.ClientURL(m.Address))
	}
	return s, nil
}

// path maps a path on the host to where it is written (Options.Root).
func (r *run) path(p string) string {
	if r.o.Root == "" {
		return p
	}
	return path.Join(r.o.Root, p)
}

func (r *run) state(name string) *hostState {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.hosts[name]
	if s == nil {
		s = &hostState{facts: &Facts{}, changed: map[string]bool{}}
		r.hosts[name] = s
	}
	return s
}

func (r *run) markChanged(name, component string) {
	s := r.state(name)
	r.mu.Lock()
	s.changed[component] = true
	r.mu.Unlock()
}

func (r *run) selector() inventory.Selector {
	names := make([]string, 0, len(r.servers))
	for _, m := range r.servers {
		names = append(names, m.Name)
	}
	return inventory.Selector{Servers: names}
}

// step is one control-plane phase: per host (fan-out on the manager) or
// cluster-wide.
type step struct {
	id, title string
	r         *run
	perHost   func(ctx context.Context, h *phase.Host) error
	cluster   func(ctx context.Context) error
	// check runs once before perHost.
	check func() error
	hosts []*phase.Host
}

func (r *run) hostStep(id, title string, f func(ctx context.Context, h *phase.Host) error) *step {
	return &step{id: id, title: title, r: r, perHost: f}
}

func (r *run) clusterStep(id, title string, f func(ctx context.Context) error) *step {
	return &step{id: id, title: title, r: r, cluster: f}
}

// first sets a check that runs once before the per-host work.
func (s *step) first(check func() error) *step { s.check = check; return s }

// PhaseID is the stable phase ID (phase.Identified).
func (s *step) PhaseID() string { return s.id }

// Title is the human title.
func (s *step) Title() string { return s.title }

// Prepare selects the control-plane servers.
func (s *step) Prepare(_ context.Context, m *phase.Manager) error {
	s.r.mu.Lock()
	s.r.m = m
	s.r.mu.Unlock()
	var err error
	s.hosts, err = m.Hosts(s.r.selector())
	if err != nil {
		return err
	}
	if len(s.hosts) != len(s.r.servers) {
		return fmt.Errorf("%d control-plane servers planned, %d found in the inventory", len(s.r.servers), len(s.hosts))
	}
	return nil
}

// Selected are the hosts the phase works on.
func (s *step) Selected() []*phase.Host { return s.hosts }

// Run runs the phase.
func (s *step) Run(ctx context.Context) error {
	if s.r.m == nil {
		return fmt.Errorf("phase %s was not prepared", s.id)
	}
	if s.cluster != nil {
		return s.cluster(ctx)
	}
	if s.check != nil {
		if err := s.check(); err != nil {
			return err
		}
	}
	return s.r.m.Each(ctx, s.hosts, s.perHost)
}
