// Package etcdsnap is the installer component that schedules etcd
// snapshots (phase etcd/snapshots): on the members the inventory's
// placement rule names (inventory.SnapshotStores: one per center, taking
// snapshots from the other site's members), it uploads tricenter-snapshot,
// the etcd CA and the snapshot client certificate, the job's
// configuration, and a systemd service with its timer; it takes the
// first snapshot at once when anything changed, so a broken schedule
// fails the apply, not a night months later. On every other etcd member
// (and on all of them when the inventory schedules none) it disables and
// removes the timer and service, and leaves the snapshots already taken
// where they are.
package etcdsnap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
	"github.com/tricenter/terraform-provider-tricenter/internal/shell"
	"github.com/tricenter/terraform-provider-tricenter/inventory"
)

// ID is the phase's.
const ID = "etcd/snapshots"

// Paths and units on a storing member.
const (
	BinaryPath  = "/usr/local/bin/tricenter-snapshot"
	ConfigPath  = "/etc/tricenter/snapshot.json"
	PKIDir      = "/etc/tricenter/snapshot"
	CAPath      = PKIDir + "/ca.crt"
	CertPath    = PKIDir + "/client.crt"
	KeyPath     = PKIDir + "/client.key"
	Dir         = "/var/lib/tricenter/snapshots"
	ServiceName = "tricenter-snapshot.service"
	TimerName   = "tricenter-snapshot.timer"
	ServicePath = "/etc/systemd/system/" + ServiceName
	TimerPath   = "/etc/systemd/system/" + TimerName
)

// Host is what the phase needs from a member; *phase.Host has it.
type Host interface {
	String() string
	DryRun() bool
	Upload(ctx context.Context, local, remote string, mode fs.FileMode) (phase.FileResult, error)
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) (phase.FileResult, error)
	WriteSecret(ctx context.Context, path string, data []byte, mode fs.FileMode) (phase.FileResult, error)
	Query(ctx context.Context, cmd string) (string, error)
	Sudo(ctx context.Context, cmd string) (string, error)
	Systemctl(ctx context.Context, args ...string) error
	SystemctlDaemonReload(ctx context.Context) error
}

var _ Host = (*phase.Host)(nil)

// Options are the schedule's, rendered by the engine.
type Options struct {
	// Stores are the members that take and keep snapshots (nil: the
	// inventory schedules none, and the phase removes the schedule).
	Stores []inventory.SnapshotStore
	// Members are every etcd member: the phase runs on all of them.
	Members []string
	// Servers limits the phase to these servers (empty: all).
	Servers []string
	// Every is the interval between snapshots.
	Every time.Duration
	// Binary is the local tricenter-snapshot (from the artifacts); needed
	// when Stores is not empty.
	Binary string
	// CA, Cert and Key are the etcd CA certificate and the snapshot
	// client certificate and key (PEM).
	CA, Cert, Key []byte
	// Config renders a store's job configuration (JSON).
	Config func(inventory.SnapshotStore) ([]byte, error)
}

// Phases are the component's phases: ID on the etcd members Servers
// allows; none when it allows none.
func Phases(o Options) ([]phase.Phase, error) {
	if len(o.Stores) > 0 {
		switch {
		case o.Binary == "":
			return nil, errors.New("etcd snapshots: no tricenter-snapshot binary (run make artifacts)")
		case o.Config == nil || len(o.CA) == 0 || len(o.Cert) == 0 || len(o.Key) == 0:
			return nil, errors.New("etcd snapshots: the job's configuration and certificates are missing")
		case o.Every <= 0:
			return nil, errors.New("etcd snapshots: no interval")
		}
	}
	names := o.Members
	if len(o.Servers) > 0 {
		names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !slices.Contains(o.Servers, n) })
	}
	if len(names) == 0 {
		return nil, nil
	}
	return []phase.Phase{&phase.HostPhase{
		ID:     ID,
		Name:   "Schedule etcd snapshots",
		Select: inventory.Selector{Servers: names},
		Apply:  func(ctx context.Context, h *phase.Host) error { return o.Apply(ctx, h) },
	}}, nil
}

// Apply converges one member: the schedule where it is a store, none
// elsewhere.
func (o Options) Apply(ctx context.Context, h Host) error {
	for _, st := range o.Stores {
		if st.Server.Name == h.String() {
			return o.install(ctx, h, st)
		}
	}
	return remove(ctx, h)
}

