// Package bgpagent is the installer component that puts the BGP agent on
// every node (phase bgp/agent): upload tricenter-bgp, write its
// configuration (and the TCP MD5 password file) rendered from the
// inventory, install its systemd unit, start it (restart when the binary
// or unit changed, SIGHUP when only the configuration did) and wait until
// every session is Established. Remove (phase bgp/remove) takes it off
// again.
//
// The phase runs on the installer engine (installer/phase) but its logic
// needs only the small Host interface, which *phase.Host satisfies.
package bgpagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/bgp"
	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// Phase IDs.
const (
	// ID is the install phase's (the engine's workflow lists it).
	ID = "bgp/agent"
	// IDRemove is the phase Remove runs.
	IDRemove = "bgp/remove"
)

// Paths on the node.
const (
	BinaryPath = "/usr/local/bin/tricenter-bgp"
	UnitName   = "tricenter-bgp.service"
	UnitPath   = "/etc/systemd/system/" + UnitName
)

// Host is what the phase needs from a node; *phase.Host has it.
type Host interface {
	String() string
	DryRun() bool
	Upload(ctx context.Context, local, remote string, mode fs.FileMode) (phase.FileResult, error)
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) (phase.FileResult, error)
	// WriteSecret writes content whose digest must appear nowhere.
	WriteSecret(ctx context.Context, path string, data []byte, mode fs.FileMode) (phase.FileResult, error)
	Query(ctx context.Context, cmd string) (string, error)
	Systemctl(ctx context.Context, args ...string) error
	SystemctlRestart(ctx context.Context, unit string) error
	SystemctlDaemonReload(ctx context.Context) error
}

var _ Host = (*phase.Host)(nil)

// Options tune the phase.
type Options struct {
	// Binary is the local tricenter-bgp to upload (from the artifacts).
	Binary string
	// Config tunes the rendered agent configurations.
	Config bgp.ConfigOptions
	// EstablishTimeout bounds the wait for Established sessions
	// (default 30 s; negative: do not wait).
	EstablishTimeout time.Duration
	// Poll is the status polling interval (default 500 ms).
	Poll time.Duration
	// Servers limits the phase to these nodes of the plan (empty: every
	// node).
	Servers []string
	// Kubeconfig renders a node's kubeconfig for the agent's watch of
	// LoadBalancer Services (its own client certificate): needed when
	// Config.LoadBalancers is set.
	Kubeconfig func(node string) ([]byte, error)
}

// Phase installs and starts the agent on every node of the plan.
type Phase struct {
	plan     *bgp.Plan
	opts     Options
	password string
}

// New prepares the phase. The TCP MD5 password, if the inventory sets
// one, is resolved here so a missing secret fails before any host is
// touched.
func New(plan *bgp.Plan, o Options) (*Phase, error) {
	if o.Binary == "" {
		return nil, errors.New("BGP agent phase: no tricenter-bgp binary given (artifacts directory)")
	}
	if o.EstablishTimeout == 0 {
		o.EstablishTimeout = 30 * time.Second
	}
	if o.Poll == 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.Config.LoadBalancers != nil && o.Kubeconfig == nil {
		return nil, errors.New("BGP agent phase: LoadBalancer announcements need the agents' kubeconfigs")
	}
	p := &Phase{plan: plan, opts: o}
	if !plan.Password.IsZero() {
		pw, err := plan.Password.Resolve()
		if err != nil {
			return nil, fmt.Errorf("spec.network.bgp.password: %w", err)
		}
		p.password = pw
	}
	return p, nil
}

// Phases are the component's phases for the engine's workflow: the agent
// install (ID) on the plan's nodes that o.Servers allows; none when it
// allows none.
func Phases(plan *bgp.Plan, o Options) ([]phase.Phase, error) {
	p, err := New(plan, o)
	if err != nil {
		return nil, err
	}
	hp := p.HostPhase()
	if len(hp.Select.Servers) == 0 {
		return nil, nil
	}
	return []phase.Phase{hp}, nil
}

// HostPhase wraps the phase for the installer engine: phase ID on the
// plan's nodes (those of Options.Servers when set).
func (p *Phase) HostPhase() *phase.HostPhase {
	var only map[string]bool
	if len(p.opts.Servers) > 0 {
		only = map[string]bool{}
		for _, s := range p.opts.Servers {
			only[s] = true
		}
	}
	names := make([]string, 0, len(p.plan.Nodes))
	for _, n := range p.plan.Nodes {
		if only == nil || only[n.Name] {
			names = append(names, n.Name)
		}
	}
	return &phase.HostPhase{
		ID:     ID,
		Name:   "Install the BGP agent",
		Select: inventory.Selector{Servers: names},
		Apply:  func(ctx context.Context, h *phase.Host) error { return p.Apply(ctx, h) },
	}
}

// Unit renders the systemd unit.
func Unit(configPath string) []byte {
	return []byte(`[Unit]
Description=tricenter BGP agent: announces the pod CIDR and healthy VIPs
Documentation=https://github.com/tricenter/terraform-provider-tricenter/blob/main/docs/cli/tricenter-bgp.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=` + BinaryPath + ` run --config ` + configPath + ` --log-format json
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM makes the agent withdraw its routes before it exits.
KillSignal=SIGTERM
TimeoutStopSec=15
Restart=always
RestartSec=2
RuntimeDirectory=tricenter-bgp
# Holds (tricenter-bgp hold) live in /run/tricenter-bgp/holds: kept across
# restarts of the agent, gone with a reboot.
RuntimeDirectoryPreserve=yes
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
`)
}

