package controlplane

import (
	"context"
	"fmt"
	"path"

	"github.com/tricenter/terraform-provider-tricenter/installer/phase"
)

// configure writes the certificates, keys, kubeconfigs and units of a
// control-plane server where they differ (phase.Host.InstallFiles), marks
// the components that read a changed file for a restart, and reloads
// systemd when a unit changed. Private keys and kubeconfigs are written as
// secret content: no digest of them appears in the plan, the logs or on
// the host's command lines.
func (r *run) configure(ctx context.Context, h *phase.Host) error {
	m, ok := r.byName[h.Name]
	if !ok {
		return nil
	}
	r.mu.Lock()
	cp := r.pki
	r.mu.Unlock()
	files, err := hostFiles(r.settings, cp, m)
	if err != nil {
		return err
	}
	install := make([]phase.File, len(files))
	for i, f := range files {
		install[i] = phase.File{Path: r.path(f.path), Data: f.data, Mode: f.mode, Secret: f.secret}
	}
	done, err := h.InstallFiles(ctx, "", install)
	if err != nil {
		return fmt.Errorf("writing the control-plane configuration: %w", err)
	}
	unitChanged := false
	for _, f := range files {
		if !done.Has(r.path(f.path)) {
			continue
		}
		for _, c := range f.readers {
			r.markChanged(h.Name, c)
		}
		if path.Dir(f.path) == UnitDir {
			unitChanged = true
		}
	}
	if unitChanged {
		if err := h.SystemctlDaemonReload(ctx); err != nil {
			return fmt.Errorf("reloading systemd units: %w", err)
		}
	}
	return nil
}