func (o Options) install(ctx context.Context, h Host, st inventory.SnapshotStore) error {
	name := h.String()
	cfg, err := o.Config(st)
	if err != nil {
		return fmt.Errorf("the snapshot job's configuration for %s: %w", name, err)
	}
	changed := false
	track := func(what string, r phase.FileResult, err error) error {
		if err != nil {
			return fmt.Errorf("%s on %s: %w", what, name, err)
		}
		changed = changed || r.Changed
		return nil
	}
	r, err := h.Upload(ctx, o.Binary, BinaryPath, 0o755)
	if err := track("uploading tricenter-snapshot", r, err); err != nil {
		return err
	}
	for _, f := range []struct {
		what, path string
		data       []byte
		mode       fs.FileMode
		secret     bool
	}{
		{"writing the etcd CA", CAPath, o.CA, 0o644, false},
		{"writing the snapshot client certificate", CertPath, o.Cert, 0o644, false},
		{"writing the snapshot client key", KeyPath, o.Key, 0o600, true},
		{"writing " + ConfigPath, ConfigPath, cfg, 0o600, false},
	} {
		write := h.WriteFile
		if f.secret {
			write = h.WriteSecret
		}
		r, err := write(ctx, f.path, f.data, f.mode)
		if err := track(f.what, r, err); err != nil {
			return err
		}
	}
	svc, err := h.WriteFile(ctx, ServicePath, Service(), 0o644)
	if err := track("writing "+ServiceName, svc, err); err != nil {
		return err
	}
	tmr, err := h.WriteFile(ctx, TimerPath, Timer(o.Every), 0o644)
	if err := track("writing "+TimerName, tmr, err); err != nil {
		return err
	}
	if svc.Changed || tmr.Changed {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return fmt.Errorf("reloading systemd on %s: %w", name, err)
		}
	}
	enabled, _ := h.Query(ctx, "systemctl is-enabled "+TimerName)
	active, _ := h.Query(ctx, "systemctl is-active "+TimerName)
	switch {
	case strings.TrimSpace(enabled) != "enabled" || strings.TrimSpace(active) != "active":
		if err := h.Systemctl(ctx, "enable", "--now", TimerName); err != nil {
			return fmt.Errorf("enabling %s on %s: %w", TimerName, name, err)
		}
	case tmr.Changed:
		// A new interval counts from now.
		if err := h.Systemctl(ctx, "restart", TimerName); err != nil {
			return fmt.Errorf("restarting %s on %s: %w", TimerName, name, err)
		}
	}
	// Unchanged and holding snapshots: nothing to take now (a plan sees
	// the same).
	if !changed {
		if out, _ := h.Query(ctx, "ls "+shell.Quote(Dir)); strings.Contains(out, ".json") {
			return nil
		}
	}
	// Take one now: a schedule that cannot take a snapshot fails here.
	if err := h.Systemctl(ctx, "start", ServiceName); err != nil {
		journal, _ := h.Query(ctx, "journalctl -u "+ServiceName+" -n 8 --no-pager -o cat")
		return fmt.Errorf("the first snapshot on %s failed: %w\n%s", name, err, strings.TrimSpace(journal))
	}
	return nil
}

// remove takes the schedule off a member that is not a store (anymore);
// the snapshots it took stay in Dir.
func remove(ctx context.Context, h Host) error {
	out, err := h.Query(ctx, "ls "+shell.Quote(TimerPath)+" "+shell.Quote(ServicePath)+" 2>/dev/null || true")
	if err != nil {
		return fmt.Errorf("looking for a snapshot schedule on %s: %w", h, err)
	}
	if strings.TrimSpace(out) == "" {
		return nil
	}
	if err := h.Systemctl(ctx, "disable", "--now", TimerName); err != nil {
		return fmt.Errorf("disabling %s on %s: %w", TimerName, h, err)
	}
	if _, err := h.Sudo(ctx, "rm -f "+strings.Join([]string{shell.Quote(TimerPath), shell.Quote(ServicePath), shell.Quote(ConfigPath),
		shell.Quote(KeyPath), shell.Quote(CertPath), shell.Quote(CAPath)}, " ")); err != nil {
		return fmt.Errorf("removing the snapshot schedule on %s: %w", h, err)
	}
	return h.SystemctlDaemonReload(ctx)
}

// Service renders the job's unit: one snapshot, sealed, then pruning.
func Service() []byte {
	return []byte(`[Unit]
Description=tricenter etcd snapshot: one from another site's member, sealed, then pruned
Documentation=https://github.com/tricenter/terraform-provider-tricenter/blob/main/docs/cli/snapshot.md
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=` + BinaryPath + ` take --config ` + ConfigPath + `
TimeoutStartSec=20min
Nice=10
IOSchedulingClass=idle
NoNewPrivileges=yes
ProtectSystem=strict
StateDirectory=tricenter/snapshots
StateDirectoryMode=0700
ProtectHome=yes
PrivateTmp=yes
UMask=0077
`)
}

// Timer renders the schedule: every interval from the last run, the
// first one interval after boot or enabling, spread by up to a tenth of
// the interval (at most 5 min) so stores do not all pull at once.
func Timer(every time.Duration) []byte {
	spread := min(every/10, 5*time.Minute)
	return []byte(`[Unit]
Description=tricenter etcd snapshot schedule (every ` + every.String() + `)

[Timer]
OnActiveSec=` + seconds(every) + `
OnUnitActiveSec=` + seconds(every) + `
RandomizedDelaySec=` + seconds(spread) + `
AccuracySec=1s

[Install]
WantedBy=timers.target
`)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }

// Remove takes the schedule off servers (tricenter reset); the sealed
// snapshots stay in Dir, so a cluster reset by mistake can still be
// restored.
func Remove(ctx context.Context, m *phase.Manager, servers []string) error {
	if len(servers) == 0 {
		return nil
	}
	return m.Run(ctx, &phase.HostPhase{Name: "Remove the etcd snapshot schedule", Select: inventory.Selector{Servers: servers},
		Apply: func(ctx context.Context, h *phase.Host) error { return remove(ctx, h) }})
}