// Apply installs the agent on one node; it converges: a second run on an
// unchanged node changes nothing.
func (p *Phase) Apply(ctx context.Context, h Host) error {
	name := h.String()
	cfg, err := p.plan.AgentConfig(name, p.opts.Config)
	if err != nil {
		return err
	}
	cfgData, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("rendering the BGP agent configuration for %s: %w", name, err)
	}
	bin, err := h.Upload(ctx, p.opts.Binary, BinaryPath, 0o755)
	if err != nil {
		return fmt.Errorf("uploading tricenter-bgp to %s: %w", name, err)
	}
	pwChanged := false
	if p.password != "" {
		pwFile := p.opts.Config.PasswordFile
		if pwFile == "" {
			pwFile = bgp.DefaultPasswordFile
		}
		// The node's sessions use its rack's password, derived from the
		// cluster's secret (the routers' configuration uses the same).
		pw, err := p.plan.AgentPassword(name, p.password)
		if err != nil {
			return err
		}
		r, err := h.WriteSecret(ctx, pwFile, []byte(pw+"\n"), 0o600)
		if err != nil {
			return fmt.Errorf("writing the BGP password file on %s: %w", name, err)
		}
		pwChanged = r.Changed
	}
	// The kubeconfig holds a private key; a reload makes the agent watch
	// with a changed one (its BGP sessions stay up).
	kcChanged := false
	if l := cfg.LoadBalancers; l != nil {
		kc, err := p.opts.Kubeconfig(name)
		if err != nil {
			return fmt.Errorf("the BGP agent's kubeconfig for %s: %w", name, err)
		}
		r, err := h.WriteSecret(ctx, l.Kubeconfig, kc, 0o600)
		if err != nil {
			return fmt.Errorf("writing the BGP agent's kubeconfig on %s: %w", name, err)
		}
		kcChanged = r.Changed
	}
	conf, err := h.WriteFile(ctx, bgp.DefaultConfigFile, cfgData, 0o600)
	if err != nil {
		return fmt.Errorf("writing the BGP agent configuration on %s: %w", name, err)
	}
	unit, err := h.WriteFile(ctx, UnitPath, Unit(bgp.DefaultConfigFile), 0o644)
	if err != nil {
		return fmt.Errorf("writing %s on %s: %w", UnitName, name, err)
	}
	if unit.Changed {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return fmt.Errorf("reloading systemd on %s: %w", name, err)
		}
	}
	if out, _ := h.Query(ctx, "systemctl is-enabled "+UnitName); strings.TrimSpace(out) != "enabled" {
		if err := h.Systemctl(ctx, "enable", UnitName); err != nil {
			return fmt.Errorf("enabling %s on %s: %w", UnitName, name, err)
		}
	}
	active := false
	if out, _ := h.Query(ctx, "systemctl is-active "+UnitName); strings.TrimSpace(out) == "active" {
		active = true
	}
	switch {
	case !active || bin.Changed || unit.Changed:
		// Graceful restart keeps the node's routes on the routers while
		// the agent restarts.
		if err := h.SystemctlRestart(ctx, UnitName); err != nil {
			return fmt.Errorf("starting %s on %s: %w", UnitName, name, err)
		}
	case conf.Changed || pwChanged || kcChanged:
		if err := h.Systemctl(ctx, "reload", UnitName); err != nil {
			return fmt.Errorf("reloading %s on %s: %w", UnitName, name, err)
		}
	}
	if h.DryRun() || p.opts.EstablishTimeout < 0 {
		return nil
	}
	return p.waitEstablished(ctx, h, cfg)
}

// ErrNotEstablished is wrapped when a node's sessions do not come up.
var ErrNotEstablished = errors.New("BGP sessions not established")

func (p *Phase) waitEstablished(ctx context.Context, h Host, cfg *bgp.Config) error {
	deadline := time.Now().Add(p.opts.EstablishTimeout)
	cmd := BinaryPath + " status -o json --socket " + cfg.StatusSocket
	var last string
	for {
		out, err := h.Query(ctx, cmd)
		if err == nil {
			var st bgp.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				last = "unreadable status: " + err.Error()
			} else if down := notEstablished(&st, cfg); len(down) == 0 {
				return nil
			} else {
				last = strings.Join(down, "; ")
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w on %s after %s: %s", ErrNotEstablished, h, p.opts.EstablishTimeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.opts.Poll):
		}
	}
}

func notEstablished(st *bgp.Status, cfg *bgp.Config) []string {
	var down []string
	for _, pc := range cfg.Peers {
		found := false
		for _, s := range st.Sessions {
			if s.Address == pc.Address {
				found = true
				if !s.Established() {
					down = append(down, fmt.Sprintf("session with %s (%s) is %s", pc.Name, pc.Address, s.State))
				}
			}
		}
		if !found {
			down = append(down, fmt.Sprintf("no session with %s (%s)", pc.Name, pc.Address))
		}
	}
	return down
}
